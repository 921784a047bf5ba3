"""Colour spaces: sRGB transfer curve, sRGB -> CIE Lab (differentiable), the paper's histogram stretch.

All functions take channel-first tensors [B,3,H,W] (or [3,H,W]) with the channel axis at dim -3.
sRGB here means the IEC 61966-2-1 primaries and D65 white; "encoded" values carry the sRGB transfer
curve (what a JPEG stores), "linear" values do not.
"""

from __future__ import annotations

import torch

from deepisp.reference_camera import M_XYZ_FROM_SRGB

# float32, cast to the input's dtype when applied: float64 Lab values depend on this rounding.
_RGB_TO_XYZ = torch.tensor(M_XYZ_FROM_SRGB, dtype=torch.float32)
# D65 reference white (2 degree observer), the one skimage and kornia use.
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883])


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded -> linear. Values outside [0,1] follow the curve's linear segment (below 0) and
    power segment (above 1) without NaN gradients."""
    power = ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(x > 0.04045, power, x / 12.92)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear -> sRGB-encoded, same out-of-range behaviour as `srgb_to_linear`."""
    power = 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(x > 0.0031308, power, 12.92 * x)


def _apply_matrix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel 3x3 matrix on the channel axis (dim -3), without einsum."""
    m = m.to(dtype=x.dtype, device=x.device)
    c0, c1, c2 = x.unbind(-3)
    return torch.stack([m[i, 0] * c0 + m[i, 1] * c1 + m[i, 2] * c2 for i in range(3)], dim=-3)


def srgb_to_lab(srgb: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded RGB -> CIE Lab (D65), differentiable almost everywhere.

    Args:
        srgb: [...,3,H,W] float, nominally [0,1] (out-of-range values are allowed).
    Returns:
        [...,3,H,W]: L in [0,100], a and b roughly in [-110,110] for in-gamut input.
    """
    xyz = _apply_matrix(_RGB_TO_XYZ, srgb_to_linear(srgb))
    xyz = xyz / _WHITE_D65.to(xyz).view(3, 1, 1)
    eps = 0.008856  # (6/29)^3
    f = torch.where(xyz > eps, xyz.clamp(min=eps) ** (1 / 3), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


# BT.601 luma weights, the ones MATLAB's rgb2ycbcr (and so the paper's imadjust-style stretch) uses.
_LUMA = (0.299, 0.587, 0.114)


def histogram_stretch(srgb: torch.Tensor, saturation: float = 0.05) -> torch.Tensor:
    """The paper's evaluation stretch: luminance mapped to the full range with `saturation` of the pixels
    clipped at each end; chroma (RGB minus luma) is kept, so hues do not shift.

    Args:
        srgb: [3,H,W] or [B,3,H,W] float in [0,1], sRGB-encoded.
        saturation: fraction of pixels saturated at the low and at the high end (paper: 5%).
    Returns:
        same shape, float in [0,1].
    """
    batched = srgb.ndim == 4
    x = srgb if batched else srgb.unsqueeze(0)
    out = []
    for img in x:
        luma = sum(w * c for w, c in zip(_LUMA, img))
        lo, hi = torch.quantile(luma.flatten().float(), torch.tensor([saturation, 1 - saturation])).tolist()
        scale = 1.0 / max(hi - lo, 1e-6)
        new_luma = ((luma - lo) * scale).clamp(0, 1)
        out.append((img - luma + new_luma).clamp(0, 1))
    y = torch.stack(out)
    return y if batched else y[0]
