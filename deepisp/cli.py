"""The `deepisp` command: one console script, one subcommand per pipeline stage.

    deepisp make-synthetic  sRGB photographs -> S7-layout scenes (DNG + JPEG) to train/test on
    deepisp cache           decode an S7 or MSR folder once into memory-mapped arrays that training reads
    deepisp train           train a preset on an S7 (full) or MSR (jdd) folder; --resume continues
    deepisp eval            metrics + side-by-side figures on a split
    deepisp process         raw file(s) -> JPEG / PNG / 16-bit TIFF at full resolution
    deepisp presets         the named model sizes with parameters and FLOPs per pixel

User errors print one line (`error: ...`) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from deepisp import __version__
from deepisp.arguments import Parser, add_noise_profile_argument, number, threads
from deepisp.data import SHARED_DATA
from deepisp.errors import DeepISPError, printable
from deepisp.options import (
    EXPORT_FORMATS,
    EXPOSURES,
    JDD_LOSSES,
    MAX_HOST_WINDOW,
    MAX_MEGAPIXELS,
    PROCESS_BACKENDS,
    PROCESS_ENVIRONMENT,
    WHITE_BALANCE_SOURCES,
    Mode,
)


def _add_common_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a shipped model by name (micro-full, phone-full, micro-jdd, phone-jdd) or a checkpoint from `deepisp train` "
        "(default: micro-full, deepisp/weights/deepisp_micro_full.pt)",
    )
    p.add_argument(
        "--tile",
        type=number(int, 8, 8192),
        default=None,
        help="nominal tile core in pixels, a multiple of the model's high-level stride (default: per frame, the windows of at "
        f"most {MAX_HOST_WINDOW} px a side that compute the fewest pixels; a frame that fits runs whole)",
    )
    p.add_argument("--threads", type=threads, default=None, help="CPU threads for torch, 1 to the cores present (default: all cores)")
    add_noise_profile_argument(
        p,
        "noise-aware jdd models: the noise variance S*x + O at normalised raw level x (a DNG's NoiseProfile tag); "
        "process: to override it (default: each file's own, else estimated from the image with a warning)",
    )


def cmd_make_synthetic(args: argparse.Namespace) -> None:
    from deepisp.data.synthetic import find_photos, make_synthetic

    photos = find_photos(args.photos)
    if args.limit:
        photos = photos[: args.limit]
    scenes = make_synthetic(photos, args.out, seed=args.seed, pattern=args.pattern, variants=args.variants)
    print(f"wrote {len(scenes)} S7-layout scenes to {args.out}")


def cmd_cache(args: argparse.Namespace) -> None:
    from deepisp.data.make_cache import cache_dataset

    report = cache_dataset(args.data, args.cache, pairs=args.pair, cameras=args.msr_camera, progress=not args.quiet)
    for problem in report.problems:
        print(f"warning: skipped {printable(problem)}", file=sys.stderr)
    print(f"{printable(report.cache)}: {report.frames} frames, {report.decoded} decoded now, {report.frames - report.decoded} already cached")


def cmd_train(args: argparse.Namespace) -> None:
    from deepisp.distributed import from_environment
    from deepisp.train import TrainConfig, train

    def train_stage(tc: TrainConfig, resume: bool) -> Path:
        return train(tc, resume=resume, progress=not args.quiet, workers=args.workers)

    names = {f.name for f in fields(TrainConfig)}
    if args.recipe is not None:
        from deepisp.recipe import run_recipe

        if args.resume:
            raise DeepISPError("--recipe resumes by itself: run the same command again, without --resume")
        if args.stage is None and from_environment().distributed:  # a stage's processes part when it ends; the next must not race its last save
            raise DeepISPError("under torchrun, --recipe trains one stage per launch: add --stage K, K = 1, 2, ... in turn")
        overrides = {k: v for k, v in vars(args).items() if k in names - {"recipe", "out"} and v is not None}
        path = run_recipe(args.recipe, args.out, overrides, args.data_root, args.stage, train_stage)
    else:
        if args.data_root is not None or args.stage is not None:
            raise DeepISPError("--data-root and --stage are for --recipe runs")
        if args.resume and args.steps is None:
            args.steps = 0  # keep the run's own length
        path = train_stage(TrainConfig(**{k: v for k, v in vars(args).items() if k in names and v is not None}), args.resume)
    if from_environment().is_main:  # one line for a run of several processes (torchrun)
        print(f"checkpoint: {path}")


def cmd_eval(args: argparse.Namespace) -> None:
    from deepisp.checkpoint import load_model
    from deepisp.evaluate import evaluate
    from deepisp.noise_level import at_given_noise_level

    model, _ = load_model(args.model)
    noise = None if args.noise_profile is None else tuple(args.noise_profile)
    model = at_given_noise_level(model, noise, "for the evaluation frames")
    if model.cfg.mode == Mode.FULL:
        from deepisp.data.s7 import S7Dataset

        dataset = S7Dataset(args.data, split=args.split, pair=args.pair, model_config=model.cfg)
    else:
        from deepisp.data.msr import MSRDataset

        dataset = MSRDataset(args.data, camera=args.msr_camera, split=args.split)
    summary = evaluate(model, dataset, args.out, tile=args.tile, figures=args.figures, limit=args.limit)
    print(json.dumps({k: summary[k] for k in ("mode", "n", "model", "baseline")}, indent=2))
    print(f"per-image metrics and figures in {args.out}")


def cmd_process(args: argparse.Namespace) -> None:
    from deepisp.checkpoint import load_model, model_path
    from deepisp.process import process_files

    if len(args.inputs) > 1 and not (args.output and args.output.is_dir()):
        raise DeepISPError("several inputs need -o to name an existing folder")
    if args.backend == "torch":
        model, _ = load_model(args.model)
        model_files = [model_path(args.model)]
    else:
        from deepisp.runtime import ExportedModel

        if args.model is None or args.model.suffix != ".json":
            raise DeepISPError(f"--backend {args.backend} needs --model OUT/deepisp_<variant>.json, the sidecar written by export/to_{args.backend}.py")
        model = ExportedModel(args.model, threads=args.threads)
        if model.backend != args.backend:
            raise DeepISPError(f"{args.model} is a {model.backend} export, not {args.backend}: pass --backend {model.backend}")
        model_files = [args.model, *model.files.values()]
    jobs = []
    for raw in args.inputs:
        if args.output is None:
            out = raw.with_suffix(".jpg")
        elif args.output.is_dir():
            out = args.output / (raw.stem + ".jpg")
        else:
            out = args.output
        jobs.append((raw, out))
    noise = None if args.noise_profile is None else tuple(args.noise_profile)
    for info in process_files(
        model,
        jobs,
        tile=args.tile,
        bits=args.bits,
        white_balance=args.white_balance,
        max_megapixels=args.max_megapixels,
        noise_profile=noise,
        linear=args.linear,
        model_files=model_files,
    ):
        gain = f", exposure x{info['conditioning']['exposure_gain']:.3g}" if "conditioning" in info else ""
        where = f"{printable(info['input'])} -> {printable(info['output'])}"
        print(f"{where} ({info['width']}x{info['height']}, {info['bits']}-bit{gain}, {info['seconds']:.2f} s)")
        for warning in info.get("warnings", []):
            print(f"warning: {printable(info['input'])}: {warning}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    if args.format is None:
        if "-h" in args.rest or "--help" in args.rest:
            print("usage: deepisp export --format {tflite,onnx} [options]; `deepisp export --format tflite --help` lists the options")
            return 0
        raise DeepISPError("deepisp export needs --format tflite or --format onnx (then --help lists its options)")
    from deepisp.export.commands import run

    return run(args.format, args.rest, prog=f"deepisp export --format {args.format}")


def cmd_presets(args: argparse.Namespace) -> None:
    from deepisp.model.config import PRESETS
    from deepisp.model.cost import count_parameters, flops_per_pixel
    from deepisp.model.network import DeepISP

    print(f"{'preset':<12} {'mode':<5} {'n_ll':>4} {'n_hl':>4} {'width':>5} {'params':>9} {'kFLOP/px':>9} {'TFLOP/12MP':>10}")
    for name, cfg in PRESETS.items():
        f = flops_per_pixel(cfg)
        print(
            f"{name:<12} {cfg.mode:<5} {cfg.n_ll:>4} {cfg.n_hl if cfg.mode == 'full' else '-':>4} {cfg.width:>5} "
            f"{count_parameters(DeepISP(cfg)):>9,} {f / 1e3:>9.1f} {f * 12.19e6 / 1e12:>10.2f}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="deepisp", description="DeepISP: a learned camera ISP (raw Bayer -> finished image).")
    parser.add_argument("--version", action="version", version=f"deepisp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "make-synthetic",
        help="turn sRGB photographs into S7-layout raw/JPEG scenes",
        description="Invert photographs to plausible camera raw (short and medium exposure, with noise), "
        "write real DNG + JPEG files in the S7-ISP dataset layout.",
    )
    p.add_argument(
        "--photos",
        type=Path,
        nargs="+",
        default=[SHARED_DATA / "photos" / "cbsd68"],
        help="folders of .png/.jpg photographs (default: ../shared/data/photos/cbsd68)",
    )
    p.add_argument("--out", type=Path, required=True, help="output root; one sub-folder per scene")
    p.add_argument("--seed", type=number(int, 0), default=0)
    p.add_argument("--pattern", default="RGGB", choices=["RGGB", "GRBG", "GBRG", "BGGR"], help="sensor CFA pattern to simulate")
    p.add_argument("--limit", type=number(int, 1), default=None, help="use only the first N photographs")
    p.add_argument(
        "--variants", type=number(int, 1, 100), default=1, help="scenes per photograph, each an independent draw of white balance and noise (default 1)"
    )
    p.set_defaults(func=cmd_make_synthetic)

    p = sub.add_parser(
        "cache",
        help="decode an S7 or MSR folder once, for training from memory-mapped arrays",
        description="Decode every scene (S7) or image (MSR) of a dataset folder once into a pre-decoded cache: the raw mosaic as "
        "16-bit and the target, memory-mapped by `deepisp train`, `eval` and the loaders so a crop costs a memory read, not a decode. "
        "Incremental: frames already cached from unchanged files are skipped.",
    )
    p.add_argument("--data", type=Path, required=True, help="S7-layout root or MSR-layout root (MSR-Demosaicing/ or a Dataset_LINEAR_* folder)")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache folder (default DATA/.deepisp-cache, which every loader of DATA then reads by itself); elsewhere for "
        "read-only data, then pass the same --cache to `deepisp train`",
    )
    p.add_argument("--pair", nargs="+", default=["low_light"], choices=["low_light", "mimic"], help="S7: the pairs to cache (default low_light)")
    p.add_argument(
        "--msr-camera",
        dest="msr_camera",
        nargs="+",
        default=None,
        choices=["panasonic", "canon"],
        help="MSR: the cameras to cache, each noise variant present (default: every camera present)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser(
        "train",
        help="train a model",
        description="Train DeepISP with Adam (paper: lr 5e-5) on random crops. "
        "Mode full (S7 folder, Lab-L1 + MS-SSIM loss) or jdd (MSR folder, L2) follows the preset; "
        "--photos draws either mode's pairs on the fly from sRGB photo folders instead. "
        "--recipe trains a model as its recipe file says (deepisp/recipes/), stage after stage.",
    )
    p.add_argument(
        "--recipe",
        metavar="NAME_OR_PATH",
        help="train by a recipe: a shipped model's (micro-full, phone-full, micro-jdd, phone-jdd: deepisp/recipes/NAME.toml) or a .toml "
        "file. Stage k trains in OUT/stage-<k> from the previous stage's last.pt; the same command run again resumes (finished stages "
        "are skipped). Every other flag given overrides the recipe's value in every stage (--photos, --data or --val-data replace its data; "
        "--init-from, the checkpoint stage 1 starts from). Checkpoints record the stage as TrainConfig.recipe, e.g. micro-full#2",
    )
    p.add_argument(
        "--data-root",
        dest="data_root",
        metavar="DIR",
        help="with --recipe: the folder that ${DATA_ROOT} stands for in the recipe's data paths (the shipped photo recipes: "
        "../shared/data/photos, which holds cbsd68, urban100 and sunhays80)",
    )
    p.add_argument("--stage", type=number(int, 1), metavar="K", help="with --recipe: train only stage K (the stage it starts from must be finished)")
    p.add_argument("--data", help="S7-layout root (full presets) or MSR-layout root (jdd presets); not needed with --resume")
    p.add_argument(
        "--photos",
        nargs="+",
        metavar="DIR",
        help="sRGB photo folders: simulate raw/target pairs on the fly for the "
        "preset's mode (a fixed 8%% of the photos is held out for validation); replaces --data",
    )
    p.add_argument(
        "--val-data",
        dest="val_data",
        help="S7 only: validate on every scene of this folder and train on every scene of --data (default: the 90/10/10 split of --data)",
    )
    p.add_argument(
        "--cache",
        help="the pre-decoded cache of --data made by `deepisp cache --cache DIR` (default: DATA/.deepisp-cache when it exists; "
        "--val-data reads its own default cache)",
    )
    p.add_argument("--out", help="run folder: last.pt, log.csv, loss.png (default runs/deepisp; with --recipe, runs/NAME, stage k in OUT/stage-<k>)")
    p.add_argument("--preset", help="model size, see `deepisp presets` (default phone-full)")
    p.add_argument("--pair", choices=["low_light", "mimic"], help="S7 pair: short raw -> medium JPEG (default) or medium -> medium")
    p.add_argument("--msr-camera", dest="msr_camera", choices=["panasonic", "canon"])
    p.add_argument("--steps", type=number(int), help="total optimizer steps (default 2000); with --resume, a new total (default: the run's own)")
    p.add_argument("--batch", type=number(int), help="crops per step (default 4)")
    p.add_argument("--crop", type=number(int), help="crop side in pixels (default 128)")
    p.add_argument("--lr", type=number(float), help="Adam learning rate (default 5e-5, the paper's)")
    p.add_argument("--lr-schedule", dest="lr_schedule", choices=["constant", "cosine"], help="constant (paper, default) or cosine decay to 0 at --steps")
    p.add_argument("--alpha", type=number(float), help="MS-SSIM weight in the full-ISP loss (default 0.84)")
    p.add_argument(
        "--jdd-loss",
        dest="jdd_loss",
        choices=list(JDD_LOSSES),
        help="jdd loss: l2 on linear RGB (the paper's, default); l2+srgb, plus the L2 of the sRGB-encoded images (weighs dark tones as a "
        "display does); log-l2+srgb, both per crop as -PSNR (clean smooth crops count as much as noisy textured ones)",
    )
    p.add_argument("--seed", type=number(int, 0))
    p.add_argument("--ckpt-every", dest="ckpt_every", type=number(int), help="checkpoint period in steps (default 200)")
    p.add_argument("--val-every", dest="val_every", type=number(int), help="validation period in steps (default 200)")
    p.add_argument("--device", help="cpu, cuda or auto (default)")
    p.add_argument(
        "--white-balance",
        dest="white_balance",
        choices=["estimate", "as_shot"],
        help="full presets: estimate (default, the paper: the network finds the white balance in the raw) or as_shot "
        "(the input is balanced with the file's as-shot white balance, as `deepisp process` does; stored in the model)",
    )
    p.add_argument(
        "--exposure",
        choices=EXPOSURES,
        help="full presets with --white-balance as_shot: as_is (default, the paper: trained on the 1/4 exposure alone) or metered "
        "(trained over exposures from 1/16 of the automatic one to 4x over-exposed, each raw brought to the trained level by "
        "metering, as every runner then does: deepisp.conditioning; stored in the model)",
    )
    p.add_argument(
        "--color-head-lr-mult",
        dest="color_head_lr_mult",
        type=number(float),
        help="learning-rate multiplier of the FC that predicts W (default 1: the paper's single rate)",
    )
    p.add_argument(
        "--noise-aware",
        dest="noise_aware",
        action="store_const",
        const=True,
        help="jdd presets, with --photos: the model is given the noise level of its input (read sigma, shot gain), "
        "FFDNet-style; `deepisp process` then reads it from the DNG's NoiseProfile or --noise-profile S O",
    )
    p.add_argument(
        "--color-augment",
        dest="color_augment",
        action="store_const",
        const=True,
        help="with --photos: half the training crops get their saturation scaled by 1-2x and half their R, G, B permuted, "
        "before they are simulated as raws (validation crops never), so the model sees colours its photos have few of",
    )
    p.add_argument(
        "--int8-weights",
        dest="int8_weights",
        action="store_const",
        const=True,
        help="train through the int8 export's weight rounding (per output channel, straight-through gradients): the "
        "checkpoint holds the rounded weights, so the float model and its int8 export share them and int8 loses "
        "only what its activations round (a short fine-tune at the end; one process)",
    )
    p.add_argument(
        "--smooth-fields",
        dest="smooth_fields",
        type=number(float, 0.0, 1.0),
        metavar="SHARE",
        help="jdd presets, with --photos: this share of the training crops (0-1) is a smooth colour field (four random "
        "corner colours interpolated) instead of a photo crop, where the right output is the input's colour: it keeps "
        "the model from shifting flat colours or printing a CFA pattern on smooth saturated areas (default 0)",
    )
    p.add_argument(
        "--clean-share",
        dest="clean_share",
        type=number(float, 0.0, 1.0),
        metavar="SHARE",
        help="jdd presets, with --photos: this share of the training crops (0-1) is drawn without noise, the rest "
        "with read and shot noise; more favours sigma = 0 over noisy input (default 0.25)",
    )
    p.add_argument(
        "--compand",
        choices=["none", "sqrt"],
        help="jdd presets: the network's working domain. none (default, the paper): linear raw; sqrt: the "
        "square-root-companded raw, which full-integer int8 rounds about evenly in perceptual terms (input and "
        "output stay linear)",
    )
    p.add_argument(
        "--init-from",
        dest="init_from",
        help="start from this checkpoint's weights (fresh optimizer, step 0): the same preset, a blind jdd checkpoint for a --noise-aware run, "
        "or a narrower/shallower model of the same kind, grown into this preset as the same function (new channels and identity blocks); "
        "with --compand, a model of the other working domain (a warm start: the same weights, not the same function)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        help="auto (default): bf16 autocast where the processor computes bf16 natively (weights, optimizer and loss stay fp32); fp32: no autocast",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=threads, default=None, help="CPU threads for torch, 1 to the cores present (default: all cores)")
    p.add_argument(
        "--workers",
        type=number(int, 0, 64),
        default=0,
        help="DataLoader processes that make the next batches while the model trains (default 0: made in this process when needed); "
        "the batches are the same either way. Several processes: start with torchrun (see the README's Training at scale)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval",
        help="evaluate a model on a split",
        description="Full models: S7-layout folder, PSNR/SSIM/CIEDE2000 after the "
        "paper's histogram stretch. JDD models: MSR-layout folder, PSNR linear and sRGB.",
    )
    p.add_argument("--data", required=True, help="S7-layout root (full) or MSR-layout root (jdd)")
    _add_common_model_args(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"], help="scene split (default test; all = every scene)")
    p.add_argument("--pair", default="low_light", choices=["low_light", "mimic"])
    p.add_argument("--msr-camera", dest="msr_camera", default="panasonic", choices=["panasonic", "canon"])
    p.add_argument("--out", type=Path, default=Path("runs/eval"), help="where metrics.json and figures go")
    p.add_argument("--figures", type=number(int, 0), default=4, help="side-by-side PNGs for the first N images")
    p.add_argument("--limit", type=number(int, 1), default=None, help="evaluate only the first N images")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "process",
        help="raw file(s) -> finished image",
        description="Run a raw file (DNG or any Bayer raw LibRaw opens) through DeepISP at full resolution, in exact overlapping tiles. "
        "With several files, the next one is decoded and the previous one written while one is in the network.",
    )
    p.add_argument("inputs", type=Path, nargs="+", help="raw file(s)")
    p.add_argument("-o", "--output", type=Path, default=None, help="output file (.jpg/.png/.tif) or folder (default: input name with .jpg)")
    p.add_argument("--bits", type=int, default=None, choices=[8, 16], help="bit depth (default: 8 for JPEG/PNG, 16 for TIFF)")
    p.add_argument(
        "--backend",
        default="torch",
        choices=PROCESS_BACKENDS,
        help="torch (checkpoint) or exported graphs run with ONNX Runtime / the LiteRT interpreter; for onnx and "
        "tflite, --model is the export's sidecar JSON and the tile plan comes from it (default torch)",
    )
    p.add_argument(
        "--white-balance",
        dest="white_balance",
        default=None,
        choices=WHITE_BALANCE_SOURCES,
        help="full models; default: as the model was trained (camera for as_shot models such as the default, off for the paper's "
        "metadata-free phone-full). camera: the file's as-shot white balance (estimated from the image, with a warning, when the file "
        "has none) and its colour matrix, mapping the camera's colours into the reference sensor's the model was trained on; "
        "estimate: the balance always estimated from the image; off: the raw as is (the paper's metadata-free input)",
    )
    p.add_argument(
        "--linear",
        action="store_true",
        help="jdd models: write the denoised, demosaiced sensor RGB through the sRGB curve only (no white balance or colour "
        "matrix); default: finished with the file's white balance and colour matrix",
    )
    p.add_argument(
        "--max-megapixels",
        dest="max_megapixels",
        type=number(float, 0, 1000, above=True),
        default=MAX_MEGAPIXELS,
        help=f"refuse raw frames larger than this, checked before decoding (default {MAX_MEGAPIXELS:g})",
    )
    _add_common_model_args(p)
    p.set_defaults(func=cmd_process)

    p = sub.add_parser(
        "export",
        help="export a model to TFLite or ONNX graphs for phones (as export/to_tflite.py and export/to_onnx.py)",
        description="deepisp export --format tflite|onnx [options]: the exporter of export/to_<format>.py, installed; "
        "`deepisp export --format tflite --help` lists its options.",
        add_help=False,
    )
    p.add_argument("--format", choices=EXPORT_FORMATS, help="tflite (LiteRT, phone GPU/NPU delegates) or onnx")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("presets", help="list model sizes", description="Named model sizes with parameters and forward FLOPs per pixel.")
    p.set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "export":  # only the exporter takes options this parser does not know
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    if args.command == "process":  # (measured for developing files; set before NumPy and torch load, a user's own setting wins)
        for name, value in PROCESS_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        status = args.func(args)
    except DeepISPError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
