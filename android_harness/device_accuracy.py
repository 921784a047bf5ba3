"""Raw tiles in, device outputs back: the files that let the accuracy harness judge fp16/int8 on the phone.

The phone runs each tile through TensorFlow Lite's benchmark_model itself, fed by
`--input_layer_value_files` (raw bytes of the input tensor) and dumping `--output_filepath` (the raw
bytes of every output tensor, concatenated in the interpreter's output order, from the last run:
OutputSaver in tflite/tools/benchmark/benchmark_tflite_model.cc). So the numbers are exactly what the
phone's GPU/NPU computes, with no app in between. This module makes the input tiles, encodes and decodes
those byte files, and writes one `.npz` per variant x delegate:

    inputs          [N, S_h, S_w, 1] float32, the tiles fed (normalised raw, canonical RGGB, in [0,1]; square-root
                    companded for a companded model, as its graph takes them: `to_graph_domain`)
    output_<k>      [N, ...] the k-th graph output for each tile, as the device computed it
    output_names    the graph's output tensor names, in k order
    model, delegate, device   what produced them

The accuracy harness runs its float model on `inputs` and compares with `output_<k>`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from android_harness.tflite_info import MAX_MODEL_BYTES, GraphInfo, TensorInfo
from deepisp.atomic import atomic_path, read_bounded
from deepisp.errors import DeepISPError
from deepisp.export.embedding import read_tflite


def unsupported_reason(graph: GraphInfo) -> str | None:
    """Why outputs of this graph cannot be captured (None when they can): tiles need one [1,H,W,1] float input."""
    if len(graph.inputs) != 1:
        return f"{len(graph.inputs)} inputs (tiles feed graphs with one)"
    t = graph.inputs[0]
    if t.dtype != np.float32 or len(t.shape) != 4 or t.shape[0] != 1 or t.shape[3] != 1:
        return f"input {t.name} is {t.dtype} {list(t.shape)}, not a float32 [1,H,W,1] raw window"
    undecodable = [o.name for o in graph.outputs if o.dtype is None]
    if undecodable:
        return f"outputs {', '.join(undecodable)} have a type the harness cannot decode"
    return None


def load_source(path: Path) -> np.ndarray:
    """The raw data tiles are cut from: [H,W] mosaic, or [N,h,w] / [N,h,w,1] ready tiles, float32.

    A `.npy` is taken as is (values should be normalised raw in [0,1], canonical RGGB); any other file is
    read as a camera raw by deepisp (black/white levels applied, CFA flipped to RGGB).

    Raises:
        DeepISPError: missing file, unreadable raw, or an array of another rank.
    """
    if not path.is_file():
        raise DeepISPError(f"--tiles {path} not found; pass a .npy of raw tiles or a raw file such as a .dng")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DeepISPError(f"--tiles {path} is not a readable .npy ({e}); save it with numpy.save") from None
    else:
        from deepisp.raw import read_raw  # imports torch: only paid when tiles come from a raw file

        arr = read_raw(path).mosaic
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or not np.issubdtype(arr.dtype, np.number):
        raise DeepISPError(f"--tiles {path} holds a {arr.dtype} array of shape {list(arr.shape)}; expected an [H,W] mosaic or [N,h,w] tiles of normalised raw")
    arr = arr.astype(np.float32)
    if arr.size == 0 or not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise DeepISPError(f"--tiles {path}: values must be finite normalised raw in [0, 1], and there must be some; normalise by the black and white levels")
    return arr


def cut_tiles(source: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """`n` windows of h x w: the first n tiles of an [N,h,w] stack, or windows along a mosaic's diagonal.

    Window corners sit on even rows and columns so every tile keeps the mosaic's RGGB phase.

    Raises:
        DeepISPError: tiles of another size, or a mosaic smaller than one window.
    """
    if source.ndim == 3:
        if source.shape[1:] != (h, w):
            raise DeepISPError(f"--tiles holds {source.shape[1]}x{source.shape[2]} tiles but the model takes {h}x{w}")
        return source[:n]
    rows, cols = source.shape
    if rows < h or cols < w:
        raise DeepISPError(f"--tiles mosaic is {rows}x{cols}, smaller than the model's {h}x{w} window")
    ys = np.linspace(0, rows - h, n).astype(int) // 2 * 2
    xs = np.linspace(0, cols - w, n).astype(int) // 2 * 2
    return np.stack([source[y : y + h, x : x + w] for y, x in zip(ys, xs)])


def to_graph_domain(tiles: np.ndarray, model: Path) -> np.ndarray:
    """Normalised raw tiles -> what `model`'s tile graph takes: square-root companded for a companded jdd
    model (`model_config.compand` in its embedded deepisp metadata, deepisp.model.compand), else as they are."""
    meta = read_tflite(read_bounded(model, MAX_MODEL_BYTES, "exported .tflite model")) or {}
    if meta.get("model_config", {}).get("compand", "none") == "none":
        return tiles
    import torch  # only paid for companded models

    from deepisp.model.config import ModelConfig
    from deepisp.model.domain import compand

    return compand(torch.from_numpy(tiles), ModelConfig(**meta["model_config"])).numpy()


def encode_input(tile: np.ndarray, tensor: TensorInfo) -> bytes:
    """The bytes benchmark_model reads for `tensor` from an --input_layer_value_files file."""
    return np.ascontiguousarray(tile, dtype=tensor.dtype).reshape(tensor.shape).tobytes()


def decode_outputs(data: bytes, outputs: tuple[TensorInfo, ...]) -> list[np.ndarray]:
    """Split an --output_filepath dump into the graph's outputs.

    Raises:
        DeepISPError: the dump's size is not the sum of the outputs' sizes.
    """
    expected = sum(t.nbytes for t in outputs)
    if len(data) != expected:
        raise DeepISPError(f"output dump has {len(data)} bytes, the graph's outputs take {expected}")
    arrays, at = [], 0
    for t in outputs:
        arrays.append(np.frombuffer(data, dtype=t.dtype, count=t.nbytes // t.dtype.itemsize, offset=at).reshape(t.shape))
        at += t.nbytes
    return arrays


def save_capture(path: Path, inputs: np.ndarray, outputs: list[list[np.ndarray]], graph: GraphInfo, meta: dict[str, str]) -> None:
    """Write one capture `.npz` (layout in the module docstring) atomically.

    Args:
        inputs: [N,h,w] tiles as fed.
        outputs: per tile, the decoded graph outputs (each with its leading batch dimension of 1).
    """
    arrays = {"inputs": inputs[..., None].astype(np.float32)}
    for k in range(len(graph.outputs)):
        arrays[f"output_{k}"] = np.concatenate([per_tile[k] for per_tile in outputs])
    arrays["output_names"] = np.array([t.name for t in graph.outputs])
    arrays.update({key: np.array(value) for key, value in meta.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
