"""benchmarks/quality.py's JDD protocol (JDD_PROTOCOL): the ground truth, the noisy mosaics every method is
given, the metrics, and the run of every method (benchmarks.quality_methods) on every photo and noise level.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from benchmarks.common import timed
from benchmarks.quality_methods import U16, Method, chw
from deepisp.cfa import mosaic
from deepisp.color import linear_to_srgb, srgb_to_linear
from deepisp.metrics import psnr, ssim

SIGMAS = (0.0, 2.0, 5.0, 10.0)
BORDER = 8  # pixels cropped from every side before any JDD metric: border handling is not what is compared
NOISE_SEED = 0

JDD_PROTOCOL = f"""\
Ground truth: each photo (Kodak24, 500x500 sRGB PNG) decoded with the inverse sRGB curve
(deepisp.color.srgb_to_linear) to linear RGB in [0,1], taken as linear camera RGB (no colour matrix, no
white balance). Input: that image sampled on the RGGB grid (deepisp.cfa.mosaic), plus white Gaussian
noise of standard deviation sigma/255 added in linear space (one N(0,1) field per photo, seeded by
({NOISE_SEED}, photo index) and scaled by each sigma), clipped to [0,1] and quantised to 16 bits
(round(x*65535)); every method gets that same uint16 mosaic, and no noise level except the models marked
noise-aware, which are also given sigma (read noise only, no shot noise: what the mosaic has). Outputs are clipped to
[0,1] and {BORDER} pixels are cropped from every side before any metric. PSNR linear: on the linear values;
PSNR sRGB: after deepisp.color.linear_to_srgb (the MSR protocol, deepisp.metrics.psnr_linear_and_srgb);
SSIM: deepisp.metrics.ssim (11x11 Gaussian window, sigma 1.5, mean over R,G,B) on the sRGB-encoded images.
Table values are means over photos of per-photo values. s/image: wall time of the method alone on one
500x500 mosaic on this machine (LibRaw rows include writing and decoding the DNG)."""


def load_linear_photo(path: Path) -> np.ndarray:
    """An sRGB photo -> [3,H,W] float64 linear RGB in [0,1] (the JDD ground truth)."""
    srgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    return srgb_to_linear(torch.from_numpy(chw(srgb))).numpy()


class Reference(NamedTuple):
    """A JDD ground truth cut to the scored area: [3,H-2B,W-2B] float64 linear and sRGB-encoded, in [0,1]."""

    linear: torch.Tensor
    srgb: torch.Tensor


def reference(target: np.ndarray) -> Reference:
    """[3,H,W] linear ground truth -> its scored area, linear and encoded (once per photo)."""
    linear = torch.from_numpy(np.clip(target[:, BORDER:-BORDER, BORDER:-BORDER], 0.0, 1.0))
    return Reference(linear, linear_to_srgb(linear))


def jdd_metrics(pred: np.ndarray, ref: Reference) -> dict[str, float]:
    """pred [3,H,W] linear RGB -> PSNR linear, PSNR sRGB and SSIM (sRGB) against `ref`.

    The numbers of deepisp.metrics.psnr_linear_and_srgb(pred, target, border=BORDER) (clip, then encode;
    tested equal), with the reference encoded once per photo instead of once per method.
    """
    linear = torch.from_numpy(np.clip(pred[:, BORDER:-BORDER, BORDER:-BORDER], 0.0, 1.0))
    srgb = linear_to_srgb(linear)
    return {"psnr_linear": psnr(linear, ref.linear), "psnr_srgb": psnr(srgb, ref.srgb), "ssim": ssim(srgb, ref.srgb)}


def noisy_mosaics(target: np.ndarray, sigmas: Sequence[float], seed: Sequence[int]) -> dict[float, np.ndarray]:
    """[3,H,W] linear -> {sigma: [H,W] uint16 RGGB mosaic}: noise sigma/255 in linear, clipped, 16 bit."""
    clean = mosaic(torch.from_numpy(target)[None])[0, 0].numpy()
    z = np.random.default_rng(seed).standard_normal(clean.shape)
    return {s: np.round(np.clip(clean + s / 255.0 * z, 0.0, 1.0) * U16).astype(np.uint16) for s in sigmas}


def run_jdd(
    photos: Sequence[Path], sigmas: Sequence[float], methods: Sequence[Method], keep: tuple[str, float] | None = None
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every method on every photo and sigma; one row per (photo, sigma, method). Also the outputs [3,H,W]
    (linear) of every method, and the truth ("truth"), for `keep` = (photo stem, sigma); empty if not run."""
    # One untimed call each first, so one-off setup (torch's first convolution, library caches) is not
    # billed to the first photo.
    warm_up = np.full((64, 64), U16 // 2, dtype=np.uint16)
    for method in methods:
        method.run(warm_up, *([0.0] if method.noise_aware else []))
    rows, kept = [], {}
    for index, path in enumerate(tqdm(photos, desc="jdd", unit="photo")):
        target = load_linear_photo(path)
        ref = reference(target)
        for sigma, cfa in noisy_mosaics(target, sigmas, (NOISE_SEED, index)).items():
            for method in methods:
                out, seconds = timed(method.run, cfa, *([sigma / 255.0] if method.noise_aware else []))
                rows.append({"image": path.stem, "sigma": sigma, "method": method.name, **jdd_metrics(out, ref), "seconds": seconds})
                if keep == (path.stem, sigma):
                    kept.update({"truth": target, method.name: out})
    return rows, kept
