"""TFLite variants of the tile and color graphs (see `tf_graphs`), with TensorFlow's converter.

    variant   tile graph                                   color graph   runs wholly on (gated)
    fp32      float32                                      float32       GPU (tile, color)
    fp16      float16 weights, float32 I/O (GPU delegate)   float16      GPU (tile, color)
    dynamic   int8 weights, float activations (hybrid)     float32       CPU/XNNPACK (tile), GPU (color)
    int8      full-integer, per-channel int8 weights,      float32       NPU (tile), GPU (color)
              int8 activations calibrated on raw windows,
              float32 I/O through QUANTIZE/DEQUANTIZE
    int16x8   int16 activations, int8 weights              float32       CPU (tile: the GPU delegate never
                                                                          takes int16; reference kernels), GPU (color)

The color graph (W from the global mean, then the per-pixel quadratic transform) stays float: it is ~60
FLOP per pixel, and squaring 8-bit values costs precision where the image is brightest.

int16x8: TFLite has no 16x8 DEPTH_TO_SPACE kernel, so the converter may keep ops without a 16x8 kernel
in float (TFLITE_BUILTINS fallback); the variant targets CPU anyway.

Calibration runs on small windows (quantization ranges do not depend on the window size, the time does:
the calibrator's logging kernels take seconds per megapixel): graphs are converted with symbolic height
and width, then `set_static_shapes` writes the exported window's shape into every tensor (the shapes the
interpreter propagates from the input), so delegates see a static graph.

int8's tile graph carries its quantization ranges (OWN_RANGES, tf_graphs), and the export reports where it
loses (deepisp.export.int8.point_costs, sidecar key "int8_points").
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from deepisp.export.backends import BACKENDS, BuiltVariant, Exporter
from deepisp.export.delegates import check
from deepisp.export.graph_io import ColorIO, TileIO
from deepisp.export.int8 import calibrated_ranges, point_costs
from deepisp.export.tf_graphs import tf_graphs
from deepisp.model.network import DeepISP
from deepisp.options import ExportFormat
from deepisp.runtime import tflite_interpreter_class

# int8-mixed keeps the image path in float: each block's tanh residual, its learned scale (MUL, in
# `residual_scale` models) and the running sum it is added to. TFLite fixes TANH's int8 output step at
# 1/128 while the residuals are a few thousandths, so in int8 a model without residual scales adds ~0.3
# steps of rounding noise to the image at every block (the int8 report, deepisp.export.int8.point_costs). Denylisting ADD also keeps in
# float the sums of the split convs' feature and image halves (tf_graphs: no CONCATENATION in the tile graph).
MIXED_FLOAT_OPS = ("TANH", "MUL", "ADD")
# Variants whose tile graph is built with the ranges of deepisp.export.int8.calibrated_ranges fixed in it (FakeQuant,
# see tf_graphs): the converter's own calibration gives each residual the running image's coarser range.
OWN_RANGES = ("int8",)
TARGETS = {
    "fp32": {"tile": "gpu", "color": "gpu"},
    "fp16": {"tile": "gpu", "color": "gpu"},
    "dynamic": {"tile": "cpu", "color": "gpu"},
    "int8": {"tile": "npu", "color": "gpu"},
    "int8-mixed": {"tile": "gpu", "color": "gpu"},
    "int16x8": {"tile": "cpu", "color": "gpu"},
}


def converter(module: tf.Module, variant: str, calibration: list[np.ndarray] | None = None) -> tf.lite.TFLiteConverter:
    """A TFLiteConverter for `module.serve` set up for `variant`; calibration windows [S_h,S_w] for int8/int16x8."""
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    if variant == "fp32":
        return conv
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    elif variant in BACKENDS[ExportFormat.TFLITE].calibrated:  # int8-mixed: the int8 converter, then `mixed_int8` denylists ops
        if not calibration:
            raise ValueError(f"{variant} needs calibration windows")
        conv.representative_dataset = lambda: _samples(calibration)
        conv.target_spec.supported_ops = (
            [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if variant == "int8"
            else [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        )
    elif variant != "dynamic":
        raise ValueError(f"unknown TFLite variant {variant!r}")
    return conv


def _samples(windows: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
    for w in windows:
        yield [w[None, :, :, None].astype(np.float32)]


def set_static_shapes(blob: bytes, inputs: dict[str, list[int]]) -> bytes:
    """Graph surgery: give every tensor of a converted graph the static shape it has for `inputs`.

    The interpreter (without delegates) propagates the input shapes through the graph; those shapes are
    written into the flatbuffer's tensors, and the shape signatures (-1 for symbolic sizes) dropped.
    """
    from deepisp.export._flatbuffers import utils

    interpreter_class = tflite_interpreter_class()
    it = interpreter_class(model_content=blob, experimental_op_resolver_type=_no_delegates(interpreter_class))
    for name, detail in it.get_signature_runner().get_input_details().items():
        it.resize_tensor_input(detail["index"], inputs[name], strict=False)
    it.allocate_tensors()
    shapes = {d["index"]: [int(x) for x in d["shape"]] for d in it.get_tensor_details()}
    model = utils.read_model_from_bytearray(bytearray(blob))
    for i, tensor in enumerate(model.subgraphs[0].tensors):
        if i in shapes and tensor.shape is not None and len(tensor.shape) == len(shapes[i]):
            tensor.shape = shapes[i]
            tensor.shapeSignature = None
    return bytes(utils.convert_object_to_bytearray(model))


def _no_delegates(interpreter_class):
    """OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES of the interpreter's own module (XNNPACK would
    rewrite the graph before its tensor shapes are read)."""
    import importlib

    return importlib.import_module(interpreter_class.__module__).OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


class TfliteExporter(Exporter):
    """Every TFLite variant of one model at a static window shape, converted from the TensorFlow twin."""

    def __init__(self, model: DeepISP, window: tuple[int, int]):
        super().__init__(model, window)
        self.graphs = tf_graphs(model)

    def build(self, variant: str, calibration: list[np.ndarray] | None = None) -> BuiltVariant:
        """The variant's tile (and color) graph; the OWN_RANGES variants carry the ranges calibrated on
        `calibration` and report where int8 loses (`extra["int8_points"]`)."""
        if variant not in OWN_RANGES:
            return convert(self.graphs, variant, self.window, self.model.cfg.hl_width, calibration)
        ranges = calibrated_ranges(self.model, calibration)
        built = convert(tf_graphs(self.model, ranges), variant, self.window, self.model.cfg.hl_width, calibration)
        # Two data windows: window 0 is the calibration ramp, not an image (only it, with --calib-windows 1).
        built.extra["int8_points"] = point_costs(self.model, ranges, calibration[1:3] or calibration[:1])
        return built

    def check(self, blob: bytes) -> dict:
        return check(blob)


def convert(graphs: dict[str, tf.Module], variant: str, window: tuple[int, int], hl_width: int, calibration: list[np.ndarray] | None = None) -> BuiltVariant:
    """Convert the tile (and color) graph of `tf_graphs` for one variant at a static `window`."""
    h, w = window
    tile = mixed_int8(graphs["tile"], calibration) if variant == "int8-mixed" else converter(graphs["tile"], variant, calibration).convert()
    blobs = {"tile": set_static_shapes(tile, {TileIO.MOSAIC: [1, h, w, 1]})}
    if "color" in graphs:
        color = converter(graphs["color"], "fp16" if variant == "fp16" else "fp32").convert()
        blobs["color"] = set_static_shapes(color, {ColorIO.IMAGE: [1, h, w, 3], ColorIO.MEAN: [1, hl_width]})
    return BuiltVariant(variant, blobs, {g: TARGETS[variant][g] for g in blobs})


def mixed_int8(module: tf.Module, calibration: list[np.ndarray]) -> bytes:
    """int8 with the MIXED_FLOAT_OPS left in float (selective quantization by the QuantizationDebugger)."""
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(MIXED_FLOAT_OPS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the debugger uses tf.lite.Interpreter, deprecated for LiteRT
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter(module, "int8", calibration), debug_dataset=lambda: _samples(calibration[:1]), debug_options=options
        )
        return debugger.get_nondebug_quantized_model()
