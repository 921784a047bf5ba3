"""Image quality of deepisp's models against classical pipelines, on ground truth the project can trust.

    python benchmarks/quality.py [--jdd-model CKPT ...] [--full-model CKPT ...] [--second-set DIR ...] [--limit N] [--sigmas 0 2 5 10]
                                 [--figure PHOTO SIGMA]

Owns two comparisons and the results files benchmarks/results/quality.json (every number, per image and
mean, with the protocols) and quality.md (the tables the README shows, generated here, never typed):

    jdd   joint denoising + demosaicing of the 24 Kodak photographs, mosaiced and noised here: a JDD model
          (`--jdd-model`, default: both shipped, phone-jdd and micro-jdd) against bilinear, Malvar-He-Cutler and Menon
          (colour-demosaicing), OpenCV's three Bayer demosaicers, and LibRaw's AHD and DCB with and without
          its FBDD denoiser (through rawpy, on DNGs written from the very same mosaics); then the same on
          the second test sets (`--second-set`, default two, both of the saturated colours and colour edges
          Kodak24 has little of: the colourful photographs scikit-image ships, benchmarks/colour_photos.py,
          and the colour dead leaves of benchmarks/dead_leaves.py, a stress test).
    full  the whole ISP on S7-layout low-light pairs (the Kodak photos rendered by `deepisp make-synthetic
          --seed 1`): full models (default: every shipped one) against rawpy's default postprocess with the
          camera white balance, and against no ISP at all, after the paper's histogram stretch.

Also quality_crops.jpg: one photo at one noise level (`--figure`; by default kodim19 at σ = 5 when 5 is among
the sigmas), the crop where bilinear demosaicing goes most wrong, through the truth, the classical rows of
FIGURE_CLASSICAL and every DeepISP model, each labelled with its sRGB PSNR on that crop; quality.json records
which photo, sigma and crop.

The exact protocols are JDD_PROTOCOL and FULL_PROTOCOL, beside the code that follows them (quality_jdd.py,
quality_full.py; the rows are in quality_methods.py, the figure in quality_crops.py); `--help` prints them
and both results files carry them, so the numbers never travel without the way they were measured. Besides
deepisp's own dependencies this needs colour-demosaicing (`pip install "colour-demosaicing>=0.2.7"`).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.colour_photos import COLOUR_PHOTOS_PROTOCOL, make_colour_photos
from benchmarks.common import REPO, RESULTS, SHIPPED_JDD, WEIGHTS, add_full_models, fail, group_key, means, model_label, parser, save_jpeg, write_result
from benchmarks.dead_leaves import DEAD_LEAVES_PROTOCOL, make_dead_leaves
from benchmarks.quality_crops import FIGURE_DEFAULT, crops_figure
from benchmarks.quality_full import FULL_PROTOCOL, run_full
from benchmarks.quality_jdd import BORDER, JDD_PROTOCOL, SIGMAS, run_jdd
from benchmarks.quality_methods import Method, classical_methods, jdd_model_method, library_versions, require_colour_demosaicing
from deepisp.checkpoint import load_model
from deepisp.data import DEFAULT_EVAL_SET, SHARED_DATA
from deepisp.data.synthetic import find_photos
from deepisp.errors import DeepISPError
from deepisp.options import Mode

DEFAULT_PHOTOS = SHARED_DATA / "photos" / "kodak24"
# The default second test sets: folder -> (title, what the images are, how to make them).
SECOND_SETS = {
    REPO / "out" / "colour-photos": ("colour photographs", COLOUR_PHOTOS_PROTOCOL, make_colour_photos),
    REPO / "out" / "dead-leaves": ("colour dead leaves", DEAD_LEAVES_PROTOCOL, make_dead_leaves),
}


def _cell(values: dict, column_best: dict, fmt: dict[str, str]) -> str:
    """'a / b / c' with each value that is its column's best in bold."""
    parts = [format(values[k], f) for k, f in fmt.items()]
    return " / ".join(f"**{p}**" if np.isclose(values[k], column_best[k]) else p for p, k in zip(parts, fmt))


def jdd_table(jdd: dict, title: str) -> list[str]:
    """One JDD table (rows: methods; columns: sigmas) with its method notes and protocol."""
    sigmas = [group_key(s) for s in jdd["sigmas"]]
    fmt = {"psnr_linear": ".2f", "psnr_srgb": ".2f", "ssim": ".4f"}
    best = {s: {k: max(m[s][k] for m in jdd["mean"].values()) for k in fmt} for s in sigmas}
    lines = [
        f"**{title}**, {jdd['n_images']} images of `{jdd['photos']}`, Gaussian noise σ/255 in linear:",
        "",
        "Each cell: mean PSNR linear (dB) / PSNR sRGB (dB) / SSIM (sRGB); best per column in bold."
        + ("" if jdd["models"] else " No JDD checkpoint was given (`--jdd-model`): classical methods only."),
        "",
        "| method | " + " | ".join(f"σ={s}" for s in sigmas) + " | s/image |",
        "|---|" + "---|" * (len(sigmas) + 1),
    ]
    for name, by_sigma in jdd["mean"].items():
        cells = [_cell(by_sigma[s], best[s], fmt) for s in sigmas]
        seconds = np.mean([by_sigma[s]["seconds"] for s in sigmas])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seconds:.3f} |")
    return lines


