"""What a model costs, torch-free: parameters, forward FLOPs per output pixel, receptive field."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepisp.model.config import N_MONOMIALS, ModelConfig
from deepisp.options import Mode

if TYPE_CHECKING:
    import torch.nn as nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_pixel(cfg: ModelConfig) -> float:
    """Forward FLOPs (2 x MACs) per output pixel, low-level stage plus high-level stage: the convolutions
    (`conv_flops_per_pixel`), the residual scales' multiplies and the quadratic colour transform."""
    area = 1.0 / cfg.pack_factor**2  # working pixels per output pixel
    scales = cfg.n_ll * cfg.image_channels * area if cfg.residual_scale else 0.0  # one multiply per residual channel and block
    color = 2 * 3 * N_MONOMIALS if cfg.mode == Mode.FULL else 0
    return float(conv_flops_per_pixel(cfg) + scales + color)


def conv_flops_per_pixel(cfg: ModelConfig) -> float:
    """The convolutions' share of `flops_per_pixel`: the low-level blocks' and the high-level stage's convs."""
    c = cfg.image_channels
    ll = 2 * 9 * c * cfg.width  # first block reads the image, writes width
    ll += (cfg.n_ll - 1) * 2 * 9 * cfg.width * cfg.width
    if cfg.mode == Mode.JDD:
        ll -= 2 * 9 * cfg.width * cfg.n_features  # last jdd block has no feature conv
    area = 1.0 / cfg.pack_factor**2  # working pixels per output pixel
    if cfg.mode == Mode.JDD:
        return float(ll * area)
    hl, in_ch, scale = 0.0, cfg.width, area
    for _ in range(cfg.n_hl):
        scale /= 4.0  # conv stride 2 output pixels per input pixel
        hl += scale * 2 * 9 * in_ch * cfg.hl_width
        scale /= 4.0  # max-pool
        in_ch = cfg.hl_width
    return float(ll * area + hl)


def receptive_field(cfg: ModelConfig) -> int:
    """Side of the low-level stage's receptive field: 2 * n_ll + 1 (paper III-B) working pixels, each
    pack_factor input pixels wide."""
    return cfg.pack_factor * (2 * cfg.n_ll + 1)
