"""The DeepISP network (Schwartz, Giryes, Bronstein, sections II-A and IV-C), and nothing else.

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
tile runner uses) merges them into one `width`-channel conv per block instead: one pass over the input
instead of two, ~1.6-2x faster on CPU, the same values (tests/test_model.py keeps them equal).

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

`noise_input` (jdd models only, beyond the paper, which trains its JDD network blind): the model
is told the noise level, FFDNet-style, as two constant planes appended to every block's input: the read-noise
standard deviation and the square root of the shot-noise gain, (sqrt(b), sqrt(a)) for a sensor whose
variance at linear level x is a*x + b on the [0,1] scale (a DNG's NoiseProfile; `noise` [B,2] below, times
NOISE_INPUT_SCALE). A 3x3 conv of a constant plane under reflection padding is the constant times the
kernel's sum, so the planes are kept as what they are, a per-image offset of every block's conv bias
(`LowLevelStage.noise_to_bias`, zero at init: a noise-aware model starts as its blind twin).
`fold_noise_level` bakes one level into those biases and gives an ordinary model: what tiling, `deepisp
process` and the exported graphs run, exact for that level.

`compand` (jdd models only, beyond the paper): "sqrt" makes the network work on the square-root-companded
raw: the input's measured samples are companded (x -> sign(x) sqrt|x|; bilinear interpolation keeps them, so
`forward` re-samples the mosaic from its bilinear input, compands it and demosaics again) and the network's
last image is expanded back (y -> y |y|). Input and output stay linear; only the working domain changes.
What it buys is int8: a linear image rounded at a uniform step loses the shadows that the sRGB curve
expands (phone-jdd's full-integer int8 lost 3.2 dB sRGB PSNR against the truth), a companded one is
rounded about evenly in perceptual terms, and square-root companding also makes shot noise about equally
strong at every level. Runners that work on windows (`deepisp.tiling.run_tiled`, the exported graphs)
compand the whole mosaic before the network and expand its image after (`compand`, `uncompand`); an
exported graph's input and output are in the companded domain.

`grow` (beyond the paper) turns a trained model into a wider and/or deeper one of the same kind that computes
the same function (new feature channels with zero outgoing weights, identity blocks): a warm start for a
bigger preset (`deepisp train --init-from` a smaller checkpoint; the shipped phone-jdd was grown from micro-jdd).

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

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepisp.cfa import mosaic
from deepisp.demosaic import bilinear_demosaic
from deepisp.options import COMPANDINGS, EXPOSURES, MODES

# Initial s_k of `residual_scale` blocks: a block's residual starts limited to +-0.05 of full scale.
RESIDUAL_SCALE_INIT = 0.05
# Row-major upper triangle of [r,g,b,1]^T [r,g,b,1]; W[c, m] multiplies monomial m for output channel c.
MONOMIAL_ORDER = ("rr", "rg", "rb", "r", "gg", "gb", "g", "bb", "b", "1")
N_MONOMIALS = len(MONOMIAL_ORDER)
# Columns of W that hold the affine part (r, g, b, 1): where the paper's affine initialisation goes.
AFFINE_COLUMNS = (MONOMIAL_ORDER.index("r"), MONOMIAL_ORDER.index("g"), MONOMIAL_ORDER.index("b"), MONOMIAL_ORDER.index("1"))
# Noise levels (full-scale units) are multiplied by this before `noise_to_bias`: a read-noise sigma of 10/255
# becomes ~1, so the offsets learn at the pace of the other weights.
NOISE_INPUT_SCALE = 25.5


# Bounds of a config's sizes, 3-5x the paper's (n_ll 15-20, width 64, n_hl 3, hl_width 64): far beyond anything
# trained here, small enough that no config read from a file allocates more than ~200 MB of weights.
MAX_SIZES = {"n_ll": 64, "n_hl": 16, "width": 256, "hl_width": 256}


@dataclass(frozen=True)
class ModelConfig:
    mode: str = "full"  # "jdd" (low-level stage only) or "full" (both stages)
    n_ll: int = 15  # low-level blocks
    n_hl: int = 3  # high-level conv+pool layers (ignored for "jdd")
    width: int = 64  # low-level channels per block: width - 3 features + 3 residual image channels
    hl_width: int = 64  # channels of the high-level convs
    residual_scale: bool = False  # learned scalar per block on the tanh residual (int8-friendly; not the paper)
    packed: bool = False  # run on the 2x2 space-to-depth at half resolution (micro presets, phone-jdd; not the paper)
    noise_input: bool = False  # jdd only: told the noise level (sqrt(read var), sqrt(shot gain)); not the paper
    # Input contract of full models, not part of the network: "estimate" (paper: the raw as is, the network
    # estimates the white balance) or "as_shot" (the mosaic arrives balanced with the file's as-shot white
    # balance, deepisp.white_balance). Stored in checkpoints and exported metadata so every runner applies it.
    white_balance: str = "estimate"
    compand: str = "none"  # jdd only: "sqrt" = the network works on the square-root-companded raw (not the paper)
    # Input contract of full models, like white_balance: "as_is" (the raw's exposure as shot: models trained on
    # the 1/4 exposure alone) or "metered" (every runner brings the raw's 99th percentile to the trained level
    # first, deepisp.conditioning; trained over exposures from 1/16 of the automatic one to over-exposed).
    exposure: str = "as_is"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'jdd' or 'full', got {self.mode!r}")
        sizes = {"n_ll": self.n_ll, "n_hl": self.n_hl, "width": self.width, "hl_width": self.hl_width}
        bad = {k: v for k, v in sizes.items() if type(v) is not int or not 0 <= v <= MAX_SIZES[k]}
        if bad:
            # Checked before anything is allocated: a config from a file must not size a network of gigabytes.
            raise ValueError(f"sizes out of range: {bad} (bounds: {MAX_SIZES})")
        if self.n_ll < 1 or self.width <= self.image_channels or self.hl_width < 1:
            raise ValueError(f"need n_ll >= 1, width > {self.image_channels} (the image channels), hl_width >= 1: {self}")
        if self.mode == "full" and self.n_hl < 1:
            raise ValueError("mode 'full' needs n_hl >= 1")
        if self.white_balance not in ("estimate", "as_shot") or (self.mode == "jdd" and self.white_balance != "estimate"):
            raise ValueError(f"white_balance must be 'estimate' or (full models) 'as_shot', got {self.white_balance!r}")
        if self.noise_input and self.mode != "jdd":
            raise ValueError("noise_input is for jdd models (the full ISP's training pairs carry no noise level)")
        if self.compand not in COMPANDINGS or (self.mode != "jdd" and self.compand != "none"):
            raise ValueError(f"compand must be one of {COMPANDINGS} ('sqrt' for jdd models only), got {self.compand!r}")
        if self.exposure not in EXPOSURES or (self.mode == "jdd" and self.exposure != "as_is"):
            raise ValueError(f"exposure must be one of {EXPOSURES} ('metered' for full models only), got {self.exposure!r}")

    @property
    def balanced_input(self) -> bool:
        """The model takes its mosaic balanced with the file's as-shot white balance (deepisp.white_balance)."""
        return self.white_balance == "as_shot"

    @property
    def pack_factor(self) -> int:
        """Input pixels per working pixel along each axis: 2 for `packed` models, else 1."""
        return 2 if self.packed else 1

    @property
    def image_channels(self) -> int:
        """Channels of the running image I_k: RGB, or its 2x2 packing (12) for `packed` models."""
        return 3 * self.pack_factor**2

    @property
    def n_features(self) -> int:
        return self.width - self.image_channels

    @property
    def hl_stride(self) -> int:
        """Input pixels per high-level output cell along each axis (conv stride 2 x pool 2 per layer)."""
        return self.pack_factor * (4**self.n_hl if self.mode == "full" else 1)

    @property
    def min_size(self) -> int:
        """Smallest H, W the network accepts: a cell of the high-level stage, and 2 working pixels to reflect."""
        return max(2 * self.pack_factor, self.hl_stride)


