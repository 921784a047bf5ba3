"""The DeepISP network (Schwartz, Giryes, Bronstein, sections II-A and IV-C): its two stages as modules.

Input: the bilinear-demosaiced raw image, [B,3,H,W] float, linear sensor RGB in [0,1].
Output:
    mode "jdd":  the low-level stage's last image estimate, [B,3,H,W], same space as the target (linear RGB).
    mode "full": the low-level estimate I after the global quadratic colour transform W, [B,3,H,W],
                 sRGB-encoded like the camera JPEG it is trained against (nominally [0,1], not clamped).

Low-level stage: `n_ll` blocks. Block k reads x_k = concat(features_{k-1}, I_{k-1}) (just I_0 for k = 1),
reflection-pads it by 1 and applies two 3x3 convs to the *whole* block input: one gives `width - 3`
ReLU features, the other a 3-channel tanh residual that is added to the running image at every block,
I_k = I_{k-1} + tanh(conv_res(x_k)). Two convs instead of one sliced `width`-channel conv give the same
function and keep exported graphs free of channel slices. Host inference (`LowLevelStage.infer`, what the
tile runner uses) keeps the activations channels-last (NHWC): oneDNN's 3x3 convs at these widths ran 1.6-2.8x
faster on it than on NCHW (24 channels, 2 threads: 154 against 55-98 GFLOP/s), and each conv's output stays
dense, so tanh and ReLU run on contiguous memory (one merged conv with channel slices was 1.25x slower in
NHWC, for its strided tanh). The same values as `forward` (tests/test_model.py keeps them equal).

`residual_scale` (phone presets only; the paper presets keep it off and are exactly the paper's network):
each block learns a scalar s_k and adds s_k * tanh(conv_res(x_k)). The residuals a block adds are a few
thousandths; without s_k they sit in the bottom few codes of tanh's [-1,1] output, which full-integer
int8 quantises with a fixed step of 1/128. With s_k (initialised to RESIDUAL_SCALE_INIT) tanh works in its
whole range and the int8 step of the residual becomes s_k/128. One extra MUL per block in the graphs.

`packed` (micro presets and phone-jdd, beyond the paper): both stages run on the 2x2 space-to-depth of the
bilinear image, 12 channels at half resolution (channel c*4 + dy*2 + dx, torch.pixel_unshuffle's order), so
every conv costs a quarter per output pixel; the running image I_k is that 12-channel packing of the RGB
image, and the output is its depth-to-space. The structure is DeepISP's; the receptive field per block
doubles. Input and output are the same [B,3,H,W] images as every other model (H, W even).

`noise_input` models take per-block bias offsets from a noise level (`LowLevelStage.noise_to_bias`, see
deepisp.model.noise_input); `compand` models work on the companded raw (deepisp.model.domain).

High-level stage ("full" only): `n_hl` x [reflection pad 1, 3x3 conv stride 2, ReLU, 2x2 max-pool] over
concat(features_n_ll, I_n_ll), a global mean, then one FC layer giving W in R^{3x10}, applied per pixel to
the 10 monomials of triu([r,g,b,1]^T [r,g,b,1]) in MONOMIAL_ORDER.

The network has a TensorFlow twin for TFLite export (deepisp/export/tf_graphs.py: cleaner phone graphs than
the converters give). It re-expresses the modules below layer for layer (no concatenation: convs over [features, image] are
split in two, so int8 gives the image its own scale) and refuses any layer type it does not
know; tests/test_export.py::test_tf_graph_equals_torch_window (and tests/test_micro.py for packed models)
keep the two equal. A change to a block's ops here must be made there too.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepisp.cfa import mosaic
from deepisp.demosaic import bilinear_demosaic
from deepisp.model.color_transform import AFFINE_COLUMNS, apply_color_transform, identity_affine
from deepisp.model.config import N_MONOMIALS, ModelConfig
from deepisp.model.domain import check_input, compand, uncompand
from deepisp.options import Compand, Mode

# Initial s_k of `residual_scale` blocks: a block's residual starts limited to +-0.05 of full scale.
RESIDUAL_SCALE_INIT = 0.05
# Noise levels (full-scale units) are multiplied by this before `noise_to_bias`: a read-noise sigma of 10/255
# becomes ~1, so the offsets learn at the pace of the other weights.
NOISE_INPUT_SCALE = 25.5


class LowLevelBlock(nn.Module):
    """One residual block: [B,Cin,H,W] -> features [B,n_features,H,W] (ReLU) and residual [B,image_channels,H,W]
    (tanh, times the learned scalar `residual_scale` when the block has one)."""

    def __init__(self, in_channels: int, n_features: int, with_features: bool = True, residual_scale: bool = False, image_channels: int = 3):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        # The last jdd block's features would be discarded, so it has no feature conv.
        self.conv_features = nn.Conv2d(in_channels, n_features, 3) if with_features else None
        self.conv_residual = nn.Conv2d(in_channels, image_channels, 3)
        self.residual_scale = nn.Parameter(torch.tensor(RESIDUAL_SCALE_INIT)) if residual_scale else None

    def out_channels(self) -> int:
        """Channels of the block's two convs together (features first): what a bias offset must cover."""
        return sum(c.out_channels for c in (self.conv_features, self.conv_residual) if c is not None)

    def scale(self) -> float:
        """The residual's multiplier s_k as a number (1 for a block without `residual_scale`)."""
        return 1.0 if self.residual_scale is None else float(self.residual_scale.detach())

    def forward(self, x: torch.Tensor, bias_offset: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """x [B,Cin,H,W]; bias_offset [B,out_channels()] added to the convs' biases (noise-level input) or None."""
        x = self.pad(x)
        n = 0 if self.conv_features is None else self.conv_features.out_channels
        features = None
        if self.conv_features is not None:
            pre = self.conv_features(x)
            features = F.relu(pre if bias_offset is None else pre + bias_offset[:, :n, None, None])
        pre = self.conv_residual(x)
        residual = torch.tanh(pre if bias_offset is None else pre + bias_offset[:, n:, None, None])
        if self.residual_scale is not None:
            residual = residual * self.residual_scale
        return features, residual


class LowLevelStage(nn.Module):
    """The residual stage, in the working domain (`DeepISP.pack`): image [B,C,h,w] -> (features
    [B,n_features,h,w] or None, image estimate [B,C,h,w]); C = cfg.image_channels, h,w = H,W / pack_factor."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        keep_last_features = cfg.mode == Mode.FULL
        self.blocks = nn.ModuleList(
            LowLevelBlock(
                cfg.image_channels if k == 0 else cfg.width,
                cfg.n_features,
                with_features=(k < cfg.n_ll - 1) or keep_last_features,
                residual_scale=cfg.residual_scale,
                image_channels=cfg.image_channels,
            )
            for k in range(cfg.n_ll)
        )
        # Noise-level input (cfg.noise_input): [B,2] levels -> every block's bias offsets, concatenated.
        self.noise_to_bias = nn.Linear(2, sum(self._out_channels()), bias=False) if cfg.noise_input else None
        if self.noise_to_bias is not None:
            nn.init.zeros_(self.noise_to_bias.weight)

    def bias_offsets(self, noise: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Per block, [B,out_channels] bias offsets for noise levels [B,2] (see the module doc); Nones for a
        blind model. A noise-aware model needs `noise`, a blind one refuses it."""
        if self.noise_to_bias is None:
            if noise is not None:
                raise ValueError("this model is blind (trained without a noise-level input); pass no noise level")
            return [None] * len(self.blocks)
        if noise is None or noise.ndim != 2 or noise.shape[1] != 2:
            raise ValueError(f"this model takes noise levels [B,2] (sqrt(read var), sqrt(shot gain)), got {None if noise is None else tuple(noise.shape)}")
        offsets = self.noise_to_bias(noise.to(self.noise_to_bias.weight) * NOISE_INPUT_SCALE)
        return list(offsets.split(self._out_channels(), dim=1))

    def bias_offsets_weight_rows(self) -> list[torch.Tensor]:
        """Per block, the rows of `noise_to_bias.weight` ([out_channels, 2] views) that give its offsets."""
        return list(self.noise_to_bias.weight.split(self._out_channels(), dim=0))

    def _out_channels(self) -> list[int]:
        return [b.out_channels() for b in self.blocks]

    def forward(self, image: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        x = image
        features = None
        for block, offset in zip(self.blocks, self.bias_offsets(noise)):
            features, residual = block(x, offset)
            image = image + residual
            if features is not None:
                x = torch.cat([features, image], dim=1)
        return features, image

    @torch.no_grad()
    def infer(self, image: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """`forward` for inference, in channels-last memory (see the module doc); the same values to fp32
        round-off.

        Returns (concat(features, image) [B,width,h,w], the high-level stage's input, or None for jdd;
        image estimate [B,C,h,w]), working domain like `forward`, both channels-last views. A noise-aware
        model runs here only after `fold_noise_level`.

        Two rewrites of `forward`, both for speed on CPUs (issue "Speed vs LibRaw", README): activations live
        reflection-padded, each conv runs with zero padding 1 over the padded block input, whose interior is
        the valid conv `forward` computes, and the one-pixel border is then overwritten by reflection (no
        padding copy per block); and tanh(z) is computed as 2 * sigmoid(2z) - 1 with the 2 folded into the
        residual conv's weights (exact: a power of two), as ATen's tanh ran 6-7x slower than its sigmoid.
        """
        if self.noise_to_bias is not None:
            raise ValueError("a noise-aware model needs its noise level: run deepisp.model.fold_noise_level(model, noise) first")
        image = _reflect_border_(F.pad(image, (1, 1, 1, 1)).contiguous(memory_format=torch.channels_last))
        x, block_input = image, None
        for block in self.blocks:
            conv = block.conv_residual
            scale = block.scale()
            residual = F.conv2d(x, 2 * conv.weight, 2 * conv.bias, padding=1).sigmoid_()
            features = None if block.conv_features is None else F.conv2d(x, block.conv_features.weight, block.conv_features.bias, padding=1).relu_()
            # The image's own border is left stale: only the block input's is read.
            image = residual.mul_(2 * scale).sub_(scale).add_(image)
            if features is None:
                x = _reflect_border_(image)
                continue
            if block_input is None:
                # One buffer for every block's input, both convs having read it; torch.cat on channels-last
                # tensors ran 3x slower than these two copies.
                b, n, h, w = features.shape
                block_input = torch.empty(b, n + image.shape[1], h, w, dtype=image.dtype, device=image.device, memory_format=torch.channels_last)
            block_input[:, :n] = features
            block_input[:, n:] = image
            x = _reflect_border_(block_input)
        interior = (slice(None), slice(None), slice(1, -1), slice(1, -1))
        return (None if x is image else x[interior]), image[interior]


def _reflect_border_(x: torch.Tensor) -> torch.Tensor:
    """x [B,C,h+2,w+2] with its one-pixel border overwritten, in place, by the reflection of its interior
    (what ReflectionPad2d(1) of the interior gives); returns x."""
    x[:, :, 0, 1:-1] = x[:, :, 2, 1:-1]
    x[:, :, -1, 1:-1] = x[:, :, -3, 1:-1]
    x[:, :, :, 0] = x[:, :, :, 2]
    x[:, :, :, -1] = x[:, :, :, -3]
    return x


class HighLevelStage(nn.Module):
    """[B,width,H,W] (features + image) -> cell map [B,hl_width,H/4^n_hl,W/4^n_hl] before the global mean."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = cfg.width
        for _ in range(cfg.n_hl):
            layers += [
                nn.ReflectionPad2d(1),
                nn.Conv2d(in_ch, cfg.hl_width, 3, stride=2),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_ch = cfg.hl_width
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DeepISP(nn.Module):
    """DeepISP: [B,3,H,W] bilinear-demosaiced linear raw RGB in [0,1] -> [B,3,H,W] output (see module doc)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.low_level = LowLevelStage(cfg)
        if cfg.mode == Mode.FULL:
            self.high_level = HighLevelStage(cfg)
            self.to_w = nn.Linear(cfg.hl_width, 3 * N_MONOMIALS)
        self._init_weights()

    def _init_weights(self) -> None:
        # Residual convs start at zero so every block begins as the identity on the image path and the
        # initial output is the input (jdd) or W_init applied to the input (full); features still train
        # because the residual conv weights receive gradient from the first step.
        for block in self.low_level.blocks:
            nn.init.zeros_(block.conv_residual.weight)
            nn.init.zeros_(block.conv_residual.bias)
        if self.cfg.mode == Mode.FULL:
            nn.init.normal_(self.to_w.weight, std=1e-3)
            self.set_color_init(identity_affine())

    @torch.no_grad()
    def set_color_init(self, w_affine: torch.Tensor) -> None:
        """Initialise W's bias from an affine map (paper IV-C): quadratic terms zero.

        Args:
            w_affine: [3,4], columns r, g, b, 1.
        """
        w = torch.zeros(3, N_MONOMIALS)
        w[:, list(AFFINE_COLUMNS)] = w_affine.to(w)
        self.to_w.bias.copy_(w.flatten())

    def global_features(self, cells: torch.Tensor) -> torch.Tensor:
        """Global mean over the high-level cell map: [B,C,h,w] -> [B,C]."""
        return cells.mean(dim=(2, 3))

    def color_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """[B,hl_width] global mean -> W [B,3,10] (row = output channel, column = monomial)."""
        return self.to_w(pooled).view(-1, 3, N_MONOMIALS)

    def pack(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> the working domain [B,image_channels,H/p,W/p] (p = pack_factor; identity unless packed)."""
        return F.pixel_unshuffle(rgb, 2) if self.cfg.packed else rgb

    def unpack(self, image: torch.Tensor) -> torch.Tensor:
        """Inverse of `pack`: working-domain image -> [B,3,H,W]."""
        return F.pixel_shuffle(image, 2) if self.cfg.packed else image

    def forward_with_w(self, rgb: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Like forward, also returning W [B,3,10] (None in jdd mode)."""
        check_input(rgb, self.cfg)
        if self.cfg.compand != Compand.NONE:
            rgb = bilinear_demosaic(compand(mosaic(rgb), self.cfg))
        features, image = self.low_level(self.pack(rgb), noise)
        if self.cfg.mode == Mode.JDD:
            return uncompand(self.unpack(image), self.cfg), None
        cells = self.high_level(torch.cat([features, image], dim=1))
        w = self.color_head(self.global_features(cells))
        return apply_color_transform(w, self.unpack(image)), w

    def forward(self, rgb: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """rgb [B,3,H,W] (module doc); noise [B,2] noise levels, for `noise_input` models only."""
        return self.forward_with_w(rgb, noise)[0]


# The modules' public home is the package (`deepisp.model.DeepISP`, as numpy does for its public names): torch's
# ONNX exporter writes each node's module class path into the graph, so an exported graph does not change with
# the file a class is defined in.
for _module in (LowLevelBlock, LowLevelStage, HighLevelStage, DeepISP):
    _module.__module__ = "deepisp.model"
