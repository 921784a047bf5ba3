"""Result tables: one row per variant x delegate x threads, written as JSON, CSV and Markdown.

Also owns the 12 MP frame-time estimate: a frame is processed as `windows_per_frame` tile-graph calls, so
frame time ~= mean latency per window x windows. The count comes from the export's sidecar
(`deepisp_<q>.json`, whose "tile_graph" names the model) when there is one; otherwise it is estimated as
ceil(H/S_h) * ceil(W/S_w) from the model's [1,S_h,S_w,1] input and --frame, which ignores the overlap
(halo) between windows and so undercounts a little. The head/apply graphs and host-side tiling are not in
the estimate. Every file is written to a temporary name and renamed, so a crash never leaves half a table.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from android_harness.benchmark_output import BenchmarkOutput
from android_harness.tflite_info import GraphInfo
from deepisp.atomic import atomic_path, make_folder
from deepisp.errors import DeepISPError
from deepisp.export.metadata import ExportMetadata

COLUMNS = [
    "variant",
    "delegate",
    "threads",
    "status",
    "delegated",
    "init_ms",
    "first_ms",
    "warmup_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "median_ms",
    "runs",
    "mem_init_mb",
    "mem_overall_mb",
    "windows_per_frame",
    "windows_source",
    "frame_hw",
    "frame_s",
    "not_on_delegate",
    "error",
    "log",
]


def windows_per_frame(model: Path, graph: GraphInfo, frame: tuple[int, int]) -> tuple[int | None, str, str]:
    """Tile-graph calls per frame for `model`: (count, where it came from, frame "HxW").

    (None, "", "") for a graph that is not a tile graph (no sidecar names it, and its input is not a
    single-channel [1,H,W,1] window).
    """
    for sidecar in sorted(model.parent.glob("*.json")):
        try:
            meta = ExportMetadata.read(sidecar)
        except DeepISPError:
            continue  # not every JSON beside a model is a sidecar of this deepisp's format
        if meta.tile_graph == model.name:
            h, w = meta.frame
            return meta.windows_per_frame, f"sidecar {sidecar.name}", f"{h}x{w}"
    if len(graph.inputs) == 1 and len(graph.inputs[0].shape) == 4 and graph.inputs[0].shape[3] == 1:
        _, sh, sw, _ = graph.inputs[0].shape
        h, w = frame
        return math.ceil(h / sh) * math.ceil(w / sw), f"estimate ceil({h}/{sh})*ceil({w}/{sw})", f"{h}x{w}"
    return None, "", ""


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 3)


def make_row(
    variant: str, delegate: str, engine: str | None, threads: int, out: BenchmarkOutput, windows: tuple[int | None, str, str], log: str, error: str = ""
) -> dict:
    """One table row from a parsed run. `engine` is the delegate's name in the log ("GPU"), None for cpu."""
    inf = out.inference
    count, source, frame_hw = windows
    failed = out.failed or bool(error)
    if failed:
        error = error or out.failure
    mean_ms = _ms(out.inference_avg_us)
    delegated = out.delegate_status(engine) if engine else "n/a"
    # A delegate that took nothing leaves every op on the CPU: say so instead of listing the whole graph.
    not_on_delegate = "all" if delegated in ("none", "unavailable", "not applied") else " ".join(out.fallback_ops(engine))
    return {
        "variant": variant,
        "delegate": delegate,
        "threads": threads,
        "status": "failed" if failed else "ok",
        "delegated": delegated,
        "init_ms": out.init_ms,
        "first_ms": _ms(out.first_inference_us),
        "warmup_ms": _ms(out.warmup_avg_us),
        "mean_ms": mean_ms,
        "std_ms": _ms(inf.std) if inf else None,
        "min_ms": _ms(inf.min) if inf else None,
        "max_ms": _ms(inf.max) if inf else None,
        "median_ms": _ms(inf.median) if inf else None,
        "runs": inf.count if inf else 0,
        "mem_init_mb": out.mem_init_mb,
        "mem_overall_mb": out.mem_overall_mb,
        "windows_per_frame": count,
        "windows_source": source,
        "frame_hw": frame_hw,
        "frame_s": round(mean_ms * count / 1000.0, 3) if (count and mean_ms and not failed) else None,
        "not_on_delegate": "" if failed else not_on_delegate,
        "error": error,
        "log": log,
    }


