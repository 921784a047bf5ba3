"""Evaluation (`deepisp eval`): the paper's two protocols, each with a classical baseline row.

    full: S7-layout split, every frame through the exact tiled model; output and well-lit target both get
          the paper's histogram stretch (IV-C), then PSNR, SSIM and CIEDE2000 (mean, p99). Baseline:
          the bilinear input with the sRGB curve and the same stretch (what "no ISP" looks like).
    jdd:  MSR-layout split, PSNR on linear values and after linear->sRGB (the MSR protocol). Baseline:
          bilinear demosaicing.

Writes <out>/metrics.json and side-by-side PNGs (input | output | target) for the first --figures images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from deepisp.atomic import atomic_path, make_folder
from deepisp.color import histogram_stretch, linear_to_srgb
from deepisp.demosaic import bilinear_demosaic
from deepisp.metrics import image_metrics, psnr_linear_and_srgb
from deepisp.model.network import DeepISP
from deepisp.options import Mode
from deepisp.tiling import run_tiled


def _side_by_side(panels: list[torch.Tensor], path: Path, max_width: int = 1536) -> None:
    """[3,H,W] sRGB panels in [0,1] -> one PNG, downscaled to max_width, written atomically."""
    strip = torch.cat([p.clamp(0, 1) for p in panels], dim=2).permute(1, 2, 0).numpy()
    im = Image.fromarray(np.round(strip * 255).astype(np.uint8))
    if im.width > max_width:
        im = im.resize((max_width, round(im.height * max_width / im.width)), Image.LANCZOS)
    with atomic_path(path) as tmp:
        im.save(tmp)


@torch.no_grad()
def evaluate(model: DeepISP, dataset, out_dir: Path, tile: int | None = None, figures: int = 4, limit: int | None = None, progress: bool = True) -> dict:
    """Evaluate on every image of `dataset` (S7Dataset for full models, MSRDataset for jdd).

    Uses the dataset's full frames: `dataset.frame(i)` -> (mosaic [H,W] canonical RGGB, target [3,H,W]).
    Returns and writes {"mode", "n", "model": {...means}, "baseline": {...means}, "per_image": [...]}.
    """
    make_folder(out_dir)
    mode = model.cfg.mode
    n = len(dataset) if limit is None else min(limit, len(dataset))
    per_image = []
    for i in tqdm(range(n), desc=f"eval {mode}", disable=not progress, delay=1.0):
        mosaic, target = dataset.frame(i)
        pred = run_tiled(model, torch.from_numpy(mosaic), tile=tile)
        bilinear = bilinear_demosaic(torch.from_numpy(mosaic)[None, None])[0]
        if mode == Mode.FULL:
            out = histogram_stretch(pred.clamp(0, 1))
            tgt = histogram_stretch(target)
            base = histogram_stretch(linear_to_srgb(bilinear.clamp(0, 1)))
            row = {"model": image_metrics(out, tgt), "baseline": image_metrics(base, tgt)}
            panels = [base, out, tgt]
        else:
            m_lin, m_srgb = psnr_linear_and_srgb(pred, target)
            b_lin, b_srgb = psnr_linear_and_srgb(bilinear, target)
            row = {"model": {"psnr_linear": m_lin, "psnr_srgb": m_srgb}, "baseline": {"psnr_linear": b_lin, "psnr_srgb": b_srgb}}
            panels = [linear_to_srgb(x.clamp(0, 1)) for x in (bilinear, pred, target)]
        row["name"] = dataset.name(i)
        per_image.append(row)
        if i < figures:
            _side_by_side(panels, out_dir / f"{row['name']}_input_output_target.png")
    summary = {
        "mode": mode,
        "n": n,
        **{k: {m: float(np.mean([r[k][m] for r in per_image])) for m in per_image[0][k]} for k in ("model", "baseline")},
        "per_image": per_image,
    }
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
