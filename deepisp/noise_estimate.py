"""The noise of a raw from the raw itself, for files without a DNG NoiseProfile (every CR2, NEF, ARW, ...).

A sensor's noise variance at normalised level x is S*x + O (shot and read noise; the DNG NoiseProfile's model,
what noise-aware JDD models are told). `estimate_noise_profile` fits it from the mosaic alone, in the manner
of the weak-texture estimators (Liu, Tanaka, Okutomi 2012; Foi et al. 2008 for the level-dependent fit):
each same-colour plane is cut into 2x2 blocks, each giving a local level (its mean) and one noise sample, its
Haar diagonal detail (a - b - c + d) / 2 (blind to flat and linearly varying signal, with the noise's own
variance); patches of PATCH x PATCH such samples give a local variance and level. Texture only adds
variance, so in each group of patches of similar level the flattest ones tell the noise: the group's
FLAT_QUANTILE-quantile of patch variances, divided by that quantile of a chi-square with PATCH^2 degrees of
freedom over PATCH^2 (what the quantile of pure noise would be). S, O are fitted by least squares over the
groups. Patches near 0 or full scale are left out (clipping cuts their noise).

Shapes: mosaic [H,W] float in [0,1] (canonical RGGB or any 2x2 CFA; the four sites are separate planes).
"""

from __future__ import annotations

import numpy as np

# Noise samples per patch side, level groups (quantiles of patch levels), and the fewest patches a group needs.
PATCH = 4
LEVEL_GROUPS = 12
MIN_GROUP_PATCHES = 32
FLAT_QUANTILE = 0.1
_Z_FLAT = -1.2816  # the standard normal's FLAT_QUANTILE quantile
# Patches whose level is within this of 0 or 1 are left out (noise cut by clipping).
CLIP_MARGIN = 0.02


def _patches(mosaic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(level, variance) of every PATCH x PATCH patch of Haar diagonal details of every same-colour plane."""
    levels, variances = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            plane = mosaic[dy::2, dx::2].astype(np.float64)
            k = 2 * PATCH
            h, w = plane.shape[0] // k * k, plane.shape[1] // k * k
            q = plane[:h, :w].reshape(h // 2, 2, w // 2, 2)
            a, b, c, d = q[:, 0, :, 0], q[:, 0, :, 1], q[:, 1, :, 0], q[:, 1, :, 1]
            mean, detail = (a + b + c + d) / 4, (a - b - c + d) / 2
            shape = (h // k, PATCH, w // k, PATCH)
            levels.append(mean.reshape(shape).mean(axis=(1, 3)).ravel())
            variances.append((detail.reshape(shape) ** 2).mean(axis=(1, 3)).ravel())
    return np.concatenate(levels), np.concatenate(variances)


def estimate_noise_profile(mosaic: np.ndarray) -> tuple[float, float] | None:
    """(S, O) with noise variance S*x + O at normalised level x, both >= 0, fitted from the mosaic; None when
    the frame has too few unclipped patches to tell (under two level groups of MIN_GROUP_PATCHES)."""
    level, variance = _patches(mosaic)
    keep = (level > CLIP_MARGIN) & (level < 1 - CLIP_MARGIN)
    level, variance = level[keep], variance[keep]
    if level.size < 2 * MIN_GROUP_PATCHES:
        return None
    n = PATCH * PATCH
    # chi-square quantile over its degrees of freedom, Wilson-Hilferty (within 0.1% of the exact 9.312/16 here)
    pure_noise_quantile = (1 - 2 / (9 * n) + _Z_FLAT * np.sqrt(2 / (9 * n))) ** 3
    edges = np.unique(np.quantile(level, np.linspace(0, 1, LEVEL_GROUPS + 1)))
    group = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, len(edges) - 2)
    xs, vs = [], []
    for g in range(len(edges) - 1):
        members = group == g
        if members.sum() < MIN_GROUP_PATCHES:
            continue
        xs.append(float(np.median(level[members])))
        vs.append(float(np.quantile(variance[members], FLAT_QUANTILE)) / pure_noise_quantile)
    if len(xs) < 2:
        return None
    x, v = np.array(xs), np.array(vs)
    (s, o), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), v, rcond=None)
    if s < 0:  # no level dependence measurable: all read noise
        s, o = 0.0, float(v.mean())
    if o < 0:  # read noise below what the fit resolves
        s, o = float(np.sum(x * v) / np.sum(x * x)), 0.0
    return float(s), float(o)
