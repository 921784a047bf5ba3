"""Command lines of export/to_tflite.py and export/to_onnx.py: same flags, same report, one backend each.

load checkpoint -> held-out raw frames (accuracy) and calibration windows (int8/int16x8)
-> graphs for the window of the frame's tile plan -> per variant: build, publish (deepisp.export.pipeline)
-> one summary line per variant; exit 1 if any variant was refused, 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from deepisp.arguments import Parser, add_noise_profile_argument, number, threads
from deepisp.errors import DeepISPError, printable
from deepisp.export.backends import BACKENDS, Backend, Exporter

DEFAULT_FRAME = (3024, 4032)  # Samsung Galaxy S7 main camera, the S7-ISP dataset's frame
DEFAULT_TILE = 1024
# Calibration window side: ranges do not depend on the window size, calibration time grows with it.
CALIBRATION_WINDOW = 256


def parser(backend: Backend, prog: str | None = None) -> argparse.ArgumentParser:
    variants = backend.variants
    p = Parser(
        prog=prog or f"export/to_{backend.name}.py",
        description=f"Export a DeepISP checkpoint as {backend.description}: a tile graph (raw Bayer window -> image, plus the "
        "high-level cells) and a color graph (global W applied per pixel), run tile by tile with the plan in the "
        "metadata. Every variant is checked against the float PyTorch model on held-out raw frames and refused "
        "(no files left, exit 1) if it falls below its accuracy floor or a graph does not delegate wholly.",
        epilog="Outputs per variant V in --out: deepisp_tile_V, deepisp_color_V, the sidecar JSON (plan, I/O, "
        "accuracy, delegate verdicts) and an error heat map PNG. Run one with `deepisp process RAW --backend "
        f"{backend.name} --model OUT/<sidecar>.json`.",
    )
    p.add_argument("--model", type=Path, default=None, help="checkpoint from `deepisp train` (default: the shipped deepisp_micro_full.pt)")
    p.add_argument(
        "--quant", nargs="+", default=["fp32"], choices=[*variants, "all"], metavar="Q", help=f"variant(s): {', '.join(variants)}, or all (default fp32)"
    )
    p.add_argument(
        "--tile",
        type=number(int, 8, 8192),
        nargs="+",
        default=[DEFAULT_TILE],
        metavar="N",
        help=f"nominal core of a tile, H W or one size for both (default {DEFAULT_TILE}); the window adds the halo",
    )
    p.add_argument(
        "--frame",
        type=number(int, 8, 65536),
        nargs=2,
        default=list(DEFAULT_FRAME),
        metavar=("H", "W"),
        help="sensor frame the static tile plan is made for (default 3024 4032, the S7's)",
    )
    p.add_argument(
        "--calib",
        type=Path,
        default=None,
        help="raw files or an S7-layout folder for int8/int16x8 calibration "
        "(default: the train split of the project's synthetic S7 set, made from ../shared/data on first use)",
    )
    p.add_argument(
        "--calib-windows", type=number(int, 1, 100000), default=32, help=f"calibration windows of {CALIBRATION_WINDOW}x{CALIBRATION_WINDOW} (default 32)"
    )
    p.add_argument(
        "--calib-input-max",
        type=number(float, 0, 1, above=True),
        default=None,
        help="top of the quantized input range; brighter inputs saturate (default: the 99.9th percentile of the calibration raws for int8 "
        "and int8-mixed, the whole [0,1] for int16x8; 1 = the whole range)",
    )
    p.add_argument(
        "--data", type=Path, default=None, help="raw files or an S7-layout folder to check accuracy on (default: the val+test splits of the synthetic S7 set)"
    )
    p.add_argument("--eval-images", type=number(int, 1, 10000), default=4, help="held-out frames for the accuracy check (default 4)")
    p.add_argument(
        "--min-psnr",
        type=number(float, 0, 200),
        default=None,
        help="accuracy floor in dB vs the float model for every variant (default: per-variant floors set from measurement, see deepisp/export/gate.py)",
    )
    add_noise_profile_argument(
        p,
        "noise-aware jdd models (required for them): the noise variance S*x + O (a DNG NoiseProfile) baked into the graphs, "
        "exact for raws with that noise; export one set per ISO",
    )
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder (default out/)")
    p.add_argument("--threads", type=threads, default=None, help="CPU threads for the checks, 1 to the cores present (default: all cores)")
    return p


def _check_out(out: Path) -> None:
    existing = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise DeepISPError(f"cannot write to --out {out}: {existing} is not a writable folder; choose another --out")


def run(name: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point of export/to_<name>.py and `deepisp export --format <name>`; returns the exit status."""
    backend = BACKENDS[name]
    try:
        exporter_class = backend.exporter_class()
    except ImportError as e:
        print(f"error: {name} export needs the export extras ({e.name} is missing): pip install -e '.[export]'", file=sys.stderr)
        return 2
    args = parser(backend, prog).parse_args(argv)
    try:
        return _export(backend, exporter_class, args)
    except DeepISPError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2


