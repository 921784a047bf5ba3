"""One measured run of benchmarks/process_latency.py, in a process of its own so that its peak memory is
that run's alone.

    python -m benchmarks.process_latency_child RAW OUT MODEL TILE MODE BATCH

Loads MODEL (a checkpoint, "default" for the shipped one, or an exported sidecar with MODE exported), then
times one run of MODE (model loading not included) and prints one JSON line: {"seconds", "peak_rss_mb"}.
Peak RSS is VmHWM of /proc/self/status, which exec resets; getrusage's ru_maxrss would carry over the parent's
peak. Modes (process_latency.py's paths):
    default        `deepisp process` on RAW: --tile windows in row bands, channels-last activations
    eager          the same on the training forward (two convs per block), whole windows (no row bands)
    exported       `deepisp process` through the exported tile runner of the sidecar MODEL
    one_at_a_time  BATCH copies of RAW, each decoded, run and written before the next
    pipelined      BATCH copies of RAW through deepisp.process.process_files
    full_frame     the untiled training forward on the whole mosaic
    network        the default path's network alone (deepisp.tiling.run_tiled on the decoded, conditioned
                   mosaic), also reporting its convolutions' seconds (torch.profiler) and the pixels its
                   windows compute
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

import deepisp.tiling
from benchmarks.common import parser, timed
from deepisp.checkpoint import load_model
from deepisp.conditioning import model_input
from deepisp.model import DeepISP
from deepisp.process import process_file, process_files
from deepisp.raw import read_raw
from deepisp.runtime import ExportedModel
from deepisp.tile_plan import frame_plan
from deepisp.tiling import run_full_frame, run_tiled

MODES = ("default", "eager", "exported", "one_at_a_time", "pipelined", "full_frame", "network")


def use_training_forward(model: DeepISP) -> None:
    """Make `deepisp process` run `model` as the host did before it was tuned (process_latency.py's
    reference): the training forward's two convs per block (NCHW) instead of LowLevelStage.infer's channels-last ones, on
    whole windows instead of row bands."""

    def two_conv(rgb: torch.Tensor, stage: torch.nn.Module = model.low_level) -> tuple[torch.Tensor | None, torch.Tensor]:
        features, image = stage(rgb)
        return (None if features is None else torch.cat([features, image], 1)), image

    model.low_level.infer = torch.no_grad()(two_conv)
    deepisp.tiling.BAND_PIXELS = 1 << 62


def load(model: str, mode: str) -> DeepISP | ExportedModel:
    if mode == "exported":
        return ExportedModel(model)
    net = load_model(None if model == "default" else model)[0]
    if mode == "eager":
        use_training_forward(net)
    return net


def run(model: DeepISP | ExportedModel, mode: str, raw: Path, out: Path, tile: int | None, batch: int) -> None:
    if mode in ("default", "eager", "exported"):
        process_file(model, raw, out, tile=tile, progress=False)
    elif mode in ("one_at_a_time", "pipelined"):
        jobs = [(raw, out.with_name(f"out{i}.jpg")) for i in range(batch)]
        if mode == "pipelined":
            list(process_files(model, jobs, tile=tile, progress=False))
        else:
            for source, target in jobs:
                process_file(model, source, target, tile=tile, progress=False)
    else:
        run_full_frame(model, torch.from_numpy(read_raw(raw).mosaic))


def network(model: DeepISP, raw: Path, tile: int | None) -> dict:
    """`run_tiled` alone on the raw's model input, timed with its convolutions' share: {"seconds",
    "conv_seconds", "computed_pixels"}."""
    mosaic = torch.from_numpy(model_input(read_raw(raw), model.cfg)[0])
    h, w = mosaic.shape
    rows, cols = frame_plan(h, w, model.cfg, tile)  # what run_tiled runs
    run_tiled(model, mosaic, tile)  # warm-up: the first run pays for allocation and kernel set-up
    with torch.profiler.profile() as prof:
        _, seconds = timed(run_tiled, model, mosaic, tile)
    conv_us = sum(e.self_cpu_time_total for e in prof.key_averages() if "convolution" in e.key)
    return {"seconds": seconds, "conv_seconds": conv_us / 1e6, "computed_pixels": rows.size * len(rows.spans) * cols.size * len(cols.spans)}


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def main(argv: Sequence[str] | None = None) -> None:
    ap = parser(__doc__)
    ap.add_argument("raw", type=Path)
    ap.add_argument("out", type=Path, help="the output image (one_at_a_time, pipelined: out0.jpg ... beside it)")
    ap.add_argument("model")
    ap.add_argument("tile", type=lambda v: None if v == "auto" else int(v), help="core size, or auto (deepisp process's own choice)")
    ap.add_argument("mode", choices=MODES)
    ap.add_argument("batch", type=int, help="files in the one_at_a_time and pipelined modes")
    args = ap.parse_args(argv)
    model = load(args.model, args.mode)
    if args.mode == "network":
        print(json.dumps({**network(model, args.raw, args.tile), "peak_rss_mb": peak_rss_mb()}))
        return
    _, seconds = timed(run, model, args.mode, args.raw, args.out, args.tile, args.batch)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
