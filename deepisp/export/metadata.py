"""What an app needs to run the exported graphs without side notes, embedded and as a JSON sidecar.

The description (`describe`) holds the graphs' inputs and outputs (layout, dtype, range, colour space),
the raw normalisation and CFA phase the tile graph expects, the tile plan for the frame size it was
exported for (window origins, kept cores, owned high-level cells per axis) and the model config.
It is embedded in every .tflite as a `Model.metadata` entry named "deepisp" holding UTF-8 JSON (the
flatbuffer schema's own metadata mechanism; tflite-support's metadata writer is unmaintained and pins
protobuf 3), and in ONNX as `metadata_props["deepisp"]`. The sidecar `deepisp_<variant>.json` next to the
models repeats it and adds what was measured at export (accuracy, delegate verdicts, sizes).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from deepisp.atomic import atomic_path
from deepisp.model import MONOMIAL_ORDER, ModelConfig
from deepisp.tiling import AxisPlan, alignment, cell_count, high_level_reach, low_level_halo, plan_axis, top_margin
from deepisp.white_balance import REFERENCE_WB

FORMAT = 1
METADATA_NAME = "deepisp"

NORMALISATION = (
    "mosaic = clip((raw - black[site]) / (white - black[site]), 0, 1) per 2x2 CFA site, float32, linear sensor "
    "values with no colour matrix; for a model whose model_config.white_balance is 'as_shot', each site is then "
    "multiplied by gains = camera_wb / reference_wb, divided by the largest gain (camera_wb: the file's as-shot "
    "R,G,B multipliers with G = 1, e.g. 1/AsShotNeutral; reference_wb: this metadata's 'reference_wb' entry; "
    "deepisp.white_balance); 'estimate' models take the mosaic without white balance"
)
CFA = (
    "canonical RGGB: pixel (0,0) of every window is red. Sensors with GRBG/GBRG/BGGR are mirrored left-right "
    "and/or top-bottom to reach RGGB (deepisp.raw), and the output mirrored back"
)


def _axis(plan: AxisPlan) -> list[dict]:
    return [{"window": list(s.window), "core": list(s.core), "cells": list(s.cells)} for s in plan.spans]


def describe(cfg: ModelConfig, window: tuple[int, int], frame: tuple[int, int], tile: tuple[int, int], backend: str, variant: str, files: dict[str, str]) -> dict:
    """The metadata of one exported variant; `files` maps graph name ("tile", "color") to file name."""
    layout = "NHWC" if backend == "tflite" else "NCHW"
    rows, cols = plan_axis(frame[0], tile[0], cfg, window[0]), plan_axis(frame[1], tile[1], cfg, window[1])
    a = alignment(cfg)
    spatial = lambda c: [1, window[0], window[1], c] if layout == "NHWC" else [1, c, window[0], window[1]]  # noqa: E731
    cells_shape = [cell_count(window[0], cfg), cell_count(window[1], cfg)]
    graphs = {
        "tile": {
            "file": files["tile"],
            "inputs": {"mosaic": {"shape": spatial(1), "dtype": "float32", "range": [0, 1], "meaning": "raw Bayer window, see normalisation and cfa"}},
            "outputs": {"image": {"shape": spatial(3), "dtype": "float32", "meaning": "low-level image estimate, linear RGB (jdd: the final output)"}},
        }
    }
    if cfg.mode == "full":
        cshape = [1, *cells_shape, cfg.hl_width] if layout == "NHWC" else [1, cfg.hl_width, *cells_shape]
        graphs["tile"]["outputs"]["cells"] = {"shape": cshape, "dtype": "float32", "meaning": f"high-level cell map; cell (p,q) sits at window pixel ({a}p, {a}q)"}
        graphs["color"] = {
            "file": files["color"],
            "inputs": {
                "image": {"shape": spatial(3), "dtype": "float32", "meaning": "block of the stitched low-level image"},
                "mean": {"shape": [1, cfg.hl_width], "dtype": "float32", "meaning": "sum of owned cells over the frame / cells_per_frame"},
            },
            "outputs": {"output": {"shape": spatial(3), "dtype": "float32", "range": [0, 1], "meaning": "sRGB-encoded image; clamp to [0,1]"}},
        }
    return {
        "format": FORMAT,
        "name": "DeepISP",
        "backend": backend,
        "variant": variant,
        "layout": layout,
        "tile_graph": files["tile"],
        "graphs": graphs,
        "normalisation": NORMALISATION,
        "reference_wb": list(REFERENCE_WB),
        "cfa": CFA,
        "frame": list(frame),
        "window": list(window),
        "tile": list(tile),
        "windows_per_frame": len(rows.spans) * len(cols.spans),
        "plan": {
            "alignment": a,
            "low_level_halo": low_level_halo(cfg),
            "high_level_reach": high_level_reach(cfg),
            "top_margin": top_margin(cfg),
            "cells_per_frame": [cell_count(frame[0], cfg), cell_count(frame[1], cfg)],
            "rows": _axis(rows),
            "cols": _axis(cols),
            "how": (
                "for every (row, col) window: run the tile graph on mosaic[window rows, window cols]; keep image[core] "
                "into the frame; add the sum of cells[cells rows - window origin/alignment, ...] to a float32 accumulator. "
                "mean = accumulator / (cells_per_frame[0] * cells_per_frame[1]). Then run the color graph on "
                "window-sized blocks of the stitched image with that mean (blocks may overlap at the frame end)."
            ),
        },
        "monomial_order": list(MONOMIAL_ORDER),
        "model_config": asdict(cfg),
    }


def embed_tflite(blob: bytes, meta: dict) -> bytes:
    """Add (or replace) the "deepisp" metadata entry of a .tflite flatbuffer; other entries are kept."""
    from deepisp.export._flatbuffers import schema, utils

    model = utils.read_model_from_bytearray(bytearray(blob))
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != METADATA_NAME]
    buf = schema.BufferT()
    buf.data = list(json.dumps(meta).encode())
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(utils.convert_object_to_bytearray(model))


def read_tflite(blob: bytes) -> dict | None:
    """The "deepisp" metadata of a .tflite flatbuffer, or None."""
    from deepisp.export._flatbuffers import utils

    model = utils.read_model_from_bytearray(bytearray(blob))
    for m in model.metadata or []:
        if _name(m.name) == METADATA_NAME:
            return json.loads(bytes(model.buffers[m.buffer].data).decode())
    return None


def _name(name) -> str:
    return name.decode() if isinstance(name, bytes) else name


def write_sidecar(path: Path, meta: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