def _cell(value: object) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.1f}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict]) -> str:
    """The summary table: latency per variant x delegate x threads and the implied frame time."""
    head = ["variant", "delegate", "threads", "delegated", "init ms", "first ms", "mean ms", "std ms", "mem MB", "windows/frame", "frame s", "not on delegate"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        delegated = f"FAILED: {r['error']}" if r["status"] == "failed" else r["delegated"]
        windows = f"{r['windows_per_frame']} ({r['windows_source'].split()[0]})" if r["windows_per_frame"] else None
        cells = [
            r["variant"],
            r["delegate"],
            r["threads"],
            delegated,
            r["init_ms"],
            r["first_ms"],
            r["mean_ms"],
            r["std_ms"],
            r["mem_overall_mb"],
            windows,
            r["frame_s"],
            r["not_on_delegate"],
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _fallback_notes(details: list[dict]) -> list[str]:
    """Per run, the profiled op types that did not run on the requested delegate, with their time share."""
    notes = []
    for d in details:
        row = d["row"]
        share: dict[str, list[float]] = {}
        for op in d["parsed"]["ops"]:
            if op["node_type"] in row["not_on_delegate"].split():
                ms_pct = share.setdefault(op["node_type"], [0.0, 0.0])
                ms_pct[0] += op["avg_ms"]
                ms_pct[1] += op["percent"]
        if share:
            parts = ", ".join(f"{t} {ms:.3f} ms ({pct:.1f}%)" for t, (ms, pct) in share.items())
            notes.append(f"- {row['variant']} / {row['delegate']} / threads={row['threads']}: {parts}")
    return notes


def write_results(out_dir: Path, device: dict, settings: dict, details: list[dict], accuracy: list[dict], complete: bool, note: str = "") -> list[Path]:
    """Write results.json (everything), results.csv (the rows) and results.md (summary); return their paths.

    Args:
        details: per run {"row": make_row(...), "parsed": BenchmarkOutput.as_dict()}.
        complete: False when the sweep stopped early; the files then say so.
    """
    make_folder(out_dir)
    rows = [d["row"] for d in details]
    paths = [out_dir / "results.json", out_dir / "results.csv", out_dir / "results.md"]

    doc = {"device": device, "settings": settings, "complete": complete, "note": note, "runs": details, "accuracy": accuracy}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)

    md = [
        f"# On-device benchmark: {device.get('model', '?')}",
        "",
        f"Device: {device.get('describe', '?')}. ",
        f"Settings: {settings.get('describe', '')}.",
        "",
    ]
    if not complete:
        md += [f"**Incomplete: {note}**", ""]
    md += [markdown_table(rows)]
    frame_sources = sorted({r["windows_source"] for r in rows if r["windows_source"]})
    md += [
        "delegated: full / partial (some ops on the CPU) / none / unavailable (the delegate could not be created "
        "on this device) / n/a (plain CPU run). mem MB: benchmark_model's memory footprint growth over the run "
        "(approximate, as the tool itself says).",
        "",
    ]
    if frame_sources:
        md += [
            "frame s = mean ms per window x windows per frame (one tile-graph call per window, sequential; "
            "the other graphs and host-side tiling are not included). Window counts: " + "; ".join(frame_sources) + ".",
            "",
        ]
    notes = _fallback_notes(details)
    if notes:
        md += ["Ops that did not run on the requested delegate (op profile, mean per inference):", *notes, ""]
    if accuracy:
        md += [
            "Device outputs captured for the accuracy harness (paths relative to this folder):",
            *[f"- {a['variant']} / {a['delegate']}: " + (a["file"] if a.get("file") else f"not captured ({a['error']})") for a in accuracy],
            "",
        ]

    for path, text in zip(paths, [json.dumps(doc, indent=1) + "\n", buf.getvalue(), "\n".join(md)]):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return paths
