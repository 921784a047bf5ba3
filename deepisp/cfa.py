"""Bayer colour filter arrays: the patterns, sampling an image on the grid, phase detection from data, and the
mirroring that brings any pattern to canonical RGGB.

A pattern names the colours of one 2x2 quad in raster order, sites (0,0), (0,1), (1,0), (1,1): "GRBG" is
green at (0,0), red at (0,1), blue at (1,0), green at (1,1). Channels are numbered R=0, G=1, B=2.

Convention used everywhere in deepisp: a mosaic is *canonical RGGB*, i.e. pixel (0,0) is red, (0,1) and
(1,0) green, (1,1) blue. Every sensor's pattern is brought to this phase by mirroring (`canonicalize`),
which unlike cropping a row or column keeps every pixel and is its own inverse.

Nothing here rescales values: sampling and mirroring only move them, so the output keeps the input's dtype
and range (linear [0,1] floats in the model, DN or 16-bit integers on the way to and from files).
"""

from __future__ import annotations

import numpy as np
import torch

from deepisp.errors import DeepISPError

CFA_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")
_CHANNEL = {"R": 0, "G": 1, "B": 2}
_SITES = ((0, 0), (0, 1), (1, 0), (1, 1))  # the order of a pattern string's letters
# A detected phase must beat the runner-up by this factor (1-channel mosaics) to be trusted.
_PHASE_MARGIN = 1.1
# 3-channel mosaics: largest share of the signal allowed outside the detected pattern's channels.
_OFF_PATTERN_TOLERANCE = 1e-3


def check_pattern(pattern: str) -> None:
    """Raise ValueError unless `pattern` is one of CFA_PATTERNS."""
    if pattern not in CFA_PATTERNS:
        raise ValueError(f"unknown CFA pattern {pattern!r}; expected one of {CFA_PATTERNS}")


# --------------------------------------------------------------------------------------------------
# Sampling


def rggb_masks(h: int, w: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Sampling masks of an RGGB mosaic: [1,3,H,W] (R,G,B) of 0/1, 1 where the sensor measured that colour.

    Any H, W >= 1 (odd sizes end mid-quad). Built on `device` directly, since the demosaic calls it per batch.
    """
    yy = torch.arange(h, device=device).view(h, 1) % 2
    xx = torch.arange(w, device=device).view(1, w) % 2
    r = (yy == 0) & (xx == 0)
    b = (yy == 1) & (xx == 1)
    g = ~(r | b)
    return torch.stack([r, g, b]).unsqueeze(0).to(dtype)


def mosaic(rgb: torch.Tensor) -> torch.Tensor:
    """Sample an RGB image on the RGGB grid (differentiable, batched, any device).

    Args:
        rgb: [B,3,H,W] float, linear (any range), channel-first R,G,B; H, W >= 1.
    Returns:
        [B,1,H,W] same dtype: each pixel keeps only the channel its RGGB site measures.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"mosaic expects [B,3,H,W], got {tuple(rgb.shape)}")
    masks = rggb_masks(rgb.shape[2], rgb.shape[3], device=rgb.device, dtype=rgb.dtype)
    return (rgb * masks).sum(1, keepdim=True)


