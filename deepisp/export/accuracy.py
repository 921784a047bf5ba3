"""An exported variant against the float PyTorch model, on real raw frames, through the tile runner.

Both sides see the same canonical mosaics; the reference is the untiled PyTorch model (fp32), the
candidate the exported graphs run with the same tile plan a phone follows (`deepisp.runtime`). Outputs
are compared in the model's own output space (sRGB-encoded for full models, linear for jdd), clamped to
[0,1] as they are when written to an image: PSNR (dB), SSIM, and the max abs difference before clamping.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from deepisp.atomic import atomic_path
from deepisp.metrics import psnr, ssim
from deepisp.model import DeepISP
from deepisp.runtime import ExportedModel
from deepisp.tiling import run_full_frame

# Accuracy floors (dB PSNR against the float model) below which an export is refused. Set from the
# measurements in the export closing note (shipped phone-full model, 4 held-out synthetic S7 frames):
# each floor sits a few dB under what the variant measured, so a real regression trips it, noise does not.
# fp32 is the round-off bound.
MIN_PSNR = {"fp32": 60.0, "fp16": 60.0, "dynamic": 50.0, "int8": 25.0, "int8-mixed": 36.0, "int16x8": 50.0}


def reference_outputs(model: DeepISP, frames: list[tuple[str, np.ndarray]]) -> list[torch.Tensor]:
    """The float model's full-frame outputs [3,H,W] for each (name, mosaic [H,W]) frame."""
    return [run_full_frame(model, torch.from_numpy(m)) for _, m in frames]


def compare(exported: ExportedModel, frames: list[tuple[str, np.ndarray]], references: list[torch.Tensor], error_map: Path | None = None) -> dict:
    """Per-frame and mean PSNR / SSIM / max abs error of `exported` against the references.

    Writes a heat map of the first frame's error to `error_map` (PNG) when given.
    """
    per_image = []
    for k, ((name, mosaic), ref) in enumerate(zip(frames, references)):
        out = exported.run(torch.from_numpy(mosaic))
        a, b = out.clamp(0, 1), ref.clamp(0, 1)
        per_image.append({"name": name, "psnr": psnr(a, b), "ssim": ssim(a, b), "max_abs": float((out - ref).abs().max())})
        if k == 0 and error_map is not None:
            write_error_map(out, ref, error_map)
    return {
        "psnr": float(np.mean([r["psnr"] for r in per_image])),
        "psnr_min": float(np.min([r["psnr"] for r in per_image])),
        "ssim": float(np.mean([r["ssim"] for r in per_image])),
        "max_abs": float(np.max([r["max_abs"] for r in per_image])),
        "n": len(per_image),
        "per_image": per_image,
    }


def write_error_map(out: torch.Tensor, ref: torch.Tensor, path: Path, full_scale: float = 0.05) -> None:
    """|out - ref| (max over channels) as a magma heat map beside the reference; white = `full_scale` or more."""
    err = (out.clamp(0, 1) - ref.clamp(0, 1)).abs().amax(0).numpy()
    heat = matplotlib.colormaps["magma"](np.clip(err / full_scale, 0, 1))[..., :3]
    panel = np.concatenate([ref.clamp(0, 1).permute(1, 2, 0).numpy(), heat], axis=1)
    with atomic_path(path) as tmp:
        Image.fromarray(np.round(panel * 255).astype(np.uint8)).save(tmp)
