"""Evaluation metrics: PSNR (linear and sRGB, the MSR protocol), SSIM and CIEDE2000.

Inputs are torch tensors or numpy arrays, channel-first: one image [3,H,W] or a batch [B,3,H,W], float.
Every metric is computed in float64 and returned as a python float, so numbers do not depend on the
device or dtype the model ran in.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import structural_similarity

from deepisp.color import linear_to_srgb

ArrayLike = torch.Tensor | np.ndarray


def _batch(x: ArrayLike, name: str) -> np.ndarray:
    """[3,H,W] or [B,3,H,W] tensor/array -> [B,C,H,W] float64 numpy."""
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"{name} must be [C,H,W] or [B,C,H,W], got shape {a.shape}")
    return a


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, t = _batch(pred, "pred"), _batch(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    return p, t


def psnr(pred: ArrayLike, target: ArrayLike, data_range: float = 1.0, border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB, 10*log10(data_range^2 / MSE).

    Args:
        pred, target: [C,H,W] or [B,C,H,W], same shape, any colour space (no clipping is done here).
        data_range: the peak value (1.0 for images in [0,1]).
        border: pixels cropped from each side before comparing (demosaicing papers skip the border).
    Returns:
        PSNR in dB; for a batch, the mean of the per-image PSNRs (the usual way papers average a test set).
        inf for identical images.
    """
    p, t = _pair(pred, target)
    if border:
        if 2 * border >= min(p.shape[-2:]):
            raise ValueError(f"border {border} leaves nothing of a {p.shape[-2]}x{p.shape[-1]} image")
        p, t = p[..., border:-border, border:-border], t[..., border:-border, border:-border]
    mse = ((p - t) ** 2).reshape(len(p), -1).mean(1)
    with np.errstate(divide="ignore"):
        per_image = 10.0 * np.log10(data_range**2 / mse)
    return float(per_image.mean())


def psnr_linear_and_srgb(pred_linear: ArrayLike, target_linear: ArrayLike, border: int = 0) -> tuple[float, float]:
    """The MSR demosaicing protocol: PSNR of linear values, and PSNR after the linear -> sRGB curve.

    Args:
        pred_linear, target_linear: [3,H,W] or [B,3,H,W] linear RGB, nominally [0,1]; both are clipped
            to [0,1] first (a model's overshoot is not a displayable value), then encoded with
            `deepisp.color.linear_to_srgb` for the second number.
        border: pixels cropped from each side.
    Returns:
        (psnr_linear_db, psnr_srgb_db), batch-averaged like `psnr`.
    """
    p, t = (torch.from_numpy(a).clamp(0.0, 1.0) for a in _pair(pred_linear, target_linear))
    return psnr(p, t, border=border), psnr(linear_to_srgb(p), linear_to_srgb(t), border=border)


def _hwc(a: np.ndarray) -> np.ndarray:
    """[C,H,W] -> [H,W,C], the layout skimage expects."""
    return np.moveaxis(a, 0, -1)


def ssim(pred: ArrayLike, target: ArrayLike, data_range: float = 1.0) -> float:
    """Structural similarity, the mean over colour channels of skimage's per-channel SSIM.

    Uses Wang et al.'s reference settings (11x11 Gaussian window, sigma 1.5, population covariance), as
    skimage documents for matching the original implementation.

    Args:
        pred, target: [3,H,W] or [B,3,H,W] sRGB-encoded, in [0, data_range]; H,W >= 11.
    Returns:
        SSIM in [-1,1]; for a batch, the mean over images.
    """
    p, t = _pair(pred, target)
    scores = [
        structural_similarity(
            _hwc(a),
            _hwc(b),
            data_range=data_range,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for a, b in zip(p, t)
    ]
    return float(np.mean(scores))


def ciede2000(pred_srgb: ArrayLike, target_srgb: ArrayLike) -> tuple[float, float]:
    """CIEDE2000 colour difference between two sRGB images, per pixel, on skimage's Lab (D65).

    Args:
        pred_srgb, target_srgb: [3,H,W] or [B,3,H,W] sRGB-encoded; clipped to [0,1] since Lab of
            out-of-gamut values is not a colour anyone sees.
    Returns:
        (mean, 99th percentile) of deltaE00 over all pixels (of all images, for a batch).
    """
    p, t = _pair(pred_srgb, target_srgb)
    de = np.concatenate([deltaE_ciede2000(rgb2lab(_hwc(np.clip(a, 0.0, 1.0))), rgb2lab(_hwc(np.clip(b, 0.0, 1.0)))).ravel() for a, b in zip(p, t)])
    return float(de.mean()), float(np.percentile(de, 99))


def image_metrics(pred_srgb: ArrayLike, target_srgb: ArrayLike) -> dict[str, float]:
    """PSNR, SSIM and CIEDE2000 (mean, p99) of one sRGB image pair, [3,H,W] in [0,1]."""
    de_mean, de_p99 = ciede2000(pred_srgb, target_srgb)
    return {"psnr": psnr(pred_srgb, target_srgb), "ssim": ssim(pred_srgb, target_srgb), "ciede2000": de_mean, "ciede2000_p99": de_p99}