def to_markdown(report: dict) -> str:
    """The tables and their protocols, as the README shows them."""
    jdd, full = report["jdd"], report["full"]
    lines = jdd_table(jdd, "Joint denoising + demosaicing")
    lines += ["", *(f"- **{name}**: {about}" for name, about in jdd["methods"].items()), "", f"Protocol: {jdd['protocol']}", ""]
    for second in report.get("jdd_second") or []:
        lines += jdd_table(second, f"Joint denoising + demosaicing, second test set: {second['title']}")
        lines += ["", f"The same protocol on these images: {second['images']}", ""]

    fmt_full = {"psnr": ".2f", "ssim": ".4f", "ciede2000": ".2f", "ciede2000_p99": ".2f"}
    lines += [
        f"**Full ISP**, {full['n_scenes']} S7-layout low-light scenes of `{full['data']}`, against the well-lit target after the paper's histogram stretch:",
        "",
        "| method | PSNR (dB) | SSIM | CIEDE2000 mean | CIEDE2000 p99 | s/image |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in full["mean"].items():
        lines.append(f"| {name} | " + " | ".join(format(m[k], f) for k, f in fmt_full.items()) + f" | {m['seconds']:.3f} |")
    env = report["environment"]
    lines += [
        "",
        f"Protocol: {full['protocol']}",
        "",
        f"Generated by `python benchmarks/quality.py` in {report['seconds'] / 60:.1f} min on {env['cpu_threads']} CPU "
        f"threads; LibRaw {env['libraw']}, rawpy {env['rawpy']}, OpenCV {env['opencv']}, "
        f"colour-demosaicing {env['colour_demosaicing']}, torch {env['torch']}.",
    ]
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    """A path as the results file records it: relative to the repository, so results are portable."""
    return os.path.relpath(Path(path).resolve(), REPO)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = parser(__doc__, epilog=f"JDD protocol:\n{JDD_PROTOCOL}\n\nFull-ISP protocol:\n{FULL_PROTOCOL}")
    ap.add_argument("--photos", type=Path, metavar="DIR", default=DEFAULT_PHOTOS, help="sRGB photos for the JDD part (default: ../shared/data/photos/kodak24)")
    ap.add_argument(
        "--second-set",
        type=Path,
        metavar="DIR",
        nargs="+",
        default=list(SECOND_SETS),
        help="sRGB images of the second JDD test set(s), one table each (default: "
        + ", ".join(f"{_shown(folder)}, the {title}" for folder, (title, _, _) in SECOND_SETS.items())
        + ", made there if missing); 'none' to skip",
    )
    ap.add_argument(
        "--sigmas", type=float, nargs="+", metavar="S", default=list(SIGMAS), help="noise levels, in 1/255 of full scale, linear (default: 0 2 5 10)"
    )
    ap.add_argument("--limit", type=int, metavar="N", default=None, help="use only the first N photos and N scenes")
    ap.add_argument(
        "--jdd-model",
        type=Path,
        metavar="CKPT",
        nargs="+",
        default=[WEIGHTS / name for name in SHIPPED_JDD],
        help="jdd checkpoint(s), one row each (deepisp train --preset phone-jdd); default: every shipped one; 'none': classical rows only",
    )
    add_full_models(ap)
    ap.add_argument(
        "--s7",
        type=Path,
        metavar="DIR",
        default=None,
        help=f"S7-layout folder for the full-ISP part (default: {_shown(DEFAULT_EVAL_SET)}, made from the Kodak photos if missing)",
    )
    ap.add_argument(
        "--figure",
        nargs=2,
        metavar=("PHOTO", "SIGMA"),
        default=None,
        help="photo stem and noise level (one of --sigmas) of quality_crops.jpg (default: kodim19 5 when 5 is among --sigmas)",
    )
    ap.add_argument("--tile", type=int, default=None, help="model tile size (results do not depend on it; default: deepisp process's own choice)")
    ap.add_argument("--out", type=Path, metavar="DIR", default=RESULTS, help="folder for the results files (default: benchmarks/results)")
    args = ap.parse_args(argv)
    if [str(p) for p in args.jdd_model] == ["none"]:
        args.jdd_model = []
    if [str(p) for p in args.second_set] == ["none"]:
        args.second_set = []
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be at least 1")
    if any(s < 0 for s in args.sigmas):
        ap.error("--sigmas must be non-negative")
    if args.figure is None:
        args.figure = FIGURE_DEFAULT if FIGURE_DEFAULT[1] in args.sigmas else None
    else:
        try:
            args.figure = (args.figure[0], float(args.figure[1]))
        except ValueError:
            ap.error(f"--figure SIGMA must be a number, got {args.figure[1]!r}")
        if args.figure[1] not in args.sigmas:
            ap.error(f"--figure SIGMA must be one of --sigmas {' '.join(f'{s:g}' for s in args.sigmas)}")
    return args


def jdd_methods(workdir: Path, checkpoints: Sequence[Path], tile: int) -> list[Method]:
    """The JDD table's rows in order: the classical ones (LibRaw's DNGs written in `workdir`), then one per checkpoint."""
    return [*classical_methods(workdir), *(jdd_model_method(path, tile) for path in checkpoints)]


def benchmark(args: argparse.Namespace) -> tuple[dict, Image.Image | None]:
    """Both parts: the report that quality.json holds, and the crops figure (None without `--figure`, or when
    its photo is not among those run). DeepISPError for missing inputs or dependencies."""
    require_colour_demosaicing()
    if not args.photos.is_dir():
        raise DeepISPError(f"photos folder {args.photos} not found: the benchmark needs ../shared/data/photos/kodak24 beside the repo, or pass --photos DIR")
    photos = find_photos([args.photos])[: args.limit]
    if args.s7 is None:
        from deepisp.export.calibration import default_s7_root  # builds DEFAULT_EVAL_SET on first use

        args.s7 = default_s7_root(DEFAULT_EVAL_SET)
    full_models = {}
    for path in args.full_models:
        model, state = load_model(path)
        if model.cfg.mode != Mode.FULL:
            raise DeepISPError(f"--full-model {path} is a {model.cfg.mode!r} model; pass a full checkpoint")
        full_models[model_label(path, state)] = model

    args.second_set = [folder.resolve() for folder in args.second_set]
    for folder in args.second_set:
        if folder in SECOND_SETS:
            SECOND_SETS[folder][2](folder)
    second_photos = {folder: find_photos([folder])[: args.limit] for folder in args.second_set}

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deepisp-quality-") as tmp:
        methods = jdd_methods(Path(tmp), args.jdd_model, args.tile)
        jdd_rows, kept = run_jdd(photos, args.sigmas, methods, keep=args.figure)
        second_rows = {folder: run_jdd(photos, args.sigmas, methods, keep=None)[0] for folder, photos in second_photos.items()}
    full_rows = run_full(args.s7, full_models, args.tile, args.limit)

    jdd_keys, full_keys = ("psnr_linear", "psnr_srgb", "ssim", "seconds"), ("psnr", "ssim", "ciede2000", "ciede2000_p99", "seconds")
    figure, crop = crops_figure(kept, f"{args.figure[0]}, sigma {args.figure[1]:g}/255") if kept else (None, None)
    report = {
        "jdd": {
            "photos": _shown(args.photos),
            "n_images": len(photos),
            "sigmas": args.sigmas,
            "border": BORDER,
            "models": [_shown(path) for path in args.jdd_model],
            "protocol": " ".join(JDD_PROTOCOL.split()),
            "methods": {m.name: m.about for m in methods},
            "mean": means(jdd_rows, jdd_keys, ("method", "sigma")),
            "per_image": jdd_rows,
            "figure": None if crop is None else {"photo": args.figure[0], "sigma": args.figure[1], "crop_y_x_size": list(crop)},
        },
        "jdd_second": [
            {
                "title": SECOND_SETS[folder][0] if folder in SECOND_SETS else _shown(folder),
                "photos": _shown(folder),
                "images": SECOND_SETS[folder][1] if folder in SECOND_SETS else "given by --second-set",
                "n_images": len(second_photos[folder]),
                "sigmas": args.sigmas,
                "models": [_shown(path) for path in args.jdd_model],
                "mean": means(rows, jdd_keys, ("method", "sigma")),
                "per_image": rows,
            }
            for folder, rows in second_rows.items()
        ],
        "full": {
            "data": _shown(args.s7),
            "n_scenes": len({r["scene"] for r in full_rows}),
            "models": list(full_models),
            "protocol": " ".join(FULL_PROTOCOL.split()),
            "mean": means(full_rows, full_keys, ("method",)),
            "per_image": full_rows,
        },
        "environment": {
            **library_versions(),
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "seconds": time.perf_counter() - t0,
    }
    return report, figure


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report, figure = benchmark(args)
    except DeepISPError as e:
        return fail(e)
    write_result(args.out / "quality.json", report, to_markdown(report), indent=1)
    crops = args.out / "quality_crops.jpg"
    if figure is not None:
        save_jpeg(figure, crops, quality=92)
    elif crops.exists():  # a figure of an earlier run would sit beside numbers it does not belong to
        crops.unlink()
    if figure is None and args.figure is not None:
        print(f"note: --figure photo {args.figure[0]} is not among the photos run: no {crops.name}", file=sys.stderr)
    written = ", ".join(p.name for p in (args.out / "quality.json", args.out / "quality.md", crops) if p.exists())
    print(f"wrote {written} in {args.out} ({report['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
