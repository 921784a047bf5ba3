"""The full-integer int8 tile graph simulated in PyTorch: where it rounds, its ranges, and what each costs.

`export/to_tflite.py --quant int8` rounds every tensor of the tile graph to 256 levels. It rounds at the
quantization points named in deepisp.export.quant_points (the keys of `QuantizedTile.ranges`).

Fixed steps besides: TANH's output 1/128 (TFLite's int8 TANH kernel) and the conv weights, per output
channel, max|w| / 127. The mosaic before the demosaic is quantized too, at the converter's own range (the
calibration's input range), which this simulation leaves out.

`calibrated_ranges` measures each point's range (the 0.01th to 99.99th percentile of its values over the
calibration windows, zero included as TFLite's asymmetric int8 needs); the exported int8 graph carries exactly these (tf_graphs: the converter's
own calibration gives each residual the running image's range). `QuantizedTile` computes a model with that
rounding (fake quantization), so what int8 loses can be measured in PyTorch point by point: `point_costs`,
the exporter's int8 report. Biases (int32 in TFLite) stay float.

Fine-tuning through this simulation (quantization-aware training, straight-through gradients) was tried on
micro-full and phone-jdd and gained nothing (README, "Variants"): int8's loss here was mostly the rounding of
the running image itself, which no weight can undo. Two graph changes moved it: the JDD models' working
domain (deepisp.model, `compand`; windows and outputs here are in that domain), and the image estimate as
the input plus one sum of every residual (quant_points.RESIDUAL_SUM), so the running image's rounding after
each block reaches the next block only, not the output. Once those were in, the weights led what int8 costs
the JDD models, and training on the weights' grid alone (`int8_weight_grid`, `deepisp train --int8-weights`:
the shipped float weights are the int8 weights) took phone-jdd's int8 loss at sigma = 2 from 0.60 to 0.46 dB
at no float cost.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepisp.demosaic import bilinear_demosaic
from deepisp.export import quant_points
from deepisp.model.color_transform import apply_color_transform
from deepisp.model.domain import check_input, uncompand
from deepisp.model.network import DeepISP
from deepisp.options import Mode

# TFLite's int8 TANH output: scale 1/128, zero point 0.
TANH_STEP = 1.0 / 128
# The narrowest range a point gets (calibrated_ranges).
MIN_RANGE = 1e-6
# Each point's int8 range spans this percentile of its values over the calibration windows (and its mirror
# below): 99.99 took 0.1-0.2 dB off what int8 costs the JDD models on held-out photos (benchmarks/jdd_int8.py)
# against the min and max, which rare extremes set.
RANGE_PERCENTILE = 99.99
# Points that keep their whole range: the network's input (the calibration windows already bound it,
# deepisp.export.calibration) and its output image, whose extremes are the image's own highlights and shadows.
WHOLE_RANGE = (quant_points.INPUT, quant_points.OUTPUT)


class ActivationQuant(nn.Module):
    """Per-tensor asymmetric int8 fake quantization to the range [lo, hi] (buffers, lo <= 0 <= hi; set by
    `QuantizedTile.set_ranges`). `active` False: values pass through (calibration, which reads them through
    hooks; one point rounded at a time, `point_costs`)."""

    def __init__(self):
        super().__init__()
        self.active = True
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if not self.active:
            return x
        scale = ((self.hi - self.lo) / 255).clamp(min=1e-8)
        zero_point = (-128 - torch.round(self.lo / scale)).clamp(-128, 127).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, -128, 127)


def quantize_weight(w: torch.Tensor) -> torch.Tensor:
    """Conv weight [O,I,kh,kw] fake-quantized per output channel, symmetric int8 [-127, 127] (TFLite's)."""
    scale = (w.detach().abs().amax(dim=(1, 2, 3)) / 127).clamp(min=1e-12).float()
    return torch.fake_quantize_per_channel_affine(w.float(), scale, torch.zeros_like(scale, dtype=torch.int32), 0, -127, 127)


def quantize_split_weight(w: torch.Tensor, n: int) -> torch.Tensor:
    """`quantize_weight` of a conv over [features (n input channels), image] as the tile graph has it: one conv
    per part, so each part gets its own per-channel step (n = 0: one conv)."""
    if n == 0:
        return quantize_weight(w)
    return torch.cat([quantize_weight(w[:, :n]), quantize_weight(w[:, n:])], dim=1)


def int8_weight_grid(model: DeepISP) -> dict[str, torch.Tensor]:
    """Every conv weight of the tile graph rounded as its int8 export rounds it (`QuantizedTile`), keyed by
    parameter name, with straight-through gradients to the float weights: the parameters of
    torch.func.functional_call for training on the int8 weight grid (deepisp.train, `int8_weights`)."""
    image_channels = model.low_level.blocks[0].conv_residual.out_channels
    grid = {}
    for k, block in enumerate(model.low_level.blocks):
        for part in ("conv_features", "conv_residual"):
            conv = getattr(block, part)
            if conv is not None:
                grid[f"low_level.blocks.{k}.{part}.weight"] = quantize_split_weight(conv.weight, conv.weight.shape[1] - image_channels)
    for k, conv in enumerate(model.high_level.layers[1::4] if model.cfg.mode == Mode.FULL else []):
        grid[f"high_level.layers.{4 * k + 1}.weight"] = quantize_split_weight(conv.weight, conv.weight.shape[1] - image_channels if k == 0 else 0)
    return grid


def quantize_tanh(t: torch.Tensor) -> torch.Tensor:
    """tanh's output t in [-1,1] on TFLite's fixed int8 TANH grid (step 1/128, zero point 0)."""
    return torch.fake_quantize_per_tensor_affine(t.float(), TANH_STEP, 0, -128, 127)


def residual_sum_weight(model: DeepISP) -> torch.Tensor:
    """The int8 graph's residual sum (quant_points.RESIDUAL_SUM) as a 1x1 conv weight [C, n_ll*C, 1, 1] over the
    blocks' concatenated tanh outputs (C image channels each): output channel c sums channel c of every block,
    times the block's residual_scale s_k (1 without one)."""
    blocks = model.low_level.blocks
    c = blocks[0].conv_residual.out_channels
    weight = torch.zeros(c, len(blocks) * c, 1, 1)
    for k, block in enumerate(blocks):
        weight[torch.arange(c), k * c + torch.arange(c)] = block.scale()
    return weight


def _pad(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (1, 1, 1, 1), mode="reflect")


class QuantizedTile(nn.Module):
    """`model`'s tile graph (bilinear raw RGB [B,3,H,W] in [0,1] -> low-level image and cells, see
    deepisp.model; both in the network's working domain, companded for `compand` models) with the int8
    graph's rounding at the ranges in `ranges` (module doc)."""

    def __init__(self, model: DeepISP, ranges: dict[str, tuple[float, float]] | None = None):
        super().__init__()
        if model.low_level.noise_to_bias is not None:
            raise ValueError("a noise-aware model is simulated at one level, as exported: run deepisp.model.fold_noise_level(model, noise) first")
        self.model = model
        # Weights' and tanh's rounding, on unless a calibration or a cost report turns them off.
        self.round_weights = True
        self.round_tanh = True
        self.ranges = nn.ModuleDict({n: ActivationQuant() for n in quant_points.points(model.cfg)})
        if ranges is not None:
            self.set_ranges(ranges)

    def _weight(self, w: torch.Tensor, n: int = 0) -> torch.Tensor:
        return quantize_split_weight(w, n) if self.round_weights else w

    def _split_conv(self, features: torch.Tensor | None, image: torch.Tensor, conv: nn.Conv2d, name: str, stride: int = 1) -> torch.Tensor:
        """The conv over [features, image] (both padded) as the tile graph has it: a conv over each part, each
        part rounded, summed (the sum not yet rounded: its activation comes first)."""
        n = 0 if features is None else features.shape[1]
        weight = self._weight(conv.weight, n)
        on_image = F.conv2d(image, weight[:, n:], conv.bias if features is None else None, stride)
        if features is None:
            return on_image
        on_features = F.conv2d(features, weight[:, :n], conv.bias, stride)
        return self.ranges[quant_points.on_features(name)](on_features) + self.ranges[quant_points.on_image(name)](on_image)

    def low_level(self, image: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """LowLevelStage.forward with the rounding, working domain in and out: (the features of the last block
        with a feature conv, the image estimate). The estimate is the input plus one sum of the residuals
        (quant_points: residual_sum), not the running image, which only the next block reads."""
        q = self.ranges
        features, first, tanhs = None, image, []
        blocks = self.model.low_level.blocks
        for k, block in enumerate(blocks):
            padded = (None if features is None else _pad(features), _pad(image))
            if block.conv_features is not None:
                point = quant_points.features(k)
                features = q[point](F.relu(self._split_conv(*padded, block.conv_features, point)))
            point = quant_points.residual(k)
            residual = torch.tanh(q[point](self._split_conv(*padded, block.conv_residual, point)))
            tanhs.append(quantize_tanh(residual) if self.round_tanh else residual)
            if k < len(blocks) - 1:
                residual = tanhs[-1]
                if block.residual_scale is not None:
                    residual = q[quant_points.scaled(k)](residual * block.residual_scale)
                image = q[quant_points.image(k)](image + residual)
        residual_sum = F.conv2d(torch.cat(tanhs, dim=1), self._weight(residual_sum_weight(self.model)))
        return features, q[quant_points.OUTPUT](first + q[quant_points.RESIDUAL_SUM](residual_sum))

    def high_level(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """HighLevelStage.forward on [features, image] with the rounding: the cell map."""
        x = None
        for k, conv in enumerate(self.model.high_level.layers[1::4]):
            if k == 0:
                pre = self._split_conv(_pad(features), _pad(image), conv, quant_points.FIRST_HIGH_LEVEL_CONV, stride=2)
            else:
                pre = F.conv2d(_pad(x), self._weight(conv.weight), conv.bias, 2)
            x = F.max_pool2d(self.ranges[quant_points.high_level(k)](F.relu(pre)), 2)
        return x

    def tile(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the int8 tile graph gives for rgb [B,3,H,W]: the low-level image [B,3,H,W] (working domain) and the
        high-level cell map (None for jdd). A noise-aware model runs after fold_noise_level, as exported."""
        m = self.model
        check_input(rgb, m.cfg)
        features, image = self.low_level(self.ranges[quant_points.INPUT](m.pack(rgb)))
        cells = self.high_level(features, image) if m.cfg.mode == Mode.FULL else None
        return m.unpack(image), cells

    def set_ranges(self, ranges: dict[str, tuple[float, float]]) -> None:
        """Round at these ranges (`calibrated_ranges`' output)."""
        for name, q in self.ranges.items():
            q.lo.fill_(ranges[name][0])
            q.hi.fill_(ranges[name][1])


@torch.no_grad()
def calibrated_ranges(model: DeepISP, windows: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    """The int8 range of every quantization point: from the (100 - RANGE_PERCENTILE)th to the RANGE_PERCENTILE-th
    percentile of the float network's values there over the calibration windows, zero included (what
    TFLite's calibration measures per point, minus the rarest extremes; see deepisp.export.tf_graphs for why
    the exported int8 graph takes these instead of the converter's own). The WHOLE_RANGE points keep their min
    and max.

    windows: [S_h,S_w] float32 mosaics of one shape (deepisp.export.calibration.calibration_windows) as the tile
    graph takes them (balanced for `as_shot` models, companded for `compand` ones). The percentiles are exact:
    each window keeps the values of each point that could lie beyond them."""
    sim = QuantizedTile(model).eval()
    sim.round_weights = sim.round_tanh = False
    tail = (100 - RANGE_PERCENTILE) / 100
    extremes: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in sim.ranges}
    counts = dict.fromkeys(sim.ranges, 0)

    def keep_extremes(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
            values = output.detach().flatten()
            k = min(values.numel(), math.floor(tail * values.numel() * len(windows)) + 1)
            extremes[name].append((values.topk(k, largest=False).values, values.topk(k).values))
            counts[name] += values.numel()

        return hook

    for name, q in sim.ranges.items():
        q.active = False  # values pass through unrounded; the hooks see them
        q.register_forward_hook(keep_extremes(name))
    for w in windows:
        sim.tile(_rgb(w))
    ranges = {}
    for name, kept in extremes.items():
        # The (beyond + 1)-th lowest and highest values: `beyond` values lie outside the range at each end.
        beyond = 0 if name in WHOLE_RANGE else math.floor(tail * counts[name])
        lo = float(torch.cat([low for low, _ in kept]).kthvalue(beyond + 1).values)
        hi = float(-torch.cat([-high for _, high in kept]).kthvalue(beyond + 1).values)
        # A point that is zero everywhere (a residual conv still at its zero init, a dead ReLU) gets a tiny
        # range: TensorFlow's FakeQuant needs min < max.
        ranges[name] = (min(lo, 0.0), max(hi, 0.0, min(lo, 0.0) + MIN_RANGE))
    return ranges


def _rgb(window: np.ndarray) -> torch.Tensor:
    """A calibration window [S_h,S_w] -> the network's input [1,3,S_h,S_w] (bilinear)."""
    return bilinear_demosaic(torch.as_tensor(window, dtype=torch.float32)[None, None])


@torch.no_grad()
def point_costs(model: DeepISP, ranges: dict[str, tuple[float, float]], windows: list[np.ndarray], top: int = 10) -> list[dict]:
    """Where int8 loses: per quantization point, the model's output with only that point rounded, as PSNR
    against the float output (peak 1) on `windows` [S_h,S_w] mosaics; also "weights" (all conv weights alone)
    and "tanh" (TANH's fixed step alone). A full model's output goes through the float colour transform, as
    the exported color graph does, so the high-level points count through W. The `top` costliest, worst
    first, with each point's range and step. `windows` as for `calibrated_ranges`; a companded model's output
    is compared linear."""
    sim = QuantizedTile(model, ranges).eval()
    rgb = [_rgb(w) for w in windows]
    reference = [model(_rgb(uncompand(torch.as_tensor(w), model.cfg))) for w in windows]

    def output(x: torch.Tensor) -> torch.Tensor:
        image, cells = sim.tile(x)
        return uncompand(image, model.cfg) if cells is None else apply_color_transform(model.color_head(model.global_features(cells)), image)

    def output_psnr(point: str | None, weights: bool = False, tanh: bool = False) -> float:
        for name, q in sim.ranges.items():
            q.active = name == point
        sim.round_weights, sim.round_tanh = weights, tanh
        mse = torch.stack([(output(x) - ref).pow(2).mean() for x, ref in zip(rgb, reference)]).mean()
        return float(-10 * torch.log10(mse.clamp(min=1e-20)))

    rows = [{"point": name, "range": list(ranges[name]), "step": (ranges[name][1] - ranges[name][0]) / 255, "psnr_alone": output_psnr(name)} for name in ranges]
    rows.append({"point": "weights", "range": None, "step": None, "psnr_alone": output_psnr(None, weights=True)})
    rows.append({"point": "tanh", "range": [-1.0, 127 * TANH_STEP], "step": TANH_STEP, "psnr_alone": output_psnr(None, tanh=True)})
    return sorted(rows, key=lambda r: r["psnr_alone"])[:top]
