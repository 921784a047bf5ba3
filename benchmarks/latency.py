"""Host latency of one tile graph per backend and variant, on this CPU, in one run.

    python benchmarks/latency.py --exported out/demo/export [--size 1024] [--threads 1 2]

For every exported variant in --exported (its deepisp_*.json sidecars) and PyTorch eager fp32 on the
same model: pass 1 (the tile graph: demosaic + low-level + high-level stage) on one size x size raw
window, resized from the exported window where needed. TFLite runs in the LiteRT interpreter with its
default XNNPACK delegate; ONNX in ONNX Runtime's CPU provider. Reported per case: median / min / max
ms over the repeats, MPix/s, throughput relative to PyTorch eager at the same thread count, and the
achieved GFLOP/s (model FLOPs per pixel x throughput) against two peaks measured in the same run: this
machine's (the best of a large fp32 matmul and a 64-channel channels-last 3x3 conv in PyTorch) and the peak
at the model's own width (`width_peak_gflops`: one width->width 3x3 conv, what a network that narrow can
reach at best; on this CPU 24 channels measured 80-100% of the 64-channel peak).

Writes benchmarks/results/latency.json, latency.md, and latency_pareto.png: accuracy against float (from
benchmarks/results/accuracy.json, when benchmarks/accuracy.py has run on the same export) against latency
at the highest thread count, one point per variant.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import add_out, fail, parser, pyplot, save_plot, timings, write_result
from deepisp.checkpoint import DEFAULT_CHECKPOINT, load_model
from deepisp.errors import DeepISPError
from deepisp.export.backends import BACKENDS
from deepisp.export.gate import reference_model
from deepisp.export.graph_io import TileIO
from deepisp.export.graphs import TileGraph
from deepisp.export.metadata import ExportMetadata
from deepisp.model import DeepISP, ModelConfig, flops_per_pixel
from deepisp.options import ExportFormat, Mode
from deepisp.runtime import tflite_interpreter_class


def machine_peak_gflops(threads: int) -> float:
    """Best fp32 GFLOP/s of a 2048^3 matmul and a 64->64 3x3 conv (channels-last, 256x256) in PyTorch."""
    torch.set_num_threads(threads)
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    mm = 2 * 2048**3 / min(timings(lambda: a @ b, 5, 10))
    x = torch.rand(1, 64, 256, 256).to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    with torch.no_grad():
        cv = 2 * 9 * 64 * 64 * 256 * 256 / min(timings(lambda: conv(x), 5, 10))
    return max(mm, cv) / 1e9


def width_peak_gflops(cfg: ModelConfig, threads: int, size: int = 256) -> float:
    """Best fp32 GFLOP/s of one of the model's low-level convs (width -> width, 3x3) on a size x size
    working-resolution input in PyTorch, NCHW or channels-last, whichever is faster here."""
    torch.set_num_threads(threads)
    conv = torch.nn.Conv2d(cfg.width, cfg.width, 3, padding=1)
    best = 0.0
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.rand(1, cfg.width, size, size).contiguous(memory_format=layout)
        c = conv.to(memory_format=layout)
        with torch.no_grad():
            best = max(best, 2 * 9 * cfg.width**2 * size**2 / min(timings(lambda c=c, x=x: c(x), 5, 10)))
    return best / 1e9


def tile_flops(cfg: ModelConfig) -> float:
    """FLOPs per pixel of the tile graph: the network minus the per-pixel colour transform (pass 2)."""
    return flops_per_pixel(cfg) - (2 * 3 * 10 if cfg.mode == Mode.FULL else 0)


def torch_case(model: DeepISP, size: int, threads: int) -> Callable[[], None]:
    torch.set_num_threads(threads)
    graph = TileGraph(model).eval()
    x = torch.rand(1, 1, size, size)

    def run():
        with torch.no_grad():
            graph(x)

    return run


def tflite_case(path: Path, size: int, threads: int) -> Callable[[], object]:
    it = tflite_interpreter_class()(model_path=str(path), num_threads=threads)
    runner = it.get_signature_runner()
    x = np.random.rand(1, size, size, 1).astype(np.float32)
    return lambda: runner(**{TileIO.MOSAIC: x})


def onnx_case(graph: Path | bytes, size: int, threads: int) -> Callable[[], object]:
    """ONNX Runtime on a tile graph, given as a file or as serialized bytes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), opts, providers=["CPUExecutionProvider"])
    x = np.random.rand(1, 1, size, size).astype(np.float32)
    return lambda: session.run(None, {TileIO.MOSAIC: x})


# How each export backend's tile graph is timed.
CASES = {ExportFormat.TFLITE.value: tflite_case, ExportFormat.ONNX.value: onnx_case}


