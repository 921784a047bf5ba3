"""Quantization-aware fine-tuning (beyond the paper): the full-integer int8 tile graph simulated in PyTorch.

`export/to_tflite.py --quant int8` rounds every tensor of the tile graph to 256 levels (post-training
quantization, ranges from calibration windows). Fine-tuning through a simulation of that rounding (fake
quantization with a straight-through gradient, the standard QAT recipe) lets the weights adapt to it. The
exported graph is still calibrated by TFLite's converter (deepisp.export.tflite_export), so the simulation
only has to round where the converter does, at similar steps. The tile graph (deepisp.export.tf_graphs)
writes each conv over [features, image] as a conv over each plus an ADD, and TFLite quantizes:

    tensor                                                   int8 step
    the input image (the demosaic's output)                  its range / 255
    a split conv's part over the features, over the image    its range / 255
    the sum of the parts (ADD, ReLU fused for features)      its range / 255
    TANH's output                                            1/128, fixed by TFLite's int8 TANH kernel
    residual * s (MUL), the running image (ADD)              its range / 255
    high-level convs (ReLU fused; max-pool keeps the step)   its range / 255
    conv weights                                             per output channel, max|w| / 127 (symmetric)

A range is the exponential moving average of each training batch's min and max (what TensorFlow's own QAT
keeps), widened to include 0 as TFLite's asymmetric int8 does. Gradients pass straight through inside the
range and are zero outside it. Biases (int32 in TFLite) stay float. The colour transform after the tile
graph stays float, as the exported color graph is.

`QuantizedTile(model)` computes `model`'s function with that rounding; it trains `model`'s parameters and its
own state is only the ranges (`QuantizedTile.ranges`). `deepisp train --qat --init-from CKPT` fine-tunes a
trained model through it; the checkpoint it writes is an ordinary model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepisp.demosaic import bilinear_demosaic
from deepisp.model import DeepISP, apply_color_transform, check_input

# TFLite's int8 TANH output: scale 1/128, zero point 0.
TANH_STEP = 1.0 / 128
# Moving-average rate of the ranges: ~100 batches of memory.
RANGE_MOMENTUM = 0.01


class ActivationQuant(nn.Module):
    """Per-tensor asymmetric int8 fake quantization of any tensor, range = moving average of batch min/max.

    Training mode updates the range from each batch (the first batch sets it); eval mode uses it as is.
    `observing`: no rounding, the range grows to hold every value seen (calibration)."""

    def __init__(self, momentum: float = RANGE_MOMENTUM):
        super().__init__()
        self.momentum = momentum
        self.observing = False
        self.active = True  # False: passes values through (`point_costs` rounds one point at a time)
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if not self.active:
            return x
        if self.observing:
            lo, hi = torch.aminmax(x.detach())
            self.lo.copy_(torch.minimum(self.lo, lo))
            self.hi.copy_(torch.maximum(self.hi, hi))
            return x
        if self.training:
            with torch.no_grad():
                lo, hi = torch.aminmax(x)
                m = torch.where(self.seen, torch.tensor(self.momentum), torch.tensor(1.0))
                self.lo.lerp_(lo.clamp(max=0), m)
                self.hi.lerp_(hi.clamp(min=0), m)
                self.seen.fill_(True)
        scale = ((self.hi - self.lo) / 255).clamp(min=1e-8)
        zero_point = (-128 - torch.round(self.lo / scale)).clamp(-128, 127).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, -128, 127)


def quantize_weight(w: torch.Tensor) -> torch.Tensor:
    """Conv weight [O,I,kh,kw] fake-quantized per output channel, symmetric int8 [-127, 127] (TFLite's)."""
    scale = (w.detach().abs().amax(dim=(1, 2, 3)) / 127).clamp(min=1e-12).float()
    return torch.fake_quantize_per_channel_affine(w.float(), scale, torch.zeros_like(scale, dtype=torch.int32), 0, -127, 127)


def quantize_tanh(t: torch.Tensor) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(t.float(), TANH_STEP, 0, -128, 127)


def _pad(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (1, 1, 1, 1), mode="reflect")


class QuantizedTile(nn.Module):
    """`model`'s forward ([B,3,H,W] bilinear raw RGB in [0,1] -> [B,3,H,W], see deepisp.model) with the int8
    tile graph's rounding (module doc); `model` is a submodule, so its parameters train through this."""

    def __init__(self, model: DeepISP):
        super().__init__()
        self.model = model
        # Weights' and tanh's rounding, on unless a calibration or a cost report turns them off.
        self.round_weights = True
        self.round_tanh = True
        names = ["input"]
        for k, block in enumerate(model.low_level.blocks):
            convs = (["features"] if block.conv_features is not None else []) + ["residual"]
            for conv in convs:
                names += [f"b{k}_{conv}"] + ([f"b{k}_{conv}_on_features", f"b{k}_{conv}_on_image"] if k > 0 else [])
            names += ([f"b{k}_scaled"] if block.residual_scale is not None else []) + [f"b{k}_image"]
        if model.cfg.mode == "full":
            names += ["hl0_on_features", "hl0_on_image"] + [f"hl{k}" for k in range(model.cfg.n_hl)]
        self.ranges = nn.ModuleDict({n: ActivationQuant() for n in names})

    def _weight(self, w: torch.Tensor) -> torch.Tensor:
        return quantize_weight(w) if self.round_weights else w

    def _split_conv(
        self, features: torch.Tensor | None, image: torch.Tensor, conv: nn.Conv2d, name: str, offset: torch.Tensor | None = None, stride: int = 1
    ) -> torch.Tensor:
        """The conv over [features, image] (both padded) as the tile graph has it: a conv over each part, each
        part rounded, summed (the sum not yet rounded: its activation comes first). `offset` [B,O] adds to
        the bias (noise-level offsets, which export folds into it)."""
        n = 0 if features is None else features.shape[1]
        bias = (conv.bias[None] if offset is None else conv.bias + offset)[:, :, None, None]  # [1 or B,O,1,1]
        on_image = F.conv2d(image, self._weight(conv.weight[:, n:]), None, stride)
        if features is None:
            return on_image + bias
        on_features = F.conv2d(features, self._weight(conv.weight[:, :n]), None, stride) + bias
        return self.ranges[f"{name}_on_features"](on_features) + self.ranges[f"{name}_on_image"](on_image)

    def low_level(self, image: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """LowLevelStage.forward with the rounding; working domain in and out."""
        q = self.ranges
        features = None
        for k, (block, offset) in enumerate(zip(self.model.low_level.blocks, self.model.low_level.bias_offsets(noise))):
            padded = (None if features is None else _pad(features), _pad(image))
            n = 0 if block.conv_features is None else block.conv_features.out_channels
            if block.conv_features is not None:
                pre = self._split_conv(*padded, block.conv_features, f"b{k}_features", None if offset is None else offset[:, :n])
                features = q[f"b{k}_features"](F.relu(pre))
            pre = self._split_conv(*padded, block.conv_residual, f"b{k}_residual", None if offset is None else offset[:, n:])
            residual = torch.tanh(q[f"b{k}_residual"](pre))
            residual = quantize_tanh(residual) if self.round_tanh else residual
            if block.residual_scale is not None:
                residual = q[f"b{k}_scaled"](residual * block.residual_scale)
            image = q[f"b{k}_image"](image + residual)
        return features, image

    def high_level(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """HighLevelStage.forward on [features, image] with the rounding: the cell map."""
        x = None
        for k, conv in enumerate(self.model.high_level.layers[1::4]):
            if k == 0:
                pre = self._split_conv(_pad(features), _pad(image), conv, "hl0", stride=2)
            else:
                pre = F.conv2d(_pad(x), self._weight(conv.weight), conv.bias, 2)
            x = F.max_pool2d(self.ranges[f"hl{k}"](F.relu(pre)), 2)
        return x

    def tile(self, rgb: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the int8 tile graph gives for rgb [B,3,H,W]: the low-level image [B,3,H,W] (linear) and the
        high-level cell map (None for jdd)."""
        m = self.model
        check_input(rgb, m.cfg)
        features, image = self.low_level(self.ranges["input"](m.pack(rgb)), noise)
        cells = self.high_level(features, image) if m.cfg.mode == "full" else None
        return m.unpack(image), cells

    def forward(self, rgb: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """rgb [B,3,H,W] -> [B,3,H,W] like DeepISP.forward, the colour transform in float."""
        image, cells = self.tile(rgb, noise)
        if cells is None:
            return image
        return apply_color_transform(self.model.color_head(self.model.global_features(cells)), image)


@torch.no_grad()
def calibrated_ranges(model: DeepISP, windows: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    """The int8 range of every quantization point: min and max of the float network's values over the
    calibration windows (what TFLite's calibration measures, per point; see deepisp.export.tf_graphs for
    why the exported int8 graph takes these instead of the converter's own).

    windows: [S_h,S_w] float32 mosaics (deepisp.export.calibration.calibration_windows), the model's input
    (balanced for `as_shot` models)."""
    sim = QuantizedTile(model).eval()
    sim.round_weights = sim.round_tanh = False
    for q in sim.ranges.values():
        q.observing = True
    for w in windows:
        sim.tile(_rgb(w))
    return {name: (float(q.lo), float(q.hi)) for name, q in sim.ranges.items()}


def _rgb(window: np.ndarray) -> torch.Tensor:
    """A calibration window [S_h,S_w] -> the network's input [1,3,S_h,S_w] (bilinear)."""
    return bilinear_demosaic(torch.as_tensor(window, dtype=torch.float32)[None, None])


@torch.no_grad()
def point_costs(model: DeepISP, ranges: dict[str, tuple[float, float]], windows: list[np.ndarray], top: int = 10) -> list[dict]:
    """Where int8 loses: per quantization point, the tile graph's image with only that point rounded, as PSNR
    against the float image (linear, peak 1) on `windows`; also "weights" (all conv weights alone) and "tanh"
    (TANH's fixed step alone). The `top` costliest, worst first, with each point's range and step."""
    sim = QuantizedTile(model).eval()
    for name, q in sim.ranges.items():
        q.lo.fill_(ranges[name][0])
        q.hi.fill_(ranges[name][1])
    rgb = [_rgb(w) for w in windows]

    def image_psnr(point: str | None, weights: bool = False, tanh: bool = False) -> float:
        for name, q in sim.ranges.items():
            q.active = name == point
        sim.round_weights, sim.round_tanh = weights, tanh
        errors = []
        for x in rgb:
            float_image = model.unpack(model.low_level(model.pack(x))[1])
            errors.append((sim.tile(x)[0] - float_image).pow(2).mean())
        return float(-10 * torch.log10(torch.stack(errors).mean().clamp(min=1e-20)))

    rows = [{"point": name, "range": list(ranges[name]), "step": (ranges[name][1] - ranges[name][0]) / 255, "psnr_alone": image_psnr(name)} for name in ranges]
    rows.append({"point": "weights", "range": None, "step": None, "psnr_alone": image_psnr(None, weights=True)})
    rows.append({"point": "tanh", "range": [-1.0, 127 * TANH_STEP], "step": TANH_STEP, "psnr_alone": image_psnr(None, tanh=True)})
    return sorted(rows, key=lambda r: r["psnr_alone"])[:top]
