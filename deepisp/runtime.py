"""Run exported DeepISP graphs (ONNX Runtime or the TFLite/LiteRT interpreter) on full frames.

An exported variant is named by its sidecar JSON (`deepisp_<variant>.json`, written by export/to_onnx.py
or export/to_tflite.py next to the graphs; `deepisp.export.metadata.ExportMetadata`). `ExportedModel(path)`
checks the sidecar against the metadata embedded in each graph, builds a `deepisp.tiling.WindowRunner`
(`TfliteRunner` or `OnnxRunner`), and `ExportedModel.run` follows the very tile plan the PyTorch path and a
phone app follow.

TFLite interpreters are taken from `ai_edge_litert` (LiteRT), then `tflite_runtime`, then
`tensorflow.lite`. Graphs are exported for one window shape (the plan for the frame size given at
export); for other frame sizes the runners resize the graph inputs (CPU interpreters and ONNX Runtime
accept that; phone delegates want the exported shape).

Layouts at the boundary: runner inputs/outputs are torch tensors in deepisp's [C,H,W] convention;
TFLite graphs are NHWC, ONNX graphs NCHW, both float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepisp.atomic import read_bounded
from deepisp.errors import DeepISPError
from deepisp.export.backends import BACKENDS
from deepisp.export.graph_io import ROLE_INPUTS, ColorIO, TileIO
from deepisp.export.metadata import MAX_GRAPH_BYTES, ExportMetadata
from deepisp.model.config import ModelConfig
from deepisp.options import ExportFormat
from deepisp.tiling import run_tiled


def tflite_interpreter_class():
    """The first TFLite interpreter available: LiteRT, tflite_runtime, then TensorFlow's."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # built against NumPy 1.x: fails to import under NumPy 2

        return Interpreter
    except (ImportError, RuntimeError, AttributeError):
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter
    except ImportError:
        raise DeepISPError("no TFLite interpreter installed: pip install ai-edge-litert (or `pip install -e .[export]`)") from None


def check_role(path: Path, name: str, inputs: set[str]) -> None:
    if inputs != ROLE_INPUTS.get(name):
        raise DeepISPError(f"{path} is not the {name} graph its sidecar names (its inputs are {sorted(inputs)}); graphs were renamed or mixed: re-export")


