"""What a DeepISP model is, torch-free: `ModelConfig` (every option of a model, declared once), the named
presets, the size bounds a config read from a file must keep, and the layout of the colour transform's
output W (recorded in exported metadata). Readers of checkpoints' and sidecars' configs (the runtime, the
Android harness) need nothing more, so this module imports no torch.

The options' values are the string enums of deepisp.options (Mode, Compand, Exposure, WhiteBalance); a config
stores them as plain `str`, so checkpoints and sidecars keep their format. What each option does is said in
the module that implements it: network (residual_scale, packed), noise_input (noise_input), domain (compand);
white_balance and exposure are input contracts, applied before the network by deepisp.conditioning.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepisp.options import COMPANDINGS, EXPOSURES, MODES, WHITE_BALANCES, Compand, Exposure, Mode, WhiteBalance

# Row-major upper triangle of [r,g,b,1]^T [r,g,b,1]; W[c, m] multiplies monomial m for output channel c.
MONOMIAL_ORDER = ("rr", "rg", "rb", "r", "gg", "gb", "g", "bb", "b", "1")
N_MONOMIALS = len(MONOMIAL_ORDER)

# Bounds of a config's sizes, 3-5x the paper's (n_ll 15-20, width 64, n_hl 3, hl_width 64): far beyond anything
# trained here, small enough that no config read from a file allocates more than ~200 MB of weights.
MAX_SIZES = {"n_ll": 64, "n_hl": 16, "width": 256, "hl_width": 256}


@dataclass(frozen=True)
class ModelConfig:
    """Every option of a DeepISP model. The string options take the values of deepisp.options' enums and are
    stored as plain `str` (a member passed in is stored as its value)."""

    mode: str = Mode.FULL.value  # Mode: "jdd" (low-level stage only) or "full" (both stages)
    n_ll: int = 15  # low-level blocks
    n_hl: int = 3  # high-level conv+pool layers (ignored for "jdd")
    width: int = 64  # low-level channels per block: width - 3 features + 3 residual image channels
    hl_width: int = 64  # channels of the high-level convs
    residual_scale: bool = False  # learned scalar per block on the tanh residual (int8-friendly; not the paper)
    packed: bool = False  # run on the 2x2 space-to-depth at half resolution (micro presets, phone-jdd; not the paper)
    noise_input: bool = False  # jdd only: told the noise level (sqrt(read var), sqrt(shot gain)); not the paper
    # WhiteBalance, an input contract of full models, not part of the network: "estimate" (paper: the raw as is,
    # the network estimates the white balance) or "as_shot" (the mosaic arrives balanced with the file's as-shot
    # white balance, deepisp.white_balance). Stored in checkpoints and exported metadata so every runner applies it.
    white_balance: str = WhiteBalance.ESTIMATE.value
    compand: str = Compand.NONE.value  # Compand, jdd only: "sqrt" = the network works on the square-root-companded raw
    # Exposure, an input contract of full models like white_balance: "as_is" (the raw's exposure as shot: models
    # trained on the 1/4 exposure alone) or "metered" (every runner brings the raw's 99th percentile to the
    # trained level first, deepisp.conditioning; trained over exposures from 1/16 of the automatic one to
    # over-exposed).
    exposure: str = Exposure.AS_IS.value

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
        if self.mode == Mode.FULL and self.n_hl < 1:
            raise ValueError("mode 'full' needs n_hl >= 1")
        jdd = self.mode == Mode.JDD
        if self.white_balance not in WHITE_BALANCES or (jdd and self.white_balance != WhiteBalance.ESTIMATE):
            raise ValueError(f"white_balance must be 'estimate' or (full models) 'as_shot', got {self.white_balance!r}")
        if self.noise_input and not jdd:
            raise ValueError("noise_input is for jdd models (the full ISP's training pairs carry no noise level)")
        if self.compand not in COMPANDINGS or (not jdd and self.compand != Compand.NONE):
            raise ValueError(f"compand must be one of {COMPANDINGS} ('sqrt' for jdd models only), got {self.compand!r}")
        if self.exposure not in EXPOSURES or (jdd and self.exposure != Exposure.AS_IS):
            raise ValueError(f"exposure must be one of {EXPOSURES} ('metered' for full models only), got {self.exposure!r}")
        for name in ("mode", "white_balance", "compand", "exposure"):  # an enum member is stored as its plain value
            object.__setattr__(self, name, str.__str__(getattr(self, name)))

    @property
    def balanced_input(self) -> bool:
        """The model takes its mosaic balanced with the file's as-shot white balance (deepisp.white_balance)."""
        return self.white_balance == WhiteBalance.AS_SHOT

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
        return self.pack_factor * (4**self.n_hl if self.mode == Mode.FULL else 1)

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