def pareto_plot(rows: list[dict], accuracy: dict, path: Path, cap_db: float = 100.0) -> None:
    """PSNR vs float (capped at `cap_db`: fp32 is round-off) against median tile latency, one point per variant."""
    plt = pyplot()
    threads = max(r["threads"] for r in rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        name = BACKENDS[r["backend"]].label(r["variant"]) if r["backend"] in BACKENDS else r["variant"]
        acc = accuracy["variants"].get(name)  # benchmarks/accuracy.py names ONNX variants "onnx-<variant>" too
        if r["threads"] != threads or (acc is None and r["backend"] != "torch"):
            continue
        db = cap_db if r["backend"] == "torch" else min(cap_db, acc["tiled"]["psnr"])
        ax.scatter(r["median_ms"], db, s=40)
        ax.annotate(name if r["backend"] != "torch" else "torch eager (reference)", (r["median_ms"], db), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"median ms per tile graph run ({threads} threads, host CPU)")
    ax.set_ylabel(f"PSNR vs float model (dB, capped at {cap_db:.0f})")
    ax.set_title("DeepISP exported variants: accuracy against latency")
    ax.grid(True, alpha=0.3)
    save_plot(fig, path)


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--exported", type=Path, required=True, help="folder with the export's deepisp_*.json sidecars")
    ap.add_argument("--model", type=Path, default=None, help="the checkpoint they were exported from (default: shipped model)")
    ap.add_argument("--size", type=int, default=1024, help="tile side in pixels (default 1024)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=30.0, help="stop repeating a case after this many seconds")
    add_out(ap, "latency.json")
    args = ap.parse_args()
    sidecars = sorted(args.exported.glob("deepisp_*.json"))
    if not sidecars:
        return fail(f"no deepisp_*.json sidecars in {args.exported}: run export/to_tflite.py / to_onnx.py first")
    try:
        exported = [ExportMetadata.read(sidecar) for sidecar in sidecars]
        model = reference_model(load_model(args.model)[0], exported)
    except DeepISPError as e:
        return fail(e)
    flops = tile_flops(model.cfg)
    mpix = args.size**2 / 1e6
    rows = []
    peaks, width_peaks = {}, {}
    for threads in args.threads:
        peaks[threads] = machine_peak_gflops(threads)
        width_peaks[threads] = width_peak_gflops(model.cfg, threads)
        cases = [("torch", "fp32 eager", torch_case(model, args.size, threads))]
        for meta in exported:
            make = CASES[meta.backend]
            cases.append((meta.backend, meta.variant, make(args.exported / meta.tile_graph, args.size, threads)))
        baseline = None
        for backend, variant, run in cases:
            t = timings(run, args.repeats, args.budget)
            med = statistics.median(t)
            baseline = baseline or med
            row = {
                "backend": backend,
                "variant": variant,
                "threads": threads,
                "runs": len(t),
                "median_ms": med * 1e3,
                "min_ms": min(t) * 1e3,
                "max_ms": max(t) * 1e3,
                "mpix_per_s": mpix / med,
                "vs_torch_eager": baseline / med,
                "gflops": flops * args.size**2 / med / 1e9,
            }
            row["fraction_of_peak"] = row["gflops"] / peaks[threads]
            row["fraction_of_width_peak"] = row["gflops"] / width_peaks[threads]
            rows.append(row)
            print(
                f"{backend:<6} {variant:<11} {threads} thr  {row['median_ms']:9.1f} ms (min {row['min_ms']:.1f}, max {row['max_ms']:.1f}, "
                f"n={len(t)})  {row['mpix_per_s']:6.2f} MPix/s  x{row['vs_torch_eager']:.2f} vs torch  "
                f"{row['gflops']:6.1f} GFLOP/s = {100 * row['fraction_of_peak']:.0f}% of peak, "
                f"{100 * row['fraction_of_width_peak']:.0f}% at width {model.cfg.width}",
                flush=True,
            )
    meta = {
        "size": args.size,
        "model": str(args.model or DEFAULT_CHECKPOINT),
        "tile_graph_kflop_per_pixel": flops / 1e3,
        "peak_gflops": peaks,
        "width_peak_gflops": width_peaks,
        "torch": torch.__version__,
        "exported": str(args.exported),
    }
    report = {"meta": meta, "results": rows}
    table = write_result(args.out, report, markdown_table(report, model.cfg.width))
    accuracy = args.out.parent / "accuracy.json"
    if accuracy.is_file():
        pareto_plot(rows, json.loads(accuracy.read_text()), args.out.with_name("latency_pareto.png"))
    print(f"wrote {args.out} and {table}" + (" and latency_pareto.png" if accuracy.is_file() else ""))
    return 0


def markdown_table(report: dict, width: int) -> str:
    """The README's table of latency.json's `report`, for a model `width` channels wide."""
    meta = report["meta"]
    size, peaks, width_peaks = meta["size"], meta["peak_gflops"], meta["width_peak_gflops"]
    lines = [
        f"Tile graph on one {size}x{size} raw window, host CPU "
        f"({', '.join(f'{t} thr peak {p:.0f}, at width {width} {width_peaks[t]:.0f} GFLOP/s' for t, p in peaks.items())}).",
        "",
        f"| backend | variant | threads | median ms | min–max ms | MPix/s | vs torch eager | GFLOP/s | % of peak | % of peak at width {width} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['backend']} | {r['variant']} | {r['threads']} | {r['median_ms']:.1f} | {r['min_ms']:.1f}–{r['max_ms']:.1f} | "
        f"{r['mpix_per_s']:.2f} | {r['vs_torch_eager']:.2f} | {r['gflops']:.1f} | {100 * r['fraction_of_peak']:.0f}% | "
        f"{100 * r['fraction_of_width_peak']:.0f}% |"
        for r in report["results"]
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
