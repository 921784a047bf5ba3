"""Accuracy of exported variants against the float model and the ground truth, and the CI regression gate.

    python benchmarks/accuracy.py --exported out/export [--data S7_ROOT] [--split test] [--check benchmarks/baselines.json]

Every variant in --exported (its deepisp_*.json sidecars: ONNX and TFLite) runs the frames of an S7-layout
split through the same tile runner a phone uses (`deepisp.runtime`), tiled by the exported plan and
untiled (one frame-sized window), and is compared with the float PyTorch model (`--model`, default the
shipped one): PSNR, SSIM, CIEDE2000 mean and 99th percentile, max abs error (deepisp/export/gate.py
states the protocol). Every variant and the float model are also scored against the well-lit target
after the paper's histogram stretch, so the table shows what quantization costs in real quality.

Writes benchmarks/results/accuracy.json, accuracy.md and accuracy.jpg (the same crop from the float
model, each variant and the target, with each variant's error heat map beneath). With --check, compares
against the committed floors and exits 1 naming each variant and metric that regressed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from benchmarks.common import add_out, fail, parser, save_jpeg, write_result
from deepisp.checkpoint import DEFAULT_CHECKPOINT, load_model
from deepisp.color import histogram_stretch
from deepisp.data.s7 import S7Dataset
from deepisp.errors import DeepISPError
from deepisp.export.backends import BACKENDS
from deepisp.export.gate import compare, displayed, error_heat_map, reference_model, reference_outputs
from deepisp.export.metadata import ExportMetadata
from deepisp.export.pipeline import delegate_verdict
from deepisp.metrics import image_metrics
from deepisp.model import ModelConfig
from deepisp.runtime import ExportedModel

# Gate metrics: name -> (key in a variant's results, "min" if higher is better else "max").
GATED = {"psnr_vs_float": ("psnr", "min"), "ssim_vs_float": ("ssim", "min"), "ciede2000_vs_float": ("ciede2000", "max"), "max_abs_vs_float": ("max_abs", "max")}


def load_frames(
    root: Path | None, split: str, limit: int | None, model_config: ModelConfig | None = None
) -> tuple[list[tuple[str, np.ndarray]], list[torch.Tensor]]:
    """(name, mosaic) and target [3,H,W] sRGB of the split's frames (default set: the project's synthetic S7);
    `model_config`: mosaics as that model's input (deepisp.conditioning.model_input), else the raw mosaics."""
    from deepisp.export.calibration import default_s7_root

    dataset = S7Dataset(root or default_s7_root(), split=split, model_config=model_config)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    frames, targets = [], []
    for i in range(n):
        mosaic, target = dataset.frame(i)
        frames.append((dataset.name(i), mosaic))
        targets.append(target)
    return frames, targets


def check(results: dict, baselines: dict) -> list[str]:
    """Regressions of `results` against the committed floors/ceilings: one message per variant and metric."""
    problems = []
    for variant, limits in baselines["variants"].items():
        got = results["variants"].get(variant)
        if got is None:
            problems.append(f"{variant}: missing from the results (was it exported?)")
            continue
        for metric, bound in limits.items():
            key, kind = GATED[metric]
            value = got["tiled"][key]
            if (kind == "min" and value < bound) or (kind == "max" and value > bound):
                problems.append(f"{variant}: {metric} = {value:.4g}, {'below the floor' if kind == 'min' else 'above the ceiling'} {bound}")
    return problems


def visual_report(
    path: Path, frame: tuple[str, np.ndarray], reference: torch.Tensor, target: torch.Tensor, outputs: dict[str, torch.Tensor], mode: str, crop: int = 192
) -> None:
    """Top row: float, each variant, target (same centre crop); bottom row: each variant's error heat map
    against float (white = 0.05 or more)."""
    _, mosaic = frame
    h, w = mosaic.shape
    y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)

    def cut(t: torch.Tensor) -> torch.Tensor:
        return t[:, y : y + crop, x : x + crop]

    ref = cut(displayed(reference, mode))
    top = [ref] + [cut(displayed(o, mode)) for o in outputs.values()] + [cut(target)]
    bottom = (
        [torch.zeros_like(ref)]
        + [torch.from_numpy(error_heat_map(cut(displayed(o, mode)), ref)).permute(2, 0, 1).float() for o in outputs.values()]
        + [torch.zeros_like(ref)]
    )
    grid = torch.cat([torch.cat(top, dim=2), torch.cat(bottom, dim=2)], dim=1).permute(1, 2, 0).numpy()
    image = Image.fromarray(np.round(np.clip(grid, 0, 1) * 255).astype(np.uint8))
    labelled = Image.new("RGB", (image.width, image.height + 14), "white")
    labelled.paste(image, (0, 14))
    draw = ImageDraw.Draw(labelled)
    for k, label in enumerate(["float", *outputs, "target"]):
        draw.text((k * crop + 3, 1), label, fill="black")
    save_jpeg(labelled, path, quality=90)


