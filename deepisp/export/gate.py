"""The accuracy gate: an exported variant against the float PyTorch model, on real raw frames, through the tile runner.

Both sides see the same canonical mosaics; the reference is the untiled PyTorch model (fp32), the
candidate the exported graphs run with the same tile plan a phone follows (`deepisp.runtime`), or as one
frame-sized window (`untiled=True`). Outputs are compared as they are written to an image: clamped to
[0,1], in sRGB (full models output sRGB; jdd outputs get the sRGB curve). Metrics: PSNR (dB), SSIM,
CIEDE2000 mean and 99th percentile, and the max abs difference before clamping. With targets (the
well-lit JPEGs), the same metrics against the target after the paper's histogram stretch, so a reader
sees whether a variant's error costs real quality.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from deepisp.atomic import atomic_path
from deepisp.color import histogram_stretch, linear_to_srgb
from deepisp.errors import DeepISPError
from deepisp.export.metadata import ExportMetadata
from deepisp.metrics import image_metrics
from deepisp.model.network import DeepISP
from deepisp.noise_level import at_noise_level
from deepisp.options import Mode
from deepisp.runtime import ExportedModel
from deepisp.tiling import run_full_frame

# Accuracy floors (dB PSNR against the float model, worst frame) below which an export is refused: a few dB
# under what the shipped models measure on the held-out synthetic S7 frames, so a real regression trips them
# and calibration noise does not; fp32's is a round-off bound. The measured values are not kept here:
# `python export/to_tflite.py --quant all` prints them, benchmarks/results/accuracy.md records the current ones
# (against float and the target), and tests/test_accuracy_gate.py exports the shipped default, which must pass them.
MIN_PSNR = {"fp32": 60.0, "fp16": 60.0, "dynamic": 50.0, "int8": 24.0, "int8-mixed": 33.0, "int16x8": 50.0}


def displayed(x: torch.Tensor, mode: str) -> torch.Tensor:
    """A model output [3,H,W] as it is written to an image: sRGB in [0,1]."""
    return (linear_to_srgb(x.clamp(0, 1)) if mode == Mode.JDD else x).clamp(0, 1)


def reference_model(model: DeepISP, exports: list[ExportMetadata]) -> DeepISP:
    """The float model `exports` were made from: a noise-aware model folded at the noise level baked into
    them (all must share one), any other model as it is."""
    if not model.cfg.noise_input:
        return model
    levels = {meta.noise_profile for meta in exports}
    if len(levels) != 1 or None in levels:
        raise DeepISPError(f"the exports were baked at noise levels {sorted(levels, key=str)}; compare a noise-aware model against exports of one level")
    return at_noise_level(model, levels.pop())


def reference_outputs(model: DeepISP, frames: list[tuple[str, np.ndarray]]) -> list[torch.Tensor]:
    """The float model's full-frame outputs [3,H,W] for each (name, mosaic [H,W]) frame."""
    return [run_full_frame(model, torch.from_numpy(m)) for _, m in frames]


def compare(
    exported: ExportedModel,
    frames: list[tuple[str, np.ndarray]],
    references: list[torch.Tensor],
    targets: list[torch.Tensor] | None = None,
    untiled: bool = False,
    error_map: Path | None = None,
) -> dict:
    """Per-frame and summary metrics of `exported` against the float references (and targets).

    Args:
        frames: (name, mosaic [H,W] float32 canonical RGGB); references: float outputs [3,H,W].
        targets: optional well-lit targets [3,H,W] sRGB in [0,1], same frames.
        untiled: run each frame as one window instead of the exported tile plan.
        error_map: write the first frame's error heat map here (PNG).
    Returns:
        {"psnr", "psnr_min", "ssim", "ciede2000", "ciede2000_p99", "max_abs", "n", "per_image": [...],
         and with targets "vs_target": {metric: mean}}.
    """
    mode = exported.cfg.mode
    per_image = []
    for k, ((name, mosaic), ref) in enumerate(zip(frames, references)):
        m = torch.from_numpy(mosaic)
        out = exported.run(m) if not untiled else exported.run_window(m)
        row = {"name": name, **image_metrics(displayed(out, mode), displayed(ref, mode)), "max_abs": float((out - ref).abs().max())}
        if targets is not None:
            row["vs_target"] = image_metrics(histogram_stretch(displayed(out, mode)), histogram_stretch(targets[k]))
        per_image.append(row)
        if k == 0 and error_map is not None:
            write_error_map(displayed(out, mode), displayed(ref, mode), error_map)

    def mean(key: str, rows: list[dict]) -> float:
        return float(np.mean([r[key] for r in rows]))

    summary = {key: mean(key, per_image) for key in ("psnr", "ssim", "ciede2000", "ciede2000_p99")}
    summary.update(psnr_min=float(min(r["psnr"] for r in per_image)), max_abs=float(max(r["max_abs"] for r in per_image)), n=len(per_image))
    if targets is not None:
        summary["vs_target"] = {key: mean(key, [r["vs_target"] for r in per_image]) for key in per_image[0]["vs_target"]}
    summary["per_image"] = per_image
    return summary


def error_heat_map(out: torch.Tensor, ref: torch.Tensor, full_scale: float = 0.05) -> np.ndarray:
    """|out - ref| (max over channels) of [3,H,W] images as an [H,W,3] magma heat map; white = `full_scale`."""
    err = (out - ref).abs().amax(0).numpy()
    return matplotlib.colormaps["magma"](np.clip(err / full_scale, 0, 1))[..., :3]


def write_error_map(out: torch.Tensor, ref: torch.Tensor, path: Path) -> None:
    """The reference [3,H,W] sRGB beside the heat map of the error, as one PNG."""
    panel = np.concatenate([ref.permute(1, 2, 0).numpy(), error_heat_map(out, ref)], axis=1)
    with atomic_path(path) as tmp:
        Image.fromarray(np.round(panel * 255).astype(np.uint8)).save(tmp)