def _export(backend: Backend, exporter_class: type[Exporter], args: argparse.Namespace) -> int:
    import torch

    from deepisp.checkpoint import DEFAULT_CHECKPOINT, load_model
    from deepisp.export.calibration import calibration_windows, default_s7_root, load_mosaics, model_exposures, raw_paths
    from deepisp.export.gate import reference_outputs
    from deepisp.export.pipeline import ExportOptions, HeldOut, publish, summary_line
    from deepisp.model.domain import compand
    from deepisp.noise_level import at_given_noise_level
    from deepisp.tile_plan import window_size

    if args.threads:
        torch.set_num_threads(args.threads)
    variants = list(backend.variants) if "all" in args.quant else list(dict.fromkeys(args.quant))
    if len(args.tile) not in (1, 2):
        raise DeepISPError("--tile takes one size or two (H W)")
    tile = (args.tile[0], args.tile[-1])
    _check_out(args.out)
    model, state = load_model(args.model)
    noise = None if args.noise_profile is None else tuple(args.noise_profile)
    model = at_given_noise_level(model, noise, "to bake into the graphs")
    cfg = model.cfg
    if any(n % 2 or n < cfg.min_size for n in args.frame):
        raise DeepISPError(
            f"--frame {args.frame[0]} {args.frame[1]}: a sensor frame has even sides (whole Bayer quads) of at least {cfg.min_size} "
            "pixels for this model (one cell of its high-level stage)"
        )
    window = (window_size(args.frame[0], tile[0], cfg), window_size(args.frame[1], tile[1], cfg))
    opts = ExportOptions(args.out, tile, tuple(args.frame), args.min_psnr, args.threads, noise)
    print(
        f"model {args.model or DEFAULT_CHECKPOINT} ({cfg.mode}, n_ll={cfg.n_ll}, width={cfg.width}); "
        f"frame {args.frame[0]}x{args.frame[1]} -> window {window[0]}x{window[1]} for tile {tile[0]}x{tile[1]}"
    )

    data = args.data or default_s7_root()
    exposures = model_exposures(cfg, state.get("train_config", {}).get("pair", "low_light"))
    frames = load_mosaics(raw_paths(data, ("val", "test"), exposures)[: args.eval_images], cfg)
    if not frames:
        raise DeepISPError(f"no held-out raw frames ({', '.join(exposures)} raws of an S7 layout, or raw files) in {data} for the accuracy check; pass --data")
    held_out = HeldOut(frames, reference_outputs(model, frames))
    calibration = {}  # variant -> its calibration windows
    calibrated = [v for v in variants if v in backend.calibrated]
    if calibrated:
        source = args.calib or default_s7_root()
        size = (min(CALIBRATION_WINDOW, window[0]), min(CALIBRATION_WINDOW, window[1]))
        mosaics = [m for _, m in load_mosaics(raw_paths(source, ("train",), exposures), cfg)]
        for v in calibrated:
            top = args.calib_input_max
            if top is None and v in backend.whole_input_range:
                top = 1.0
            # The tile graphs take the mosaic in the network's working domain (ModelConfig.compand).
            windows = calibration_windows(mosaics, size, args.calib_windows, input_max=top)
            calibration[v] = [compand(torch.from_numpy(w), cfg).numpy() for w in windows]
            print(f"calibration {v}: {args.calib_windows} windows of {size[0]}x{size[1]} from {source}, input range [0, {calibration[v][0].max():.3g}]")

    exporter = exporter_class(model, window)
    print(f"accuracy check on {len(frames)} held-out frame(s) from {data} against the float PyTorch model")
    refused = 0
    for v in variants:
        t0 = time.perf_counter()
        report = publish(exporter.build(v, calibration.get(v)), backend, exporter, opts, held_out)
        refused += not report["accepted"]
        print(summary_line(report, args.out) + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        for point in report.get("int8_points", [])[:5]:
            step = "" if point["step"] is None else f" (int8 step {point['step']:.2g})"
            print(f"          int8 cost: {point['point']} rounded alone: output {point['psnr_alone']:.1f} dB from float{step}")
    if refused:
        print(f"error: {refused} variant(s) refused; nothing was written for them", file=sys.stderr)
        return 1
    print(f"wrote {len(variants)} variant(s) to {args.out}/")
    return 0
