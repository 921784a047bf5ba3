"""`deepisp process` wall time and peak memory on real and full-size frames, on the host CPU.

    python benchmarks/process_latency.py [--model CKPT] [--tile 1024] [--skip-12mp] [--exported out/export]

Cases (each path in a fresh subprocess, benchmarks/process_latency_child.py, so peak RSS is that run's alone):
    colorchart  ../shared/data/raw/colorchart.dng (real sensor data, 1734x1156)
    12mp        a 3024x4032 DNG (the S7's frame size) written from a Kodak photo by the synthetic pipeline
Paths per case:
    default     `deepisp process` as users run it: --tile windows run in row bands, each block's two convs
                in channels-last memory (deepisp.model.LowLevelStage.infer, deepisp.tiling.low_level_in_bands)
    eager       the host path before it was tuned, the reference: the network's training forward (two convs
                per block) on whole 448-px-tile windows (no row bands)
    full_frame  the untiled training forward on the whole mosaic (where it fits): what tiling saves
    network     the default path's network alone (no decode, no write), with its convolutions' share:
                their effective GFLOP/s (the pixels the windows compute) against the peak at the model's width
Case `colorchart x8`, eight files in one `deepisp process` call on the default path:
    one_at_a_time  decode, network, write, then the next file (the reference for this case)
    pipelined      deepisp.process.process_files: the next file decoded and the last one written while one
                   is in the network
Every path is reported as a ratio to its case's reference, and as effective GFLOP/s (the model's FLOPs per output pixel x
pixels / wall time, raw decode and image write included, tile overlap counted as waste) against the peak
fp32 conv throughput this CPU shows in the same run (benchmarks.latency.machine_peak_gflops), and against
the peak of one conv at the model's own width (benchmarks.latency.width_peak_gflops: the most a network
that narrow can get from this CPU's conv kernels).
With --exported, every exported variant there (deepisp_*.json sidecars) also processes each case
through the same tile runner a phone follows (`deepisp process --backend onnx|tflite`); int16x8 is left
out unless --with-int16 (TFLite's int16 reference kernels take minutes per 12 MP frame).
End to end against LibRaw (each case): `deepisp process RAW` with no flags and rawpy's postprocess + the same
JPEG write (benchmarks/libraw_develop.py), timed as whole processes, quiet and with one CPU-bound process
beside them; the import time of `deepisp process` (python -X importtime) and the wall time of `deepisp --help`.
Writes benchmarks/results/process_latency.json and .md (the README's table).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import add_out, missing_shared, parser, write_result
from benchmarks.latency import machine_peak_gflops, width_peak_gflops
from deepisp.checkpoint import load_model
from deepisp.data import SHARED_DATA as SHARED
from deepisp.model import conv_flops_per_pixel, flops_per_pixel
from deepisp.options import PROCESS_ENVIRONMENT

EAGER_TILE = 448  # the host default tile before row bands
BATCH = 8  # files in the `colorchart x8` case
REPEATS = 3  # whole-process runs per end-to-end row (the median is reported)


def run_case(raw: Path, model: str, tile: int | None, mode: str, out_dir: Path) -> dict:
    """One path on one case in a fresh process (benchmarks/process_latency_child.py) with the `deepisp` command's
    environment: its seconds and peak RSS, or the last line of what it said on failing."""
    tile_arg = "auto" if tile is None else str(tile)
    child = [sys.executable, "-m", "benchmarks.process_latency_child", str(raw), str(out_dir / "out.jpg"), model, tile_arg, mode, str(BATCH)]
    r = subprocess.run(child, capture_output=True, text=True, env={**PROCESS_ENVIRONMENT, **os.environ})
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def whole_process(cmd: list[str], busy: bool = False) -> float:
    """Median wall seconds of `cmd` run as a fresh process REPEATS times (interpreter start, imports, decode,
    work, write: what a user waits for); with `busy`, while one CPU-bound process (`yes`) runs beside it."""
    hog = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) if busy else None
    try:
        seconds = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            seconds.append(time.perf_counter() - t0)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return statistics.median(seconds)


def import_seconds(cmd: list[str]) -> float:
    """Seconds `cmd` (a `python -m ...` command) spends importing modules: the sum of the top-level imports'
    cumulative times that `python -X importtime` reports."""
    r = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], check=True, capture_output=True, text=True)
    fields = [line.split("|") for line in r.stderr.splitlines() if line.startswith("import time:") and "|" in line]
    return sum(int(f[1]) for f in fields if f[1].strip().isdigit() and not f[2].startswith("  ")) / 1e6


def end_to_end(raw: Path, out_dir: Path, model: str) -> dict:
    """`deepisp process RAW` with no flags against rawpy's postprocess + the same JPEG write, as whole processes,
    quiet and with one CPU-bound process beside them; and the import time of `deepisp process`."""
    deepisp = [sys.executable, "-m", "deepisp", "process", str(raw), "-o", str(out_dir / "deepisp.jpg")]
    deepisp += [] if model == "default" else ["--model", model]
    libraw = [sys.executable, "-m", "benchmarks.libraw_develop", str(raw), str(out_dir / "libraw.jpg")]
    row = {
        "deepisp_seconds": whole_process(deepisp),
        "libraw_seconds": whole_process(libraw),
        "deepisp_busy_seconds": whole_process(deepisp, busy=True),
        "libraw_busy_seconds": whole_process(libraw, busy=True),
        "deepisp_import_seconds": import_seconds(deepisp),
    }
    row["vs_libraw"] = row["deepisp_seconds"] / row["libraw_seconds"]
    row["busy_vs_quiet"] = row["deepisp_busy_seconds"] / row["deepisp_seconds"]
    return row


def read_raw_size(raw: Path) -> int:
    """Pixels of the raw's mosaic."""
    from deepisp.raw import read_raw

    return int(read_raw(raw).mosaic.size)


