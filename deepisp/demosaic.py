"""Bayer mosaic <-> RGB as fixed convolutions, so both can live inside an exported graph.

Convention used everywhere in deepisp: a mosaic is *canonical RGGB*, i.e. pixel (0,0) is red,
(0,1) and (1,0) green, (1,1) blue. `raw.py` brings every sensor's pattern to this phase by flipping.

Shapes: mosaic [B,1,H,W] float, RGB [B,3,H,W] float, both linear sensor RGB (no white balance, no
colour matrix), range [0,1]. H and W may be odd; a tile cut from a mosaic keeps the RGGB phase only if
its origin is even.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CFA_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")


def rggb_masks(h: int, w: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Sampling masks of an RGGB mosaic: [1,3,H,W] with 1 where the sensor measured that colour."""
    yy = torch.arange(h, device=device).view(h, 1) % 2
    xx = torch.arange(w, device=device).view(1, w) % 2
    r = (yy == 0) & (xx == 0)
    b = (yy == 1) & (xx == 1)
    g = ~(r | b)
    return torch.stack([r, g, b]).unsqueeze(0).to(dtype)


def mosaic(rgb: torch.Tensor) -> torch.Tensor:
    """Sample an RGB image on the RGGB grid.

    Args:
        rgb: [B,3,H,W] float, linear.
    Returns:
        [B,1,H,W] float: each pixel keeps only the channel its RGGB site measures.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"mosaic expects [B,3,H,W], got {tuple(rgb.shape)}")
    masks = rggb_masks(rgb.shape[2], rgb.shape[3], device=rgb.device, dtype=rgb.dtype)
    return (rgb * masks).sum(1, keepdim=True)


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
