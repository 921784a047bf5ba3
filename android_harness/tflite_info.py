"""Input and output tensors of a .tflite file, read straight from its flatbuffer.

The harness must not need a TFLite runtime on the host (it drives the one on the phone), yet it has to
know each graph's input shape (for the frame-time estimate and for writing input files) and its outputs'
shapes and types (to decode what benchmark_model's `--output_filepath` dumps). Those few fields are read
here with `struct`, following the TFLite schema (tensorflow/lite/schema/schema.fbs): Model.subgraphs (field
2) -> SubGraph.tensors/inputs/outputs (fields 0/1/2) -> Tensor.shape/type/name (fields 0/1/3). Only the
primary subgraph (index 0) is read: it is the one benchmark_model runs for a single-signature model.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepisp.atomic import read_bounded
from deepisp.errors import DeepISPError

# The largest .tflite the harness reads (a 12 MP paper-size fp32 graph is tens of MB).
MAX_MODEL_BYTES = 1 << 30

# TensorType enum of schema.fbs -> numpy dtype; types the harness never decodes are left out.
_DTYPES = {
    code: np.dtype(t)
    for code, t in {
        0: np.float32,
        1: np.float16,
        2: np.int32,
        3: np.uint8,
        4: np.int64,
        6: np.bool_,
        7: np.int16,
        9: np.int8,
        10: np.float64,
        12: np.uint64,
        15: np.uint32,
        16: np.uint16,
    }.items()
}


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype | None  # None: a type the harness cannot decode (string, resource, int4, ...)

    @property
    def nbytes(self) -> int:
        """Size of the tensor's data as benchmark_model reads and writes it (0 if the type is unknown)."""
        return int(np.prod(self.shape)) * self.dtype.itemsize if self.dtype is not None else 0


@dataclass(frozen=True)
class GraphInfo:
    """The I/O of a .tflite graph's primary subgraph, in the interpreter's order."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


class _Table:
    """A flatbuffer table at byte offset `pos` of `buf` (little-endian, as flatbuffers always are)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_len = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index: int) -> int:
        """Offset of field `index` from the table start, 0 when absent (then the schema default applies)."""
        slot = 4 + 2 * index
        return struct.unpack_from("<H", self.buf, self.vtable + slot)[0] if slot < self.vtable_len else 0

    def _target(self, index: int) -> int | None:
        """Absolute position of what a reference field (table, vector, string) points to."""
        off = self._field(index)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def scalar(self, index: int, fmt: str, default: int) -> int:
        off = self._field(index)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def tables(self, index: int) -> list[_Table]:
        at = self._target(index)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        elems = [at + 4 + 4 * i for i in range(n)]
        return [_Table(self.buf, e + struct.unpack_from("<I", self.buf, e)[0]) for e in elems]

    def ints(self, index: int) -> list[int]:
        at = self._target(index)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        return list(struct.unpack_from(f"<{n}i", self.buf, at + 4))

    def string(self, index: int) -> str:
        at = self._target(index)
        if at is None:
            return ""
        n = struct.unpack_from("<I", self.buf, at)[0]
        return self.buf[at + 4 : at + 4 + n].decode("utf-8", "replace")


def read_graph_info(path: str | Path) -> GraphInfo:
    """Read the primary subgraph's inputs and outputs of the .tflite at `path`.

    Raises:
        DeepISPError: missing file, or not a TFLite flatbuffer (wrong identifier, truncated, no subgraph).
    """
    path = Path(path)
    if not path.is_file():
        raise DeepISPError(f"model not found: {path}; pass an exported .tflite file")
    buf = read_bounded(path, MAX_MODEL_BYTES, "exported .tflite model")
    # Bytes 4..8 are the flatbuffer file identifier, "TFL3" for every TFLite model.
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise DeepISPError(f"{path} is not a TFLite model (no TFL3 flatbuffer identifier); pass an exported .tflite")
    try:
        model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        subgraphs = model.tables(2)
        if not subgraphs:
            raise DeepISPError(f"{path} has no subgraph; re-export it")
        graph = subgraphs[0]
        tensors = graph.tables(0)

        def info(i: int) -> TensorInfo:
            t = tensors[i]
            return TensorInfo(t.string(3), tuple(t.ints(0)), _DTYPES.get(t.scalar(1, "b", 0)))

        return GraphInfo(tuple(info(i) for i in graph.ints(1)), tuple(info(i) for i in graph.ints(2)))
    except (struct.error, IndexError):
        raise DeepISPError(f"{path} is a truncated or corrupt TFLite file; export it again") from None