# Named sizes. Paper sizes are from sections III-A and IV-C. The phone sizes stay within 60 kFLOP per
# pixel (PyNET-V2 Mobile's ~61 k): the paper's 64-wide low-level stage costs ~1 MFLOP per pixel, far beyond
# what a phone spends on a 12 MP frame. phone-full's depth/width split was picked by validation quality of
# short runs at equal cost (README, "Presets"); phone-jdd runs on the packed image like the micro presets,
# because the 9.4 k micro-jdd matched the full-resolution 57 k phone-jdd: at half resolution the same budget
# buys 13 blocks of width 32 instead of 14 of width 16.
PRESETS: dict[str, ModelConfig] = {
    "paper-full": ModelConfig(mode="full", n_ll=15, n_hl=3, width=64, hl_width=64),
    "paper-jdd": ModelConfig(mode="jdd", n_ll=20, n_hl=0, width=64, hl_width=64),
    "phone-full": ModelConfig(mode="full", n_ll=6, n_hl=3, width=24, hl_width=32, residual_scale=True),
    "phone-jdd": ModelConfig(mode="jdd", n_ll=13, n_hl=0, width=32, hl_width=16, residual_scale=True, packed=True),
    # Real-time preview, <= 10 kFLOP per pixel (MicroISP ~3.5 k): half resolution on the packed image.
    "micro-full": ModelConfig(mode="full", n_ll=4, n_hl=2, width=24, hl_width=16, residual_scale=True, packed=True),
    "micro-jdd": ModelConfig(mode="jdd", n_ll=6, n_hl=0, width=20, hl_width=16, residual_scale=True, packed=True),
    # For tests and smoke runs only.
    "tiny-full": ModelConfig(mode="full", n_ll=3, n_hl=1, width=8, hl_width=8),
    "tiny-jdd": ModelConfig(mode="jdd", n_ll=3, n_hl=0, width=8, hl_width=8),
}