def markdown(results: dict) -> str:
    head = (
        "| variant | size kB | delegates | PSNR vs float (dB), tiled / untiled | SSIM vs float | ΔE00 vs float (mean / p99) | max abs | "
        "PSNR vs target | SSIM vs target | ΔE00 vs target |"
    )
    lines = [
        f"Exported variants of `{Path(results['model']).name}` on {results['n']} frame(s) of {results['data']} (split {results['split']}), "
        "run by the exported tile plan (untiled: one frame-sized window); vs target = after the paper's histogram stretch. "
        "Generated by `benchmarks/accuracy.py`.",
        "",
        head,
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    f = results["float_vs_target"]
    lines.append(f"| float (PyTorch) | | | | | | | {f['psnr']:.2f} | {f['ssim']:.4f} | {f['ciede2000']:.2f} |")
    for variant, r in results["variants"].items():
        a, t = r["tiled"], r["tiled"]["vs_target"]
        lines.append(
            f"| {variant} | {r['export']['kB']:.0f} | {r['export']['delegates']} | {a['psnr']:.2f} / {r['untiled']['psnr']:.2f} | {a['ssim']:.4f} | "
            f"{a['ciede2000']:.3f} / {a['ciede2000_p99']:.3f} | {a['max_abs']:.2g} | {t['psnr']:.2f} | {t['ssim']:.4f} | {t['ciede2000']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--exported", type=Path, required=True, help="folder with the export's deepisp_*.json sidecars")
    ap.add_argument("--model", type=Path, default=None, help="float checkpoint they came from (default: the shipped model)")
    ap.add_argument("--data", type=Path, default=None, help="S7-layout root (default: the project's synthetic Kodak set)")
    ap.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    ap.add_argument("--limit", type=int, default=None, help="first N frames of the split")
    ap.add_argument("--check", type=Path, default=None, help="baselines JSON: exit 1 on any regression")
    add_out(ap, "accuracy.json")
    args = ap.parse_args(argv)
    try:
        sidecars = sorted(args.exported.glob("deepisp_*.json"))
        if not sidecars:
            raise DeepISPError(f"no deepisp_*.json sidecars in {args.exported}: run export/to_tflite.py or export/to_onnx.py first")
        model = reference_model(load_model(args.model)[0], [ExportMetadata.read(s) for s in sidecars])
        frames, targets = load_frames(args.data, args.split, args.limit, model.cfg)
        references = reference_outputs(model, frames)
        float_vs_target = [image_metrics(histogram_stretch(displayed(r, model.cfg.mode)), histogram_stretch(t)) for r, t in zip(references, targets)]
        results = {
            "model": str(args.model or DEFAULT_CHECKPOINT),
            "data": str(args.data or "synthetic S7 (kodak24)"),
            "split": args.split,
            "n": len(frames),
            "float_vs_target": {k: float(np.mean([m[k] for m in float_vs_target])) for k in float_vs_target[0]},
            "variants": {},
        }
        first_outputs = {}
        for sidecar in sidecars:
            exported = ExportedModel(sidecar)
            name = BACKENDS[exported.backend].label(exported.variant)
            results["variants"][name] = {mode: compare(exported, frames, references, targets, untiled=(mode == "untiled")) for mode in ("tiled", "untiled")}
            measured = exported.metadata.measured
            if measured is None:
                raise DeepISPError(f"{sidecar} holds no export measurements (sizes, delegate checks): re-export")
            results["variants"][name]["export"] = {"kB": sum(measured.bytes.values()) / 1024, "delegates": delegate_verdict(measured)}
            first_outputs[name] = exported.run(torch.from_numpy(frames[0][1]))
            t = results["variants"][name]["tiled"]
            print(
                f"{name:<11} vs float: PSNR {t['psnr']:7.2f} dB  SSIM {t['ssim']:.4f}  ΔE00 {t['ciede2000']:.3f} (p99 {t['ciede2000_p99']:.3f})  "
                f"max abs {t['max_abs']:.2g} | vs target: PSNR {t['vs_target']['psnr']:.2f} dB (float {results['float_vs_target']['psnr']:.2f})",
                flush=True,
            )
    except DeepISPError as e:
        return fail(e)
    write_result(args.out, results, markdown(results))
    visual_report(args.out.with_suffix(".jpg"), frames[0], references[0], targets[0], first_outputs, model.cfg.mode)
    print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.jpg')}")
    if args.check:
        problems = check(results, json.loads(args.check.read_text()))
        for p in problems:
            print(f"regression: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"accuracy gate passed ({args.check})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