class TfliteRunner:
    """`WindowRunner` over the tile (and color) .tflite graphs of one exported variant."""

    def __init__(self, cfg: ModelConfig, files: dict[str, Path], threads: int | None = None):
        interpreter = tflite_interpreter_class()
        self.cfg = cfg
        self._run = {}
        for name, path in files.items():
            try:
                it = interpreter(model_path=str(path), num_threads=threads)
            except ValueError as e:
                raise DeepISPError(f"{path} is not a loadable TFLite model ({e}); re-export it") from None
            signatures = it.get_signature_list()
            check_role(path, name, set(next(iter(signatures.values()))["inputs"]) if signatures else set())
            self._run[name] = it.get_signature_runner()

    def low_level(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self._run["tile"](**{TileIO.MOSAIC: window.numpy()[None, :, :, None].astype(np.float32)})
        image = torch.from_numpy(out[TileIO.IMAGE][0]).permute(2, 0, 1)
        cells = torch.from_numpy(out[TileIO.CELLS][0]).permute(2, 0, 1) if TileIO.CELLS in out else None
        return image, cells

    def color(self, image: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        feed = {ColorIO.IMAGE: image.permute(1, 2, 0).numpy()[None].astype(np.float32), ColorIO.MEAN: mean.numpy()[None].astype(np.float32)}
        return torch.from_numpy(self._run["color"](**feed)[ColorIO.OUTPUT][0]).permute(2, 0, 1)


class OnnxRunner:
    """`WindowRunner` over the tile (and color) .onnx graphs (dynamic spatial size) with ONNX Runtime."""

    def __init__(self, cfg: ModelConfig, files: dict[str, Path], threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DeepISPError("onnxruntime is not installed: pip install onnxruntime (or `pip install -e .[export]`)") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.cfg = cfg
        self._sessions = {}
        for name, path in files.items():
            try:
                self._sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as e:  # ORT raises its own exception types for unreadable models
                raise DeepISPError(f"{path} is not a loadable ONNX model ({type(e).__name__}); re-export it") from None
            check_role(path, name, {i.name for i in self._sessions[name].get_inputs()})

    def low_level(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self._sessions["tile"].run(None, {TileIO.MOSAIC: window.numpy()[None, None].astype(np.float32)})
        return torch.from_numpy(out[0][0]), (torch.from_numpy(out[1][0]) if len(out) > 1 else None)

    def color(self, image: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        feed = {ColorIO.IMAGE: image.numpy()[None].astype(np.float32), ColorIO.MEAN: mean.numpy()[None].astype(np.float32)}
        out = self._sessions["color"].run(None, feed)
        return torch.from_numpy(out[0][0])


# The runner of each export backend's graphs.
RUNNERS = {ExportFormat.TFLITE.value: TfliteRunner, ExportFormat.ONNX.value: OnnxRunner}


# The fields of a sidecar that must equal the metadata embedded in each of its graphs (a sidecar edited by
# hand, or graphs swapped or taken from another export, would run and give garbage).
MUST_MATCH = ("backend", "variant", "model_config", "frame", "window", "tile", "plan")


def embedded_metadata(path: Path, backend: str) -> ExportMetadata | None:
    """The "deepisp" metadata a graph file carries (TFLite Model.metadata, ONNX metadata_props), or None."""
    blob = read_bounded(path, MAX_GRAPH_BYTES, f"{backend} graph of a deepisp export")
    try:
        data = BACKENDS[backend].read_embedded(blob)
    except Exception:  # any parse failure of a graph file is reported below as "not readable"
        raise DeepISPError(f"{path} is not a readable {backend} graph; re-export") from None
    return None if data is None else ExportMetadata.from_json(data, path)


def check_embedded(sidecar: Path, meta: ExportMetadata, name: str, path: Path) -> None:
    """Refuse a graph whose embedded metadata disagrees with the sidecar or that sits in another graph's slot."""
    embedded = embedded_metadata(path, meta.backend)
    if embedded is None:
        raise DeepISPError(f"{path} carries no deepisp metadata: it was not written by deepisp's export; re-export")
    differ = [k for k in MUST_MATCH if getattr(embedded, k) != getattr(meta, k)]
    if embedded.files.get(name) != path.name:
        differ.append(f"graphs.{name}")
    if differ:
        raise DeepISPError(
            f"{sidecar} does not match the metadata inside {path.name} ({', '.join(differ)} differ): the sidecar was edited "
            "or the graphs come from another export; re-export"
        )


class ExportedModel:
    """One exported variant: its metadata (sidecar) and a runner for its graphs."""

    def __init__(self, sidecar: str | Path, threads: int | None = None):
        sidecar = Path(sidecar)
        self.metadata = ExportMetadata.read(sidecar)
        self.cfg = self.metadata.model_config
        outside = [file for file in self.metadata.files.values() if Path(file).name != file or file in ("", ".", "..")]
        if outside:
            raise DeepISPError(f"{sidecar}: graph file {outside[0]!r} is not a plain file name; a sidecar names graphs in its own folder; re-export")
        files = {name: sidecar.parent / file for name, file in self.metadata.files.items()}
        self.files = files
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise DeepISPError(f"graph file(s) missing next to {sidecar}: {', '.join(missing)}; re-export")
        for name, path in files.items():
            check_embedded(sidecar, self.metadata, name, path)
        self.runner = RUNNERS[self.metadata.backend](self.cfg, files, threads)
        self.backend, self.variant = self.metadata.backend, self.metadata.variant

    def window_for(self, h: int, w: int) -> tuple[int, int] | None:
        """The exported window shape when the frame is the one exported for, else None (derive from tile)."""
        return self.metadata.window if (h, w) == self.metadata.frame else None

    def run(self, mosaic: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """mosaic [H,W] float in [0,1] canonical RGGB -> [3,H,W] output, like `deepisp.tiling.run_tiled`."""
        h, w = mosaic.shape
        return run_tiled(self.runner, mosaic, tile=self.metadata.tile, progress=progress, window=self.window_for(h, w))

    def run_window(self, mosaic: torch.Tensor) -> torch.Tensor:
        """The whole frame as a single window (untiled): the graphs resized to the frame."""
        h, w = mosaic.shape
        return run_tiled(self.runner, mosaic, tile=self.metadata.tile, window=(h, w))