def quadratic_monomials(rgb: torch.Tensor) -> torch.Tensor:
    """The 10 monomials of triu([r,g,b,1]^T [r,g,b,1]) per pixel.

    Args:
        rgb: [B,3,H,W].
    Returns:
        [B,10,H,W] in MONOMIAL_ORDER: r², rg, rb, r, g², gb, g, b², b, 1.
    """
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    one = torch.ones_like(r)
    return torch.cat([r * r, r * g, r * b, r, g * g, g * b, g, b * b, b, one], dim=1)


def apply_color_transform(w: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Apply the per-image quadratic colour transform, eq. (1) of the paper.

    Args:
        w: [B,3,10], row = output channel (r,g,b), column = monomial in MONOMIAL_ORDER.
        rgb: [B,3,H,W] image to transform.
    Returns:
        [B,3,H,W], out[:, c] = sum_m w[:, c, m] * monomial_m.
    """
    b, _, h, wd = rgb.shape
    mono = quadratic_monomials(rgb).reshape(b, N_MONOMIALS, h * wd)
    return torch.bmm(w, mono).reshape(b, 3, h, wd)


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
        keep_last_features = cfg.mode == "full"
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
        """`forward` for inference, each block's two convs merged into one (see the module doc).

        Returns (concat(features, image) [B,width,h,w], the high-level stage's input, or None for jdd;
        image estimate [B,C,h,w]), working domain like `forward`. The merged conv's output is reused in place
        as the next block's input: its first n_features channels get the ReLU, its last C the running image.
        A noise-aware model runs here only after `fold_noise_level`.
        """
        if self.noise_to_bias is not None:
            raise ValueError("a noise-aware model needs its noise level: run deepisp.model.fold_noise_level(model, noise) first")
        x = image
        for block in self.blocks:
            convs = [c for c in (block.conv_features, block.conv_residual) if c is not None]
            y = F.conv2d(block.pad(x), torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs]))
            n = y.shape[1] - image.shape[1]
            y[:, :n].relu_()
            residual = y[:, n:].tanh_()
            if block.residual_scale is not None:
                residual.mul_(block.residual_scale)
            image = residual.add_(image)
            x = y
        return (x if x.shape[1] > image.shape[1] else None), image


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
        if cfg.mode == "full":
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
        if self.cfg.mode == "full":
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
        if self.cfg.compand != "none":
            rgb = bilinear_demosaic(compand(mosaic(rgb), self.cfg))
        features, image = self.low_level(self.pack(rgb), noise)
        if self.cfg.mode == "jdd":
            return uncompand(self.unpack(image), self.cfg), None
        cells = self.high_level(torch.cat([features, image], dim=1))
        w = self.color_head(self.global_features(cells))
        return apply_color_transform(w, self.unpack(image)), w

    def forward(self, rgb: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """rgb [B,3,H,W] (module doc); noise [B,2] noise levels, for `noise_input` models only."""
        return self.forward_with_w(rgb, noise)[0]


def compand(raw: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Linear raw values (any shape, [0,1] scale) -> the network's working domain (`cfg.compand`)."""
    return raw.sign() * raw.abs().sqrt() if cfg.compand == "sqrt" else raw


def uncompand(image: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Inverse of `compand`: the network's image in its working domain -> linear."""
    return image * image.abs() if cfg.compand == "sqrt" else image


def noise_levels(read_sigma: float, shot_gain: float = 0.0) -> torch.Tensor:
    """[1,2] noise-level input for a sensor with variance shot_gain*x + read_sigma^2 at linear level x, all on
    the [0,1] scale (a DNG NoiseProfile's (S, O) are (shot_gain, read_sigma^2))."""
    if not (read_sigma >= 0 and shot_gain >= 0):
        raise ValueError(f"noise levels must be non-negative, got read sigma {read_sigma}, shot gain {shot_gain}")
    return torch.tensor([[read_sigma, shot_gain**0.5]], dtype=torch.float32)


@torch.no_grad()
def fold_noise_level(model: DeepISP, noise: torch.Tensor) -> DeepISP:
    """A blind copy of a noise-aware model with one noise level [1,2] baked into its conv biases: the same
    output for that level (exactly: the level's planes are constant), and a plain jdd model for tiling and
    export. A blind model is returned as is (and must be given no level)."""
    if not model.cfg.noise_input:
        model.low_level.bias_offsets(noise)  # refuses a level for a blind model
        return model
    if tuple(noise.shape) != (1, 2):
        raise ValueError(f"fold_noise_level bakes one noise level [1,2], got {tuple(noise.shape)}")
    folded = DeepISP(replace(model.cfg, noise_input=False)).to(model.low_level.noise_to_bias.weight)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("low_level.noise_to_bias.")}
    folded.load_state_dict(state)
    for block, offset in zip(folded.low_level.blocks, model.low_level.bias_offsets(noise)):
        n = 0 if block.conv_features is None else block.conv_features.out_channels
        if block.conv_features is not None:
            block.conv_features.bias += offset[0, :n]
        block.conv_residual.bias += offset[0, n:]
    return folded.train(model.training)


def can_grow(small: ModelConfig, big: ModelConfig) -> bool:
    """`grow` can turn a `small` model into a `big` one: the same model but for more features per block
    and/or more low-level blocks (adding blocks needs >= 2 old ones to put them between); a blind model may
    grow into a noise-aware one. jdd models have no high-level stage, so its fields are not compared."""
    free = {"width", "n_ll", "noise_input"} | ({"n_hl", "hl_width"} if small.mode == "jdd" else set())
    same = {k: v for k, v in asdict(small).items() if k not in free} == {k: v for k, v in asdict(big).items() if k not in free}
    return (
        same
        and big.width >= small.width
        and big.n_ll >= small.n_ll
        and (big.noise_input or not small.noise_input)
        and (big.n_ll == small.n_ll or small.n_ll >= 2)
    )


@torch.no_grad()
def grow(model: DeepISP, cfg: ModelConfig, seed: int = 0) -> DeepISP:
    """A `cfg` model (wider and/or deeper, see `can_grow`) that computes what `model` computes, Net2Net-style:
    a warm start for a bigger preset from a trained smaller one.

    Wider: each block's new feature channels get the conv's default random init for their incoming weights and
    zero outgoing ones (the next block's and the high-level stage's columns for them), so they change nothing
    until training grows those. Deeper: identity blocks are inserted, spread over the gaps between the old
    blocks (never after the last, which in a jdd model has no features): feature conv = centre-tap identity
    (the features are ReLU outputs, so ReLU gives them back), residual conv zero (tanh(0) = 0).
    """
    small = model.cfg
    if not can_grow(small, cfg):
        raise ValueError(f"cannot grow a {small} model into {cfg}: only width, n_ll (from >= 2 blocks) and a noise input may grow")
    with torch.random.fork_rng(devices=[]):  # the new channels' random init, without touching the caller's RNG
        torch.manual_seed(seed)
        big = DeepISP(cfg).to(next(model.parameters()))
    nf0, nf1 = small.n_features, cfg.n_features
    n_old, n_new = small.n_ll, cfg.n_ll
    extra = [(n_new - n_old) // max(n_old - 1, 1) + (g < (n_new - n_old) % max(n_old - 1, 1)) for g in range(n_old - 1)] + [0]
    old_index = {k + sum(extra[:k]): k for k in range(n_old)}  # new block index -> the old block it copies

    def remap_inputs(w_old: torch.Tensor, w_new: torch.Tensor, reads_features: bool) -> None:
        # [out, in, ...] weights reading concat(features, image): old columns to their new place, new ones zero.
        if not reads_features:  # the first block reads the image alone
            w_new.copy_(w_old)
            return
        w_new.zero_()
        w_new[:, :nf0] = w_old[:, :nf0]
        w_new[:, nf1:] = w_old[:, nf0:]

    old_offsets = model.low_level.bias_offsets_weight_rows() if small.noise_input else None
    new_rows = big.low_level.bias_offsets_weight_rows() if cfg.noise_input else None
    for j, block in enumerate(big.low_level.blocks):
        old = model.low_level.blocks[old_index[j]] if j in old_index else None
        if old is None:  # identity block (its noise offsets start at zero like a new model's)
            block.conv_features.weight.zero_()
            block.conv_features.weight[:, :nf1, 1, 1] = torch.eye(nf1)
            block.conv_features.bias.zero_()
            continue
        reads_features = j > 0
        if old.conv_features is not None:
            remap_inputs(old.conv_features.weight, block.conv_features.weight[:nf0], reads_features)
            block.conv_features.bias[:nf0] = old.conv_features.bias
        remap_inputs(old.conv_residual.weight, block.conv_residual.weight, reads_features)
        block.conv_residual.bias.copy_(old.conv_residual.bias)
        if old.residual_scale is not None:
            block.residual_scale.copy_(old.residual_scale)
        if old_offsets is not None:  # (new rows, and all rows of a blind model's growth, stay at their zero init)
            rows_old, rows_new = old_offsets[old_index[j]], new_rows[j]
            n_old_feat = 0 if old.conv_features is None else nf0
            n_new_feat = 0 if block.conv_features is None else nf1
            rows_new[:n_old_feat] = rows_old[:n_old_feat]
            rows_new[n_new_feat:] = rows_old[n_old_feat:]
    if cfg.mode == "full":
        first = big.high_level.layers[1]
        remap_inputs(model.high_level.layers[1].weight, first.weight, True)
        first.bias.copy_(model.high_level.layers[1].bias)
        big.high_level.layers[2:].load_state_dict(model.high_level.layers[2:].state_dict())
        big.to_w.load_state_dict(model.to_w.state_dict())
    return big.train(model.training)


def identity_affine() -> torch.Tensor:
    """[3,4] affine map that leaves r, g, b unchanged."""
    return torch.cat([torch.eye(3), torch.zeros(3, 1)], dim=1)


def check_input(rgb: torch.Tensor, cfg: ModelConfig) -> None:
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"DeepISP expects [B,3,H,W] bilinear RGB, got {tuple(rgb.shape)}")
    if cfg.packed and (rgb.shape[-2] % 2 or rgb.shape[-1] % 2):
        raise ValueError(f"a packed model needs even H and W, got {tuple(rgb.shape[-2:])}")
    if min(rgb.shape[-2:]) < cfg.min_size:
        raise ValueError(
            f"image {tuple(rgb.shape[-2:])} is smaller than the {cfg.min_size}x{cfg.min_size} minimum of this model ({cfg.n_hl} high-level stride-4 layers)"
        )


def fit_affine(rgb_in: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Least-squares affine colour map from input to target pixels (the paper's per-image regression).

    Args:
        rgb_in: [3,H,W] input pixels; target: [3,H,W] target pixels (same grid).
    Returns:
        [3,4] A with target ≈ A @ [r,g,b,1].
    """
    x = rgb_in.reshape(3, -1).T.double()
    x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    y = target.reshape(3, -1).T.double()
    solution = torch.linalg.lstsq(x, y).solution  # [4,3]
    return solution.T.float()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_pixel(cfg: ModelConfig) -> float:
    """Forward FLOPs (2 x MACs) per output pixel, low-level stage plus high-level stage."""
    c = cfg.image_channels
    ll = 2 * 9 * c * cfg.width  # first block reads the image, writes width
    ll += (cfg.n_ll - 1) * 2 * 9 * cfg.width * cfg.width
    if cfg.residual_scale:
        ll += cfg.n_ll * c  # one multiply per residual channel and block
    if cfg.mode == "jdd":
        ll -= 2 * 9 * cfg.width * cfg.n_features  # last jdd block has no feature conv
    area = 1.0 / cfg.pack_factor**2  # working pixels per output pixel
    if cfg.mode == "jdd":
        return float(ll * area)
    hl, in_ch, scale = 0.0, cfg.width, area
    for _ in range(cfg.n_hl):
        scale /= 4.0  # conv stride 2 output pixels per input pixel
        hl += scale * 2 * 9 * in_ch * cfg.hl_width
        scale /= 4.0  # max-pool
        in_ch = cfg.hl_width
    return float(ll * area + hl + 2 * 3 * N_MONOMIALS)


def receptive_field(cfg: ModelConfig) -> int:
    """Side of the low-level stage's receptive field: 2 * n_ll + 1 (paper III-B) working pixels, each
    pack_factor input pixels wide."""
    return cfg.pack_factor * (2 * cfg.n_ll + 1)