def write_12mp_dng(path: Path) -> None:
    """A 3024x4032 S7-size DNG rendered from a Kodak photo through the synthetic raw pipeline."""
    from PIL import Image

    from deepisp.data.synthetic import make_synthetic

    photo = SHARED / "photos" / "kodak24" / "kodim05.png"
    big = path.parent / "kodim05_12mp.png"
    Image.open(photo).convert("RGB").resize((4032, 3024), Image.BICUBIC).save(big)
    scene = make_synthetic([big], path.parent / "s7", progress=False)[0]
    (scene / "short_exposure.dng").rename(path)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--model", default="default", help="checkpoint (default: the shipped model)")
    ap.add_argument("--tile", type=int, default=None, help="PyTorch tile (default: deepisp process's own choice); exported variants use their own plan")
    ap.add_argument("--skip-12mp", action="store_true", help="only the colorchart case")
    ap.add_argument("--exported", type=Path, default=None, help="also run every exported variant in this folder")
    ap.add_argument("--with-int16", action="store_true", help="include int16x8 variants (slow reference kernels)")
    add_out(ap, "process_latency.json")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"error: {missing_shared(SHARED)}")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = {"colorchart": SHARED / "raw" / "colorchart.dng"}
        if not args.skip_12mp:
            cases["12mp"] = tmp / "frame_12mp.dng"
            write_12mp_dng(cases["12mp"])
        sidecars = sorted(args.exported.glob("deepisp_*.json")) if args.exported else []
        sidecars = [p for p in sidecars if args.with_int16 or "int16" not in p.name]
        threads = torch.get_num_threads()
        cfg = load_model(None if args.model == "default" else args.model)[0].cfg
        peak, width_peak = machine_peak_gflops(threads), width_peak_gflops(cfg, threads)
        print(f"peak fp32 conv/matmul throughput, {threads} threads: {peak:.1f} GFLOP/s; one {cfg.width}-wide conv: {width_peak:.1f} GFLOP/s")
        flops, conv_flops = flops_per_pixel(cfg), conv_flops_per_pixel(cfg)
        for name, raw in [*cases.items(), (f"colorchart x{BATCH}", cases["colorchart"])]:
            batch = name.endswith(f" x{BATCH}")
            pixels = read_raw_size(raw) * (BATCH if batch else 1)
            if batch:
                runs = {mode: run_case(raw, args.model, args.tile, mode, tmp) for mode in ("one_at_a_time", "pipelined")}
            else:
                runs = {"eager": run_case(raw, args.model, EAGER_TILE, "eager", tmp)}
                runs.update({mode: run_case(raw, args.model, args.tile, mode, tmp) for mode in ("default", "full_frame", "network")})
                runs.update({p.stem: run_case(raw, str(p), args.tile, "exported", tmp) for p in sidecars})
            reference = runs["one_at_a_time" if batch else "eager"]
            for run, r in runs.items():
                if "seconds" in r:  # (the network alone is not the reference's work: no ratio)
                    r["vs_reference"] = reference["seconds"] / r["seconds"] if "seconds" in reference and run != "network" else None
                    r["fraction_of_peak"] = flops * pixels / r["seconds"] / 1e9 / peak
                    r["fraction_of_width_peak"] = flops * pixels / r["seconds"] / 1e9 / width_peak
                if "conv_seconds" in r:  # the network alone: its convolutions' share at the model's width
                    r["conv_fraction_of_width_peak"] = conv_flops * r["computed_pixels"] / r["conv_seconds"] / 1e9 / width_peak
            results[name] = {"megapixels": pixels / 1e6, "reference": "one_at_a_time" if batch else "eager", "runs": runs}
            for run, r in runs.items():
                if "error" in r:
                    print(f"{name:<11} {run:<20} error: {r['error']}")
                    continue
                print(
                    f"{name:<11} {run:<20} {r['seconds']:7.2f} s  {r['seconds'] / (pixels / 1e6) * 1000:6.0f} ms/MP  "
                    f"x{r['vs_reference'] or float('nan'):.2f} vs {results[name]['reference']}  {100 * r['fraction_of_peak']:3.0f}% of peak "
                    f"({100 * r['fraction_of_width_peak']:3.0f}% at width {cfg.width})  "
                    f"peak RSS {r['peak_rss_mb']:6.0f} MB"
                )
        e2e = {name: end_to_end(raw, tmp, args.model) for name, raw in cases.items()}
        help_seconds = whole_process([sys.executable, "-m", "deepisp", "--help"])
        for name, row in e2e.items():
            print(
                f"{name:<11} end to end: deepisp {row['deepisp_seconds']:.2f} s, rawpy {row['libraw_seconds']:.2f} s "
                f"(x{row['vs_libraw']:.2f}); one busy process beside: {row['deepisp_busy_seconds']:.2f} s "
                f"(x{row['busy_vs_quiet']:.2f} of quiet), rawpy {row['libraw_busy_seconds']:.2f} s; imports {row['deepisp_import_seconds']:.2f} s"
            )
        print(f"deepisp --help: {help_seconds:.2f} s")
    payload = {
        "meta": {
            "tile": args.tile,
            "model": args.model,
            "threads": threads,
            "peak_gflops": peak,
            "width": cfg.width,
            "width_peak_gflops": width_peak,
            "model_flops_per_pixel": flops,
            "torch": torch.__version__,
        },
        "results": results,
        "end_to_end": {"cases": e2e, "help_seconds": help_seconds},
    }
    table = write_result(args.out, payload, markdown_table(payload))
    print(f"wrote {args.out} and {table}")


