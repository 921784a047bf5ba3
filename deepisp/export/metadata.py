"""What an app needs to run the exported graphs without side notes, embedded and as a JSON sidecar.

`ExportMetadata` (built by `describe`) holds the graphs' inputs and outputs (layout, dtype, range, colour
space), the raw normalisation and CFA phase the tile graph expects, the tile plan for the frame size it was
exported for (window origins, kept cores, owned high-level cells per axis) and the model config.
It is embedded in every graph file (deepisp.export.embedding: a TFLite `Model.metadata` entry, an ONNX
`metadata_props` entry). The sidecar `deepisp_<variant>.json` next to the
models repeats it and adds what was measured at export (`Measured`: accuracy, delegate verdicts, sizes).
Every reader goes through `ExportMetadata.from_json` (`read` for a sidecar file), which refuses JSON of
another tool, of another format version, or with keys missing or malformed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from deepisp.atomic import atomic_path, read_bounded
from deepisp.errors import DeepISPError
from deepisp.export.backends import BACKENDS
from deepisp.export.graph_io import ColorIO, TileIO
from deepisp.input_contract import describe as describe_input
from deepisp.model.config import MONOMIAL_ORDER, ModelConfig
from deepisp.options import Compand, Mode
from deepisp.tile_plan import AxisPlan, alignment, cell_count, frame_plan, high_level_reach, low_level_halo, top_margin
from deepisp.white_balance import REFERENCE_WB

# Version of the JSON: readers refuse other versions, so bump it when a key changes meaning or goes away.
FORMAT = 2
# Read limits: a sidecar is a few kB, the largest graph (paper-size fp32 at a 12 MP window plan) tens of MB.
MAX_SIDECAR_BYTES = 1 << 20
MAX_GRAPH_BYTES = 512 << 20
NAME = "DeepISP"  # the "name" entry: what tells deepisp metadata from other JSON

NORMALISATION = (
    "mosaic = clip((raw - black[site]) / (white - black[site]), 0, 1) per 2x2 CFA site, float32, linear sensor "
    "values with no colour matrix; then, for full models, the steps of this metadata's 'input' entry (white "
    "balance, neutral highlights, the camera's colours into the reference camera's, metered exposure: "
    "deepisp.conditioning); jdd models take the normalised mosaic as is"
)
CFA = (
    "canonical RGGB: pixel (0,0) of every window is red. Sensors with GRBG/GBRG/BGGR are mirrored left-right "
    "and/or top-bottom to reach RGGB (deepisp.raw), and the output mirrored back"
)


@dataclass(frozen=True)
class Measured:
    """What the export measured for a variant: only in the sidecar, written once the checks have run.

    bytes: graph name -> file size; targets: graph name -> the processor it must run on wholly ("gpu",
    "npu", or "cpu": not gated); accuracy: `deepisp.export.gate.compare`'s summary plus the floor_psnr
    applied; delegates: graph name -> `deepisp.export.delegates.check` verdict ({} for ONNX); extra: backend
    findings (e.g. int8_points, where int8 loses: deepisp.export.int8.point_costs); accepted: published; problems: why not.
    """

    bytes: dict[str, int]
    targets: dict[str, str]
    accuracy: dict
    delegates: dict[str, dict]
    extra: dict
    accepted: bool
    problems: list[str]

    def to_json(self) -> dict:
        """The sidecar's keys for these, in its order: extra's keys sit between delegates and accepted."""
        return {
            "bytes": self.bytes,
            "targets": self.targets,
            "accuracy": self.accuracy,
            "delegates": self.delegates,
            **self.extra,
            "accepted": self.accepted,
            "problems": self.problems,
        }


@dataclass(frozen=True, kw_only=True)
class ExportMetadata:
    """The metadata of one exported variant, in format `FORMAT`.

    The fields are the JSON's keys after "format", in the JSON's order; that JSON is embedded in every graph,
    so renaming or reordering a field changes the exported files. `graphs` (graph name -> file, inputs,
    outputs) and `plan` (the tile plan, see `describe`) stay JSON objects: apps read them, deepisp only
    compares them. `measured` is the sidecar's own part: None in the graphs and before the checks have run.
    """

    name: str
    backend: str
    variant: str
    layout: str
    tile_graph: str  # graphs["tile"]["file"] again, for tools that hold a .tflite and look for its sidecar
    graphs: dict[str, dict]
    normalisation: str
    reference_wb: tuple[float, ...]
    input: dict  # what the app does to the normalised mosaic before pass 1 (deepisp.input_contract.describe)
    cfa: str
    frame: tuple[int, int]
    window: tuple[int, int]
    tile: tuple[int, int]
    windows_per_frame: int
    plan: dict
    monomial_order: tuple[str, ...]
    model_config: ModelConfig
    measured: Measured | None = None

    @property
    def noise_profile(self) -> tuple[float, float] | None:
        """The (S, O) a noise-aware model was folded at for this export, None for other models."""
        baked = self.graphs["tile"].get("noise_profile")
        return None if baked is None else (float(baked["S"]), float(baked["O"]))

    @property
    def files(self) -> dict[str, str]:
        """Graph name ("tile", "color") -> its file name, next to the sidecar."""
        return {name: graph["file"] for name, graph in self.graphs.items()}

    def to_json(self) -> dict:
        """The JSON object: embedded in the graphs as it is; the sidecar adds `measured`'s keys after it."""
        data = {"format": FORMAT, **{f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "measured"}}
        return data if self.measured is None else data | self.measured.to_json()

    def write(self, path: Path) -> None:
        """Write as the sidecar file `path` (atomically)."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> ExportMetadata:
        """The metadata in the sidecar file `path`; DeepISPError for a folder, a missing file or any other file."""
        if path.is_dir():
            raise DeepISPError(f"{path} is a folder: pass the deepisp_<variant>.json written by the export next to the graphs")
        try:
            data = json.loads(read_bounded(path, MAX_SIDECAR_BYTES, "export sidecar (deepisp_<variant>.json)").decode("utf-8"))
        except FileNotFoundError:
            raise DeepISPError(f"{path} not found: run export/to_tflite.py or export/to_onnx.py first, then pass its deepisp_<variant>.json") from None
        except PermissionError:
            raise DeepISPError(f"{path} cannot be read (permission denied); check its permissions") from None
        except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON, nested beyond reason
            raise DeepISPError(f"{path} is not an export sidecar (JSON): pass the deepisp_<variant>.json written by the export") from None
        return cls.from_json(data, path)

    @classmethod
    def from_json(cls, data: object, source: str | Path) -> ExportMetadata:
        """The metadata in a parsed JSON value (a sidecar's or one embedded in a graph; `source` names it in errors).

        DeepISPError for JSON of another tool, of another format version, or with keys missing or malformed.
        """
        if not isinstance(data, dict) or data.get("name") != NAME:
            raise DeepISPError(f"{source} is not deepisp export metadata: pass the deepisp_<variant>.json written by the export")
        if "format" in data and data["format"] != FORMAT:
            raise DeepISPError(f"{source} is format {data['format']}, this deepisp reads format {FORMAT}: re-export with this version")
        measured = any(k in data for k in _MEASURED_READERS)
        readers = _READERS | (_MEASURED_READERS if measured else {})
        missing = [k for k in ["format", *readers] if k not in data]
        if missing:
            raise DeepISPError(f"{source} is not complete deepisp export metadata (no {', '.join(missing)}); re-export")
        values = {}
        for key, read in readers.items():
            try:
                values[key] = read(data[key])
            except (TypeError, ValueError):
                raise DeepISPError(f"{source}: {key} is malformed; re-export") from None
        if measured:
            extra = {k: v for k, v in data.items() if k != "format" and k not in readers}  # every other key: a backend finding
            values["measured"] = Measured(**{k: values.pop(k) for k in _MEASURED_READERS}, extra=extra)
        return cls(**values)


def _plain(value: object) -> object:
    """A field's value as JSON: ModelConfig as its dict, tuples as lists."""
    if isinstance(value, ModelConfig):
        return asdict(value)
    return list(value) if isinstance(value, tuple) else value


def _of(kind: type | tuple[type, ...]) -> Callable[[object], object]:
    """Reader of a JSON value that must be a `kind`, taken as it is."""

    def read(value: object) -> object:
        if not isinstance(value, kind):
            raise TypeError(value)
        return value

    return read


def _tuple_of(kind: type | tuple[type, ...], length: int | None = None) -> Callable[[object], tuple]:
    """Reader of a JSON list of `kind` items (`length` of them, if given), as a tuple."""

    def read(value: object) -> tuple:
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise TypeError(value)
        return tuple(_of(kind)(v) for v in value)

    return read


def _graphs(value: object) -> dict[str, dict]:
    """Reader of `graphs`: graph name -> a JSON object naming its file; the tile graph is always there."""
    graphs = _of(dict)(value)
    if "tile" not in graphs or not all(isinstance(g, dict) and isinstance(g.get("file"), str) for g in graphs.values()):
        raise ValueError(value)
    baked = graphs["tile"].get("noise_profile")
    if baked is not None and not (isinstance(baked, dict) and all(_unit_number(baked.get(k)) for k in ("S", "O"))):
        raise ValueError(baked)  # a noise-aware export's (S, O): finite numbers in [0, 1]
    return graphs


def _unit_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _backend(value: object) -> str:
    """Reader of `backend`: a name in the registry (deepisp.export.backends)."""
    if _of(str)(value) not in BACKENDS:
        raise ValueError(value)
    return value


def _sizes(value: object) -> tuple:
    """Reader of a (H, W) size: two ints in 1..65536."""
    size = _tuple_of(int, 2)(value)
    if not all(1 <= v <= 65536 for v in size):
        raise ValueError(value)
    return size


# How each field is read from its JSON value (TypeError or ValueError if malformed), in the fields' order.
_READERS: dict[str, Callable[[object], object]] = {
    "name": _of(str),
    "backend": _backend,
    "variant": _of(str),
    "layout": _of(str),
    "tile_graph": _of(str),
    "graphs": _graphs,
    "normalisation": _of(str),
    "reference_wb": _tuple_of((int, float), 3),
    "input": _of(dict),
    "cfa": _of(str),
    "frame": _sizes,
    "window": _sizes,
    "tile": _sizes,
    "windows_per_frame": _of(int),
    "plan": _of(dict),
    "monomial_order": _tuple_of(str),
    "model_config": lambda value: ModelConfig(**_of(dict)(value)),
}
# The same for the sidecar's `Measured` keys (all there or none), in the sidecar's order.
_MEASURED_READERS: dict[str, Callable[[object], object]] = {
    "bytes": _of(dict),
    "targets": _of(dict),
    "accuracy": _of(dict),
    "delegates": _of(dict),
    "accepted": _of(bool),
    "problems": _of(list),
}


def _axis(plan: AxisPlan) -> list[dict]:
    return [{"window": list(s.window), "core": list(s.core), "cells": list(s.cells)} for s in plan.spans]


def describe(
    cfg: ModelConfig,
    window: tuple[int, int],
    frame: tuple[int, int],
    tile: tuple[int, int],
    backend: str,
    variant: str,
    files: dict[str, str],
    noise_profile: tuple[float, float] | None = None,
) -> ExportMetadata:
    """The metadata of one exported variant; `files` maps graph name ("tile", "color") to file name;
    `noise_profile`: the (S, O) a noise-aware model was folded at, recorded in the tile graph's entry."""
    layout = BACKENDS[backend].layout
    rows, cols = frame_plan(*frame, cfg, tile, window)
    a = alignment(cfg)

    def spatial(c: int) -> list[int]:
        return [1, window[0], window[1], c] if layout == "NHWC" else [1, c, window[0], window[1]]

    cells_shape = [cell_count(window[0], cfg), cell_count(window[1], cfg)]
    graphs = {
        "tile": {
            "file": files["tile"],
            "inputs": {TileIO.MOSAIC: {"shape": spatial(1), "dtype": "float32", "range": [0, 1], "meaning": "raw Bayer window, see normalisation and cfa"}},
            "outputs": {TileIO.IMAGE: {"shape": spatial(3), "dtype": "float32", "meaning": "low-level image estimate, linear RGB (jdd: the final output)"}},
        }
    }
    if cfg.compand == Compand.SQRT:
        tile_graph = graphs["tile"]
        tile_graph["inputs"][TileIO.MOSAIC]["meaning"] += "; square-root companded: feed sign(m) * sqrt(|m|) of the normalised mosaic m"
        tile_graph["outputs"][TileIO.IMAGE]["meaning"] = "final output, square-root companded: linear RGB = y * |y| (model_config.compand)"
    if noise_profile is not None:
        graphs["tile"]["noise_profile"] = {
            "S": noise_profile[0],
            "O": noise_profile[1],
            "meaning": "noise-aware model folded at this DNG NoiseProfile (variance S*x + O): exact for raws with this noise; export one graph per ISO",
        }
    if cfg.mode == Mode.FULL:
        cshape = [1, *cells_shape, cfg.hl_width] if layout == "NHWC" else [1, cfg.hl_width, *cells_shape]
        graphs["tile"]["outputs"][TileIO.CELLS] = {
            "shape": cshape,
            "dtype": "float32",
            "meaning": f"high-level cell map; cell (p,q) sits at window pixel ({a}p, {a}q)",
        }
        graphs["color"] = {
            "file": files["color"],
            "inputs": {
                ColorIO.IMAGE: {"shape": spatial(3), "dtype": "float32", "meaning": "block of the stitched low-level image"},
                ColorIO.MEAN: {"shape": [1, cfg.hl_width], "dtype": "float32", "meaning": "sum of owned cells over the frame / cells_per_frame"},
            },
            "outputs": {ColorIO.OUTPUT: {"shape": spatial(3), "dtype": "float32", "range": [0, 1], "meaning": "sRGB-encoded image; clamp to [0,1]"}},
        }
    return ExportMetadata(
        name=NAME,
        backend=backend,
        variant=variant,
        layout=layout,
        tile_graph=files["tile"],
        graphs=graphs,
        normalisation=NORMALISATION,
        reference_wb=REFERENCE_WB,
        input=describe_input(cfg),
        cfa=CFA,
        frame=tuple(frame),
        window=tuple(window),
        tile=tuple(tile),
        windows_per_frame=len(rows.spans) * len(cols.spans),
        plan={
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
        monomial_order=MONOMIAL_ORDER,
        model_config=cfg,
    )