def sample(img: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a channel-last image on any pattern's grid: the numpy counterpart of `mosaic`.

    Args:
        img: [H,W,3] R,G,B, any dtype and range; H, W >= 1 (odd sizes end mid-quad).
        pattern: one of CFA_PATTERNS, the phase at pixel (0,0).
    Returns:
        [H,W] of img's dtype: each pixel keeps only the channel its site of `pattern` measures.
    """
    check_pattern(pattern)
    out = np.empty(img.shape[:2], dtype=img.dtype)
    for (dy, dx), color in zip(_SITES, pattern):
        out[dy::2, dx::2] = img[dy::2, dx::2, _CHANNEL[color]]
    return out


def spread(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """A mosaic in 3-channel form (how the MSR dataset stores its inputs): each value in its site's channel.

    Args:
        mosaic: [H,W] in `pattern`, any dtype and range; H, W >= 1.
        pattern: one of CFA_PATTERNS.
    Returns:
        [H,W,3] R,G,B of mosaic's dtype, zero in the two channels a pixel does not measure;
        `sample(spread(m, p), p)` equals `m`.
    """
    check_pattern(pattern)
    out = np.zeros(mosaic.shape + (3,), dtype=mosaic.dtype)
    for (dy, dx), color in zip(_SITES, pattern):
        out[dy::2, dx::2, _CHANNEL[color]] = mosaic[dy::2, dx::2]
    return out


# --------------------------------------------------------------------------------------------------
# Phase


def detect_cfa_phase(mosaic: np.ndarray, target: np.ndarray | None = None) -> str:
    """Which of CFA_PATTERNS a stored mosaic has, read from the data (for datasets that do not record it).

    Args:
        mosaic: any scale: [H,W,3] with only the measured channel of each pixel non-zero (the phase is where
            each channel is non-zero), or [H,W] (then `target` is needed).
        target: [H,W,3] R,G,B ground truth in the same frame and scale; for a 1-channel mosaic the phase is
            the pattern whose channels match the mosaic best (least squared error over the four sites).
    Returns:
        the pattern string.
    Raises:
        DeepISPError when the data does not decide (a blank or grey image) or is not a mosaic.
    """
    m = np.asarray(mosaic, dtype=np.float64)
    if m.ndim == 3 and m.shape[2] == 3:
        # energy[s, c]: signal of channel c at 2x2 site s; the right pattern captures all of it.
        energy = np.array([[m[sy::2, sx::2, c].sum() for c in range(3)] for sy, sx in _SITES])
        captured = np.array([sum(energy[s, _CHANNEL[ch]] for s, ch in enumerate(p)) for p in CFA_PATTERNS])
        total = energy.sum()
        best = int(captured.argmax())
        if total <= 0:
            raise DeepISPError("cannot detect the CFA phase of an all-zero mosaic")
        if total - captured[best] > _OFF_PATTERN_TOLERANCE * total:
            raise DeepISPError("3-channel input is not a Bayer mosaic: several channels are non-zero at the same pixels")
        return CFA_PATTERNS[best]
    if m.ndim != 2:
        raise DeepISPError(f"a mosaic is [H,W] or [H,W,3], got shape {m.shape}")
    if target is None:
        raise DeepISPError("detecting the CFA phase of a 1-channel mosaic needs the ground truth")
    t = np.asarray(target, dtype=np.float64)
    if t.shape != m.shape + (3,):
        raise DeepISPError(f"ground truth shape {t.shape} does not match mosaic shape {m.shape} (+3 channels)")
    # err[s, c]: mean squared difference between the mosaic and channel c at site s.
    err = np.array([[((m[sy::2, sx::2] - t[sy::2, sx::2, c]) ** 2).mean() for c in range(3)] for sy, sx in _SITES])
    score = np.array([sum(err[s, _CHANNEL[ch]] for s, ch in enumerate(p)) for p in CFA_PATTERNS])
    order = np.argsort(score)
    if not score[order[1]] > _PHASE_MARGIN * score[order[0]]:
        raise DeepISPError(
            f"cannot tell the CFA phase: {CFA_PATTERNS[order[0]]} and {CFA_PATTERNS[order[1]]} fit the ground truth about equally well (grey or blank image)"
        )
    return CFA_PATTERNS[order[0]]


# --------------------------------------------------------------------------------------------------
# Canonical frame


def mirror(img: np.ndarray, flip_h: bool, flip_v: bool, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """Mirror an image left-right (`flip_h`) and/or top-bottom (`flip_v`), e.g. with `canonicalize`'s flags.

    Its own inverse, so it maps sensor frame -> canonical frame and back.

    Args:
        img: any array; `axes` are its (row, column) axes, e.g. (0, 1) for [H,W,C].
    Returns:
        a contiguous array of the same shape and dtype.
    """
    rows, cols = axes
    if flip_v:
        img = np.flip(img, rows)
    if flip_h:
        img = np.flip(img, cols)
    return np.ascontiguousarray(img)


def canonicalize(mosaic: np.ndarray, pattern: str) -> tuple[np.ndarray, bool, bool]:
    """Mirror a sensor-frame mosaic (or an image registered with it) so its CFA is RGGB.

    GRBG is mirrored left-right, GBRG top-bottom, BGGR both. A flipped axis must have even length
    (mirroring an odd-length axis does not move the phase).

    Args:
        mosaic: [...,H,W] in the sensor's `pattern` (channel-first images work too: [3,H,W]).
        pattern: one of CFA_PATTERNS.
    Returns:
        (mosaic [...,H,W] contiguous with RGGB phase, flip_h, flip_v); `mirror(out, flip_h, flip_v)` undoes it.
    Raises:
        ValueError: unknown pattern, or an odd flipped axis.
    """
    check_pattern(pattern)
    flip_h = pattern in ("GRBG", "BGGR")
    flip_v = pattern in ("GBRG", "BGGR")
    h, w = mosaic.shape[-2:]
    if (flip_h and w % 2) or (flip_v and h % 2):
        raise ValueError(f"canonicalize: a {pattern} mosaic of {h}x{w} has an odd flipped axis; crop it to even")
    return mirror(mosaic, flip_h, flip_v), flip_h, flip_v