def markdown_table(payload: dict) -> str:
    meta = payload["meta"]
    lines = [
        f"`deepisp process` end to end (raw decode, network, JPEG write), host CPU, {meta['threads']} threads, "
        f"peak {meta['peak_gflops']:.0f} GFLOP/s measured in the same run ({meta['width_peak_gflops']:.0f} GFLOP/s for one "
        f"{meta['width']}-wide conv, the model's width); model {meta['model']} ({meta['model_flops_per_pixel'] / 1e3:.1f} kFLOP/pixel).",
        "",
        f"| frame | path | seconds | ms per MP | vs reference | % of peak | % of peak at width {meta['width']} | convs alone: % of that | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case, result in payload["results"].items():
        for path, r in result["runs"].items():
            if "error" in r:
                lines.append(f"| {case} | {path} | error: {r['error']} | | | | | | |")
                continue
            vs = f"{r['vs_reference']:.2f}x vs {result['reference']}" if r.get("vs_reference") else "-"
            conv = f"{100 * r['conv_fraction_of_width_peak']:.0f}%" if "conv_fraction_of_width_peak" in r else "-"
            lines.append(
                f"| {case} ({result['megapixels']:.1f} MP) | {path} | {r['seconds']:.1f} | "
                f"{1000 * r['seconds'] / result['megapixels']:.0f} | {vs} | {100 * r['fraction_of_peak']:.0f}% | "
                f"{100 * r['fraction_of_width_peak']:.0f}% | {conv} | {r['peak_rss_mb']:.0f} |"
            )
    e2e = payload["end_to_end"]
    lines += [
        "",
        f"Against LibRaw, as whole processes (interpreter start, imports, decode, work, JPEG write; median of {REPEATS}): "
        "`deepisp process RAW` with no flags against rawpy's `postprocess(use_camera_wb=True)` + the same JPEG write "
        "(`benchmarks/libraw_develop.py`), quiet and with one CPU-bound process (`yes`) beside them. "
        f"`deepisp --help`: {e2e['help_seconds']:.2f} s.",
        "",
        "| frame | deepisp (s) | rawpy (s) | deepisp / rawpy | deepisp, one busy process (s) | busy / quiet | rawpy, one busy (s) | deepisp imports (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, r in e2e["cases"].items():
        lines.append(
            f"| {case} | {r['deepisp_seconds']:.2f} | {r['libraw_seconds']:.2f} | {r['vs_libraw']:.2f}x | {r['deepisp_busy_seconds']:.2f} | "
            f"{r['busy_vs_quiet']:.2f}x | {r['libraw_busy_seconds']:.2f} | {r['deepisp_import_seconds']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
