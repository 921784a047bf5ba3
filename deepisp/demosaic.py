"""Bayer mosaic -> RGB (bilinear demosaicing) as fixed convolutions, so it can live inside an exported graph.

Input mosaics are canonical RGGB (see deepisp.cfa, which owns patterns, masks and sampling).

Shapes: mosaic [B,1,H,W] float, RGB [B,3,H,W] float, both linear sensor RGB (no white balance, no
colour matrix), range [0,1]. H and W may be odd; a tile cut from a mosaic keeps the RGGB phase only if
its origin is even.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepisp.cfa import rggb_masks

# Bilinear interpolation as one depthwise 3x3 kernel per channel applied to the masked mosaic:
# green sites have 4 green neighbours (cross), red/blue sites have 2 or 4 (box).
_K_GREEN = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4.0
_K_RED_BLUE = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4.0


def bilinear_kernels(dtype=torch.float32, device=None) -> torch.Tensor:
    """Depthwise kernels [3,1,3,3] (R, G, B) of bilinear demosaicing on an RGGB mosaic."""
    return torch.stack([_K_RED_BLUE, _K_GREEN, _K_RED_BLUE]).unsqueeze(1).to(device=device, dtype=dtype)


def bilinear_demosaic(raw: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaic of a canonical RGGB mosaic, the paper's preprocessing.

    Borders use reflection padding, which keeps the Bayer phase (row -1 mirrors row 1), so every
    output pixel is a true bilinear interpolation of same-colour neighbours.

    Args:
        raw: [B,1,H,W] float, H,W >= 2, RGGB phase at (0,0).
    Returns:
        [B,3,H,W] float, linear sensor RGB; measured samples are kept exactly.
    """
    if raw.ndim != 4 or raw.shape[1] != 1:
        raise ValueError(f"bilinear_demosaic expects [B,1,H,W], got {tuple(raw.shape)}")
    if min(raw.shape[-2:]) < 2:
        raise ValueError(f"bilinear_demosaic needs H,W >= 2, got {tuple(raw.shape[-2:])}")
    masks = rggb_masks(raw.shape[2], raw.shape[3], device=raw.device, dtype=raw.dtype)
    planes = F.pad(raw * masks, (1, 1, 1, 1), mode="reflect")
    return F.conv2d(planes, bilinear_kernels(raw.dtype, raw.device), groups=3)


def phase_kernels(dtype=torch.float32) -> torch.Tensor:
    """Bilinear demosaicing as one stride-2 4x4 convolution over the reflection-padded mosaic.

    The masks of `bilinear_demosaic` are full-size constants, which an exported fixed-shape graph would
    carry as megabytes of weights. Within one RGGB quad the masks are fixed, so each of the 4 output
    phases (dy, dx) of each colour is a plain 3x3 kernel: kernel[c, dy, dx, u, v] weighs padded pixel
    (2i + u, 2j + v) for output pixel (2i + dy, 2j + dx). A stride-2 conv with these 12 kernels followed by
    depth-to-space (pixel shuffle) is exactly bilinear demosaicing.

    Returns:
        [3,2,2,4,4]: colour (R,G,B), row phase dy, column phase dx, kernel row u, kernel column v.
    """
    k = bilinear_kernels(dtype)[:, 0]  # [3,3,3]
    site = rggb_masks(2, 2, dtype=dtype)[0]  # [3,2,2]: which colour the sensor measures at each quad site
    out = torch.zeros(3, 2, 2, 4, 4, dtype=dtype)
    for dy in range(2):
        for dx in range(2):
            for i in range(3):
                for j in range(3):
                    u, v = dy + i, dx + j  # padded (u, v) is mosaic (u - 1, v - 1) relative to the quad
                    out[:, dy, dx, u, v] = k[:, i, j] * site[:, (u - 1) % 2, (v - 1) % 2]
    return out


def bilinear_demosaic_packed(raw: torch.Tensor) -> torch.Tensor:
    """`bilinear_demosaic` in the 2x2 space-to-depth layout of packed models (`DeepISP.pack`), computed at half
    resolution: one stride-2 conv (see `phase_kernels`), no full-size RGB image and no masks.

    Args:
        raw: [B,1,H,W] float, H and W even, RGGB phase at (0,0).
    Returns:
        [B,12,H/2,W/2] float, channel c*4 + dy*2 + dx (torch.pixel_unshuffle's order), equal to
        `pixel_unshuffle(bilinear_demosaic(raw), 2)` up to float round-off.
    """
    if raw.ndim != 4 or raw.shape[1] != 1 or raw.shape[2] % 2 or raw.shape[3] % 2:
        raise ValueError(f"bilinear demosaicing at half resolution needs [B,1,H,W] with even H,W, got {tuple(raw.shape)}")
    # phase_kernels' [3,2,2] flattening is c*4 + dy*2 + dx, pixel_unshuffle's channel order.
    weight = phase_kernels(raw.dtype).reshape(12, 1, 4, 4).to(raw.device)
    return F.conv2d(F.pad(raw, (1, 1, 1, 1), mode="reflect"), weight, stride=2)


def bilinear_demosaic_strided(raw: torch.Tensor) -> torch.Tensor:
    """`bilinear_demosaic` as the graph-friendly stride-2 conv + pixel shuffle (see `phase_kernels`).

    Args:
        raw: [B,1,H,W] float, H and W even, RGGB phase at (0,0).
    Returns:
        [B,3,H,W] float, equal to `bilinear_demosaic(raw)` up to float round-off.
    """
    return F.pixel_shuffle(bilinear_demosaic_packed(raw), 2)
