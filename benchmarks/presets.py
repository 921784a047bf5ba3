"""Every model preset side by side: cost, size, host speed per inference path, and measured quality.

    python benchmarks/presets.py [--size 1024] [--repeats 3]

Per preset (deepisp.model.PRESETS, the test-only tiny ones left out), on one --size x --size raw window of
random values (timing does not depend on content) with the weights of a fresh model:
    kFLOP/pixel, parameters
    ms per megapixel of three host paths, pass 1 (demosaic, low-level stage, high-level cells):
        eager    the training forward (two convs per block) on the whole window: the reference
        default  what `deepisp process` runs: channels-last activations, row bands (deepisp.tiling.TorchRunner)
        onnx     the same tile graph as the shipped ONNX export builds it, run by ONNX Runtime's CPU provider
    each path's ratio to eager and effective GFLOP/s as % of this CPU's peak fp32 conv/matmul throughput,
    measured in the same run (benchmarks.latency.machine_peak_gflops)
    quality: the rows of benchmarks/results/quality.json for the files in deepisp/weights whose network is this
    preset (run benchmarks/quality.py first): Kodak24 PSNR / mean CIEDE2000 for full models, linear PSNR at sigma 0 / 5 / 10 for JDD models.
Writes benchmarks/results/presets.json and presets.md (the README's table), and presets_pareto.png: quality
against kFLOP/pixel, one point per shipped model, the best classical method of quality.json as a line.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import RESULTS, add_out, parser, pyplot, save_plot, timings, write_result
from benchmarks.latency import machine_peak_gflops, onnx_case, torch_case
from deepisp.checkpoint import DEFAULT_CHECKPOINT, load_model
from deepisp.export.backends import BACKENDS
from deepisp.model import PRESETS, DeepISP, ModelConfig, count_parameters, flops_per_pixel
from deepisp.options import ExportFormat
from deepisp.tiling import TorchRunner

PATHS = ("eager", "default", "onnx")


def eager_pass(model: DeepISP, size: int) -> Callable[[], object]:
    return torch_case(model, size, torch.get_num_threads())


def default_pass(model: DeepISP, size: int) -> Callable[[], object]:
    runner, mosaic = TorchRunner(model), torch.rand(size, size)
    return lambda: runner.low_level(mosaic)


def onnx_pass(model: DeepISP, size: int) -> Callable[[], object]:
    """The tile graph built by the shipped ONNX exporter (`deepisp export --format onnx`: torch.onnx's dynamo
    exporter, symbolic H and W), so what is timed is the graph that ships."""
    onnx = BACKENDS[ExportFormat.ONNX]
    built = onnx.exporter_class()(model, (size, size)).build(onnx.variants[0])
    return onnx_case(built.graphs["tile"], size, torch.get_num_threads())


def rows_by_file(rows: dict, files) -> dict[str, dict]:
    """quality.json mean rows ({label: row}, labels "DeepISP <preset> (<file>, <n> steps)") keyed by the file of
    `files` each label names; classical rows and files without a row are left out."""
    return {file: row for name, row in rows.items() for file in files if f"({file}," in name}


def shipped_quality(quality: dict, preset: ModelConfig, shipped: dict[str, ModelConfig]) -> str:
    """The quality.json rows of the `shipped` files (name -> config) whose network is this preset, any
    white-balance or exposure contract, blind or noise-aware, linear or companded ("" if none)."""
    full = rows_by_file(quality.get("full", {}).get("mean", {}), shipped)
    jdd = rows_by_file(quality.get("jdd", {}).get("mean", {}), shipped)
    rows = []
    contract = {
        "white_balance": preset.white_balance,
        "exposure": preset.exposure,
        "noise_input": preset.noise_input,
        "compand": preset.compand,
    }
    for file in (f for f, cfg in shipped.items() if replace(cfg, **contract) == preset):
        if file in full:
            rows.append(f"{full[file]['psnr']:.2f} dB / ΔE {full[file]['ciede2000']:.2f} ({file})")
        if file in jdd:
            sigmas = [s for s in ("0", "5", "10") if s in jdd[file]]
            rows.append(" / ".join(f"{jdd[file][s]['psnr_linear']:.2f}" for s in sigmas) + f" dB at σ {'/'.join(sigmas)} ({file})")
    return "; ".join(rows)


def measure(cfg: ModelConfig, size: int, repeats: int, peak: float) -> dict:
    torch.manual_seed(0)
    model = DeepISP(cfg).eval()
    flops = flops_per_pixel(cfg)
    row = {"kflop_per_pixel": flops / 1e3, "parameters": count_parameters(model), "paths": {}}
    for path, make in zip(PATHS, (eager_pass, default_pass, onnx_pass)):
        seconds = statistics.median(timings(make(model, size), repeats, budget_s=60))
        row["paths"][path] = {"ms_per_mp": 1e3 * seconds / (size * size / 1e6), "gflops": flops * size * size / seconds / 1e9}
    for r in row["paths"].values():
        r["vs_eager"] = row["paths"]["eager"]["ms_per_mp"] / r["ms_per_mp"]
        r["fraction_of_peak"] = r["gflops"] / peak
    return row


def fill_quality(payload: dict, out: Path) -> None:
    """Set each preset row's quality column from benchmarks/results/quality.json (run benchmarks/quality.py first);
    the quality-against-cost plot goes beside `out`."""
    quality_file = RESULTS / "quality.json"
    quality = json.loads(quality_file.read_text()) if quality_file.is_file() else {}
    shipped = {path.name: load_model(path)[0].cfg for path in sorted(DEFAULT_CHECKPOINT.parent.glob("*.pt"))}
    for name, row in payload["presets"].items():
        row["quality"] = shipped_quality(quality, PRESETS[name], shipped)
    if quality:
        pareto_plot(quality, shipped, out.with_name("presets_pareto.png"))


def pareto_plot(quality: dict, shipped: dict[str, ModelConfig], path: Path) -> None:
    """Kodak24 quality against cost: full ISP (PSNR after histogram stretch) and JDD (linear PSNR at sigma 0 and 5),
    one point per shipped model found in `quality` (quality.json), the best classical row of each panel as a
    dashed line (classical methods are not costed in FLOPs)."""
    plt = pyplot()

    def classical(rows: dict, value) -> tuple[str, float]:
        return max(((name, value(row)) for name, row in rows.items() if not name.startswith("DeepISP")), key=lambda nv: nv[1])

    panels = []
    if "full" in quality:
        panels.append(("full ISP (S7-layout Kodak24)", "PSNR (dB)", quality["full"]["mean"], {"": lambda r: r["psnr"]}))
    if "jdd" in quality:
        at_sigma = {f"σ={s}": (lambda r, s=s: r[s]["psnr_linear"]) for s in ("0", "5") if s in next(iter(quality["jdd"]["mean"].values()))}
        panels.append(("joint denoise + demosaic (Kodak24)", "linear PSNR (dB)", quality["jdd"]["mean"], at_sigma))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (title, ylabel, rows, series) in zip(axes[0], panels):
        for (label, value), colour in zip(series.items(), ("tab:blue", "tab:orange")):
            for file, row in rows_by_file(rows, shipped).items():
                x = flops_per_pixel(shipped[file]) / 1e3
                ax.scatter(x, value(row), color=colour)
                label_text = f"{file.removeprefix('deepisp_').removesuffix('.pt')} {label}".strip()
                ax.annotate(label_text, (x, value(row)), textcoords="offset points", xytext=(5, 4), fontsize=8)
            name, best = classical(rows, value)
            ax.axhline(best, color=colour, linestyle="--", linewidth=1)
            where = {"xycoords": ("axes fraction", "data"), "xytext": (4, -11), "textcoords": "offset points"}
            ax.annotate(f"best classical {label}".strip() + f": {name}", (0, best), **where, fontsize=7, color=colour)
        ax.set_xscale("log")
        ax.set_xlabel("kFLOP per pixel (log)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    save_plot(fig, path)


def markdown_table(payload: dict) -> str:
    meta = payload["meta"]
    head = " | ".join(f"{p} ms/MP (vs eager, % of peak)" for p in PATHS)
    lines = [
        f"One {meta['size']}x{meta['size']} raw window through pass 1 (demosaic, low-level stage, high-level cells), host CPU, "
        f"{meta['threads']} threads, peak {meta['peak_gflops']:.0f} GFLOP/s measured in the same run (`benchmarks/presets.py`, "
        "median of a few runs). Quality from `benchmarks/results/quality.json` (Kodak24).",
        "",
        f"| preset | kFLOP/pixel | parameters | {head} | quality of the shipped model |",
        "|---|---|---|" + "---|" * len(PATHS) + "---|",
    ]
    for name, r in payload["presets"].items():
        cells = " | ".join(f"{p['ms_per_mp']:.0f} ({p['vs_eager']:.2f}x, {100 * p['fraction_of_peak']:.0f}%)" for p in r["paths"].values())
        lines.append(f"| `{name}` | {r['kflop_per_pixel']:.1f} | {r['parameters']:,} | {cells} | {r['quality'] or '-'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--size", type=int, default=1024, help="raw window side in pixels (default 1024)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per path (default 3)")
    ap.add_argument("--presets", nargs="+", default=[n for n in PRESETS if not n.startswith("tiny")], choices=list(PRESETS))
    add_out(ap, "presets.json")
    ap.add_argument("--quality-only", action="store_true", help="keep the timings in --out, refresh only the quality column")
    args = ap.parse_args()
    if args.quality_only:
        payload = json.loads(args.out.read_text())
        fill_quality(payload, args.out)
        write(payload, args.out)
        return 0
    threads = torch.get_num_threads()
    peak = machine_peak_gflops(threads)
    presets = {}
    for name in args.presets:
        presets[name] = r = measure(PRESETS[name], args.size, args.repeats, peak)
        print(
            f"{name:<11} {r['kflop_per_pixel']:7.1f} kFLOP/px  "
            + "  ".join(f"{p} {v['ms_per_mp']:6.0f} ms/MP x{v['vs_eager']:.2f} {100 * v['fraction_of_peak']:3.0f}%" for p, v in r["paths"].items()),
            flush=True,
        )
    payload = {"meta": {"size": args.size, "threads": threads, "peak_gflops": peak, "torch": torch.__version__}, "presets": presets}
    fill_quality(payload, args.out)
    write(payload, args.out)
    return 0


def write(payload: dict, out: Path) -> None:
    table = write_result(out, payload, markdown_table(payload))
    print(f"wrote {out} and {table}")


if __name__ == "__main__":
    sys.exit(main())
