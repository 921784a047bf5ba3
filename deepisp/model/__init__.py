"""The DeepISP network (Schwartz, Giryes, Bronstein, sections II-A and IV-C) and what belongs to a model.

Input: the bilinear-demosaiced raw image, [B,3,H,W] float, linear sensor RGB in [0,1].
Output:
    mode "jdd":  the low-level stage's last image estimate, [B,3,H,W], same space as the target (linear RGB).
    mode "full": the low-level estimate I after the global quadratic colour transform W, [B,3,H,W],
                 sRGB-encoded like the camera JPEG it is trained against (nominally [0,1], not clamped).

One module per concern:
    config.py           ModelConfig (every option, declared once), presets, size bounds, W's layout; torch-free
    network.py          the two stages and DeepISP itself (and the host's channels-last inference)
    color_transform.py  the quadratic colour transform W (paper eq. 1) and its affine initialisation (IV-C)
    domain.py           the input check and the working domain of `compand` models
    noise_input.py      noise levels of noise-aware jdd models, and folding one level into the biases
    growth.py           Net2Net growth of a trained model into a wider/deeper one
    cost.py             parameters, FLOPs per pixel, receptive field; torch-free

The names below are importable from the package itself (`from deepisp.model import DeepISP`); they load on
first use, so `deepisp.model.config` and `deepisp.model.cost` are read without torch (the runtime's metadata
reader and the Android harness need no training stack).
"""

import importlib

_WHERE = {
    "deepisp.model.config": ("MAX_SIZES", "MONOMIAL_ORDER", "N_MONOMIALS", "PRESETS", "ModelConfig"),
    "deepisp.model.network": ("NOISE_INPUT_SCALE", "RESIDUAL_SCALE_INIT", "DeepISP", "HighLevelStage", "LowLevelBlock", "LowLevelStage"),
    "deepisp.model.color_transform": ("AFFINE_COLUMNS", "apply_color_transform", "fit_affine", "identity_affine", "quadratic_monomials"),
    "deepisp.model.domain": ("check_input", "compand", "uncompand"),
    "deepisp.model.noise_input": ("fold_noise_level", "noise_levels"),
    "deepisp.model.growth": ("can_grow", "grow"),
    "deepisp.model.cost": ("conv_flops_per_pixel", "count_parameters", "flops_per_pixel", "receptive_field"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'deepisp.model' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
