"""benchmarks/quality.py's full-ISP protocol (FULL_PROTOCOL): no ISP, rawpy's default rendering and each full
model on the S7-layout low-light pairs, scored after the paper's histogram stretch. benchmarks/robustness.py
uses the same two baselines (NO_ISP, RAWPY).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import rawpy
import torch
from tqdm import tqdm

from benchmarks.common import timed
from deepisp.cfa import canonicalize
from deepisp.color import histogram_stretch, linear_to_srgb
from deepisp.data.s7 import PAIRS, S7Dataset, register
from deepisp.demosaic import bilinear_demosaic
from deepisp.metrics import image_metrics
from deepisp.model import DeepISP
from deepisp.raw import read_raw
from deepisp.tiling import run_tiled

NO_ISP, RAWPY = "bilinear + sRGB curve (no ISP)", "rawpy default (AHD, camera WB)"  # the baselines' row names
RAWPY_FULL_SCALE = 65535  # of rawpy's postprocess(output_bps=16)

FULL_PROTOCOL = """\
Data: S7-layout low-light pairs of the same photos from `deepisp make-synthetic --seed 1` (short_exposure.dng:
1/4 of the auto exposure, shot + read noise, 10 bit, the Galaxy S7 colour matrix, a sampled white
balance; target medium_exposure.jpg, the photo itself), all in the raw's canonical frame. No ISP: bilinear
demosaic + sRGB curve, the `deepisp eval` baseline. rawpy: LibRaw's default postprocess (AHD, sRGB through
the DNG's colour matrix, BT.709 gamma, auto brightness) with use_camera_wb=True (the DNG's AsShotNeutral),
16-bit output, brought to the canonical frame. Model: exact tiled inference (deepisp.tiling.run_tiled),
clamped to [0,1]; a model whose white_balance is "as_shot" gets the mosaic balanced with the DNG's
AsShotNeutral (deepisp.white_balance), the same information rawpy's use_camera_wb reads. Every output and the target get the paper's histogram stretch
(deepisp.color.histogram_stretch: luma stretched with 5% of pixels saturated at each end, chroma kept),
then PSNR, SSIM and CIEDE2000 (mean and 99th percentile over the image's pixels) on the whole frame, as
`deepisp eval` does. rawpy gets exactly the colour matrix and white balance the generator used, a best case
that real S7 files would not give it."""


def no_isp(mosaic: np.ndarray) -> torch.Tensor:
    """The `deepisp eval` baseline: [H,W] RGGB mosaic in [0,1] -> bilinear demosaic + sRGB curve, [3,H,W]."""
    return linear_to_srgb(bilinear_demosaic(torch.from_numpy(mosaic)[None, None])[0].clamp(0, 1))


def rawpy_default(raw_path: Path, target: torch.Tensor) -> torch.Tensor:
    """rawpy's default postprocess with the camera white balance, in the frame of the dataset's target.

    Rendered with user_flip=0 (sensor frame, not display) and then cut and flipped exactly as
    deepisp.raw.read_raw and deepisp.data.s7 cut and flip the mosaic: even size, flips to RGGB, the
    dataset's centre crop. (Going through the display orientation and `RawMosaic.from_display` would be
    off by a pixel for an odd-sized frame, whose odd row/column read_raw drops before flipping.)

    Args:
        raw_path: the scene's short-exposure raw.
        target: [3,H,W] the dataset's target for that scene, for its size.
    Returns:
        [3,H,W] float32 in [0,1], sRGB primaries, BT.709-gamma-encoded (LibRaw's default curve).
    """
    raw = read_raw(raw_path)
    with rawpy.imread(str(raw_path)) as r:
        rgb = r.postprocess(use_camera_wb=True, output_bps=16, user_flip=0)
    h, w = raw.mosaic.shape
    canonical, _, _ = canonicalize(np.moveaxis(rgb[:h, :w], -1, 0), raw.pattern)
    target_hwc = target.permute(1, 2, 0).numpy()
    cropped = [register(c, target_hwc, raw_path.name)[0] for c in canonical]
    return torch.from_numpy(np.stack(cropped).astype(np.float32) / RAWPY_FULL_SCALE)


@torch.no_grad()
def run_full(root: Path, models: dict[str, DeepISP], tile: int, limit: int | None) -> list[dict]:
    """No ISP, rawpy and each model on each scene of the S7-layout `root`; one row per (scene, method),
    metrics after the stretch. "as_shot" models read the scene balanced with its as-shot white balance."""
    dataset = S7Dataset(root, split="all")
    inputs = {name: S7Dataset(root, split="all", model_config=model.cfg) for name, model in models.items()}
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for model in models.values():  # untimed warm-up, as in run_jdd
        run_tiled(model, torch.from_numpy(dataset.frame(0)[0]), tile=tile)
    rows = []
    for i in tqdm(range(n), desc="full ISP", unit="scene"):
        cfa, target = dataset.frame(i)
        raw_path = dataset.scenes[i].files[(PAIRS[dataset.pair][0], "raw")]  # the pair's raw
        renders: dict[str, Callable[[], torch.Tensor]] = {
            # Called within this iteration only, so the loop variables they read are the current ones.
            NO_ISP: lambda: no_isp(cfa),  # noqa: B023
            RAWPY: lambda: rawpy_default(raw_path, target),  # noqa: B023
        }
        for name, model in models.items():
            model_cfa = inputs[name].frame(i)[0]
            renders[name] = lambda m=model, c=model_cfa: run_tiled(m, torch.from_numpy(c), tile=tile).clamp(0, 1)
        stretched_target = histogram_stretch(target)
        for name, render in renders.items():
            out, seconds = timed(render)
            metrics = image_metrics(histogram_stretch(out), stretched_target)
            rows.append({"scene": dataset.name(i), "method": name, **metrics, "seconds": seconds})
    return rows
