"""The export backends, one registry entry each, and the interface every backend's builder implements.

`BACKENDS[name]` (a deepisp.options.ExportFormat value) says what the rest of the code needs to know about a
backend, so export, runtime and benchmarks branch on no backend names: its files' extension and layout, its
variants (and which need calibration windows), how metadata is embedded in and read from its graphs
(deepisp.export.embedding), and the class that builds its graphs. That class lives in the backend's own
module (`tflite_export`, `onnx_export`), imported only when an export runs: reading exported graphs needs
neither TensorFlow nor the ONNX exporter.

Every builder is an `Exporter`: made for one model and one window shape, it builds a variant's graphs
(`build`) and says which processors a graph runs on wholly (`check`, deepisp.export.delegates; {} where no
delegate rules apply).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deepisp.export.embedding import embed_onnx, embed_tflite, read_onnx, read_tflite
from deepisp.options import ExportFormat

if TYPE_CHECKING:  # (the registry itself imports neither: readers of exports need no torch)
    import numpy as np

    from deepisp.model.network import DeepISP


@dataclass
class BuiltVariant:
    """A variant's serialized graphs before publishing.

    graphs: graph name ("tile", "color") -> model bytes without metadata.
    targets: graph name -> the processor it must run on wholly: "gpu", "npu", or "cpu" (not gated).
    extra: backend findings for the sidecar (`Measured.extra`, e.g. the int8 report, int8_points).
    """

    variant: str
    graphs: dict[str, bytes]
    targets: dict[str, str]
    extra: dict = field(default_factory=dict)


class Exporter:
    """Builds one model's graphs at one window shape (rows, cols), variant by variant."""

    def __init__(self, model: DeepISP, window: tuple[int, int]):
        self.model = model
        self.window = window

    def build(self, variant: str, calibration: list[np.ndarray] | None = None) -> BuiltVariant:
        """The variant's graphs; `calibration`: [S_h,S_w] float32 windows in the tile graph's input domain, for
        the backend's calibrated variants."""
        raise NotImplementedError

    def check(self, blob: bytes) -> dict:
        """Delegate verdicts of a graph (deepisp.export.delegates.check), {} where none apply."""
        return {}


@dataclass(frozen=True)
class Backend:
    """What one export backend is. `exporter`: "module:Class" of its `Exporter`."""

    name: str
    description: str  # for --help
    extension: str  # of its graph files
    layout: str  # of its graphs' image tensors: "NHWC" or "NCHW"
    sidecar_prefix: str  # the sidecar of variant v is f"{sidecar_prefix}{v}.json"
    label_prefix: str  # a variant's name in reports and tables: f"{label_prefix}{v}"
    variants: tuple[str, ...]
    embed: Callable[[bytes, dict], bytes]  # a graph with the metadata JSON (ExportMetadata.to_json) stored inside
    read_embedded: Callable[[bytes], dict | None]  # the metadata JSON a graph file carries, or None
    exporter: str
    calibrated: tuple[str, ...] = ()  # variants that need calibration windows
    whole_input_range: tuple[str, ...] = ()  # calibrated variants whose input range is the whole [0,1]

    def stem(self, variant: str) -> str:
        """File stem of a variant's sidecar and error map."""
        return f"{self.sidecar_prefix}{variant}"

    def label(self, variant: str) -> str:
        """A variant's name in reports and tables (benchmarks/results)."""
        return f"{self.label_prefix}{variant}"

    def exporter_class(self) -> type[Exporter]:
        """The backend's builder (imports its converter: ImportError without the export extras)."""
        module, name = self.exporter.split(":")
        return getattr(importlib.import_module(module), name)


BACKENDS: dict[str, Backend] = {
    ExportFormat.TFLITE.value: Backend(
        name=ExportFormat.TFLITE.value,
        description="TFLite (LiteRT) graphs for phone GPU/NPU delegates",
        extension=".tflite",
        layout="NHWC",
        sidecar_prefix="deepisp_",
        label_prefix="",
        variants=("fp32", "fp16", "dynamic", "int8", "int8-mixed", "int16x8"),
        embed=embed_tflite,
        read_embedded=read_tflite,
        exporter="deepisp.export.tflite_export:TfliteExporter",
        calibrated=("int8", "int8-mixed", "int16x8"),
        # 16-bit activations have steps to spare, so nothing needs to saturate (with the data's range a brighter
        # frame fell to 46.6 dB).
        whole_input_range=("int16x8",),
    ),
    ExportFormat.ONNX.value: Backend(
        name=ExportFormat.ONNX.value,
        description="ONNX graphs (opset 18, dynamic window size)",
        extension=".onnx",
        layout="NCHW",
        sidecar_prefix="deepisp_onnx_",
        label_prefix="onnx-",
        variants=("fp32",),
        embed=embed_onnx,
        read_embedded=read_onnx,
        exporter="deepisp.export.onnx_export:OnnxExporter",
    ),
}
