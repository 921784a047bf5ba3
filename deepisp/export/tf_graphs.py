"""The two exported graphs re-expressed in TensorFlow (NHWC) with the PyTorch weights, for TFLite.

Why not ONNX -> onnx2tf: its Python-3.11 releases pin TensorFlow 2.19 and NumPy 1.x, its layout inference
mis-handles channel slices, and its quantization is TensorFlow's converter anyway. The network is a
handful of op types, so writing it once in TF gives full control of the TFLite graph: every op below is
on the GPU delegate's list (see `delegates`), there are no TRANSPOSE ops, and mirror padding is REFLECT
with a 4x2 paddings tensor, the only form the GPU delegate takes.

    tile:  mosaic [1,S_h,S_w,1] -> {"image": [1,S_h,S_w,3], "cells": [1,S_h/A,S_w/A,C]}  (cells: full only;
           mosaic and image companded for `compand` models, as in deepisp.export.graphs)
    color: image [1,S_h,S_w,3], mean [1,C] -> {"output": [1,S_h,S_w,3]}

Weight layouts: conv [O,I,kh,kw] -> [kh,kw,I,O]; the demosaic's 12 phase kernels are ordered for
DEPTH_TO_SPACE (channel (dy*2+dx)*3 + c). Packed models (micro presets, phone-jdd) keep those 12 phase channels as
their working image, so the demosaic's DEPTH_TO_SPACE moves to the end of the tile graph; PyTorch's packing
orders channels c*4 + dy*2 + dx instead, so the image channels of their convs' weights are permuted. The FC that gives W is split into two FCs whose rows are
permuted so they produce the 1x1-conv filter [1,1,9,3] of the quadratic monomials and the 3 offsets
directly (W's column "1"), so pass 2 is SPLIT, MUL, CONCATENATION, CONV_2D and ADD with no slicing.

The running image is never concatenated with the features: each conv that reads both (every block after the
first, the first high-level conv) is written as a conv over the features plus a conv over the image (the
same weights, split by input channel, the same MACs). TFLite's quantizer gives a CONCATENATION's inputs one
shared scale, so a concatenated image would be rounded at the ReLU features' step (~0.01-0.02, up to 5x the
image's own range / 256) at every block; split, the image keeps its own scale and int8 loses far less.

int8 ranges (`ranges`, deepisp.export.int8.calibrated_ranges): TFLite's converter calibrates every tensor's range
itself, but it widens the range of an ADD operand to the ADD's result (measured: each block's residual
s*tanh, at most +-0.07, got the running image's range, up to 0.47, so a 3-7x coarser step than its own).
Given ranges, the graph carries a FakeQuant at every point after the demosaic where the converter quantizes
(deepisp.export.quant_points), and the converter takes those ranges as they are: the
exported int8 graph then rounds where QuantizedTile simulates, at the same steps (the mosaic before the
demosaic keeps the converter's range; biases and integer arithmetic round slightly differently). The int8
graph also forms its image estimate differently, the same function in float: the input plus one sum of every
block's residual (a CONCATENATION of the TANH outputs and a 1x1 conv; quant_points: residual_sum, output),
so the running image's rounding after each block reaches only the next block, not the output.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import torch.nn as nn

from deepisp.demosaic import phase_kernels
from deepisp.errors import DeepISPError
from deepisp.export import quant_points
from deepisp.export.graph_io import ColorIO, TileIO
from deepisp.export.int8 import residual_sum_weight
from deepisp.model.config import MONOMIAL_ORDER, N_MONOMIALS
from deepisp.model.network import DeepISP, HighLevelStage, LowLevelBlock, LowLevelStage
from deepisp.options import Mode

_REFLECT_1 = [[0, 0], [1, 1], [1, 1], [0, 0]]
# PyTorch channel of each channel of a packed image in TF's DEPTH_TO_SPACE order: TF (dy*2+dx)*3 + c holds
# what pixel_unshuffle puts in c*4 + dy*2 + dx.
_TORCH_OF_TF = [(t % 3) * 4 + t // 3 for t in range(12)]
# The module types this twin re-expresses; anything else in a model is refused (check_translatable).
_KNOWN = (DeepISP, LowLevelStage, LowLevelBlock, HighLevelStage, nn.ModuleList, nn.Sequential, nn.Conv2d, nn.ReflectionPad2d, nn.ReLU, nn.MaxPool2d, nn.Linear)
# One high-level layer, as HighLevelStage builds it.
_HIGH_LEVEL_LAYER = (nn.ReflectionPad2d, nn.Conv2d, nn.ReLU, nn.MaxPool2d)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _conv(x: tf.Tensor, conv: nn.Conv2d, stride: int = 1, inputs: list[int] | None = None, outputs: list[int] | None = None, bias: bool = True) -> tf.Tensor:
    """A PyTorch Conv2d (padding 0) on NHWC input; the caller pads. `inputs`/`outputs`: the PyTorch channel
    behind each TF input/output channel, where the orders differ (packed images) or where x holds only some
    of the conv's input channels; `bias=False` leaves the bias out (the other part of a split conv adds it)."""
    weight, b = conv.weight, conv.bias
    if inputs is not None:
        weight = weight[:, inputs]
    if outputs is not None:
        weight, b = weight[outputs], b[outputs]
    y = tf.nn.conv2d(x, tf.constant(_np(weight.permute(2, 3, 1, 0))), strides=stride, padding="VALID")
    return tf.nn.bias_add(y, tf.constant(_np(b))) if bias else y


def _conv_features_and_image(
    features: tf.Tensor | None,
    image: tf.Tensor,
    conv: nn.Conv2d,
    image_order: list[int] | None,
    stride: int = 1,
    outputs: list[int] | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
    name: str = "",
) -> tf.Tensor:
    """The conv over PyTorch's block input [features, image] (both already reflect-padded), as a conv over the
    features plus a conv over the image (module docstring: no shared quantization scale). `features` None:
    the image is the whole input (the first block). `image_order`: the PyTorch image channel of each TF one.
    With `ranges`, each part gets the range of point `name`_on_features / `name`_on_image."""
    n_features = 0 if features is None else features.shape[-1]
    image_inputs = [n_features + c for c in (image_order or range(image.shape[-1]))]
    on_image = _conv(image, conv, stride, inputs=image_inputs, outputs=outputs, bias=features is None)
    if features is None:
        return on_image
    on_features = _conv(features, conv, stride, inputs=list(range(n_features)), outputs=outputs)
    return _quantized(on_features, ranges, quant_points.on_features(name)) + _quantized(on_image, ranges, quant_points.on_image(name))


def _quantized(x: tf.Tensor, ranges: dict[str, tuple[float, float]] | None, name: str) -> tf.Tensor:
    """x with the int8 range of quantization point `name` fixed (a FakeQuant), or unchanged without ranges."""
    if ranges is None:
        return x
    lo, hi = ranges[name]
    return tf.quantization.fake_quant_with_min_max_args(x, min=lo, max=hi, num_bits=8)


def _residual_sum(model: DeepISP, first: tf.Tensor, tanhs: list[tf.Tensor], ranges: dict[str, tuple[float, float]]) -> tf.Tensor:
    """The int8 graph's image estimate: the network's input `first` plus one sum of every block's residual
    (quant_points.RESIDUAL_SUM: a 1x1 conv over the concatenated TANH outputs), instead of the running image
    rounded after every block (module doc). The converter keeps the concatenation on TANH's fixed int8 grid
    (step 1/128, zero point 0), so it rounds nothing."""
    concatenated = tf.concat(tanhs, axis=-1)
    weight = tf.constant(_np(residual_sum_weight(model).permute(2, 3, 1, 0)))  # block-diagonal: channel order-free
    residual_sum = _quantized(tf.nn.conv2d(concatenated, weight, strides=1, padding="VALID"), ranges, quant_points.RESIDUAL_SUM)
    return _quantized(first + residual_sum, ranges, quant_points.OUTPUT)


def _reflect(x: tf.Tensor) -> tf.Tensor:
    return tf.pad(x, _REFLECT_1, mode="REFLECT")


def demosaic(mosaic: tf.Tensor, packed: bool = False) -> tf.Tensor:
    """Bilinear demosaic, [1,H,W,1] canonical RGGB (H,W even) -> [1,H,W,3]: stride-2 conv + DEPTH_TO_SPACE;
    `packed`: the 12 phase channels [1,H/2,W/2,12] before DEPTH_TO_SPACE."""
    # (c, dy, dx, u, v) -> (u, v, 1, (dy, dx, c)) so output channel (dy*2 + dx)*3 + c, TF's depth-to-space order.
    kernel = _np(phase_kernels().permute(3, 4, 1, 2, 0).reshape(4, 4, 1, 12))
    phases = tf.nn.conv2d(_reflect(mosaic), tf.constant(kernel), strides=2, padding="VALID")
    return phases if packed else tf.nn.depth_to_space(phases, 2)


def check_translatable(model: DeepISP) -> None:
    """Refuse a model with a layer this twin does not re-express (it would silently drop it otherwise).

    The twin mirrors deepisp.model layer for layer (convs that read [features, image] split in two, see the
    module doc); tests/test_export.py::test_tf_graph_equals_torch_window keeps
    them equal. A new layer type in the model must be added here too."""
    unknown = sorted({type(m).__name__ for m in model.modules() if type(m) not in _KNOWN})
    if model.cfg.mode == Mode.FULL:
        layers = list(model.high_level.layers)
        pattern = [type(m) for m in layers] == list(_HIGH_LEVEL_LAYER) * model.cfg.n_hl
        if not pattern or any(c.stride != (2, 2) for c in layers[1::4]) or any(p.kernel_size != 2 for p in layers[3::4]):
            unknown.append("high-level stage other than [reflection pad 1, 3x3 conv stride 2, ReLU, 2x2 max-pool] x n_hl")
    if unknown:
        raise DeepISPError(f"the TFLite exporter does not know {', '.join(unknown)}: add it to deepisp/export/tf_graphs.py")


def tile_forward(model: DeepISP, mosaic: tf.Tensor, ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, tf.Tensor]:
    """Pass 1, the same function as `deepisp.export.graphs.TileGraph` (the concatenations written as split convs);
    `ranges`: int8 ranges of the quantization points (module doc), or None."""
    cfg = model.cfg
    image = _quantized(demosaic(mosaic, packed=cfg.packed), ranges, quant_points.INPUT)
    image_order = _TORCH_OF_TF if cfg.packed else None  # PyTorch channel behind each TF image channel
    features, first, tanhs = None, image, []
    blocks = model.low_level.blocks
    for k, block in enumerate(blocks):
        padded = (None if features is None else _reflect(features), _reflect(image))  # the block's input
        point = quant_points.residual(k)
        pre = _conv_features_and_image(*padded, block.conv_residual, image_order, outputs=image_order, ranges=ranges, name=point)
        residual = tf.tanh(_quantized(pre, ranges, point))
        tanhs.append(residual)
        if block.conv_features is not None:
            point = quant_points.features(k)
            pre = _conv_features_and_image(*padded, block.conv_features, image_order, ranges=ranges, name=point)
            features = _quantized(tf.nn.relu(pre), ranges, point)
        if ranges is not None and k == len(blocks) - 1:
            image = _residual_sum(model, first, tanhs, ranges)
            break
        if block.residual_scale is not None:
            residual = _quantized(residual * tf.constant(_np(block.residual_scale)), ranges, quant_points.scaled(k))
        image = _quantized(image + residual, ranges, quant_points.image(k))
    out = {TileIO.IMAGE: tf.nn.depth_to_space(image, 2) if cfg.packed else image}
    if cfg.mode == Mode.JDD:
        return out
    x = None
    for k, conv in enumerate(model.high_level.layers[1::4]):
        if k == 0:  # reads the last block's output [features, image]
            padded = (_reflect(features), _reflect(image))
            pre = _conv_features_and_image(*padded, conv, image_order, stride=2, ranges=ranges, name=quant_points.FIRST_HIGH_LEVEL_CONV)
        else:
            pre = _conv(_reflect(x), conv, stride=2)
        x = tf.nn.max_pool2d(_quantized(tf.nn.relu(pre), ranges, quant_points.high_level(k)), 2, 2, "VALID")
    return {**out, TileIO.CELLS: x}


def color_forward(model: DeepISP, image: tf.Tensor, mean: tf.Tensor) -> dict[str, tf.Tensor]:
    """Pass 2: W from the global mean, then the quadratic transform as a 1x1 conv with runtime weights."""
    weight, bias = _np(model.to_w.weight), _np(model.to_w.bias)  # rows c*10 + m
    quad = [c * N_MONOMIALS + m for m in range(N_MONOMIALS - 1) for c in range(3)]  # filter [1,1,9,3] order
    const = [c * N_MONOMIALS + MONOMIAL_ORDER.index("1") for c in range(3)]
    filt = tf.reshape(tf.matmul(mean, weight[quad].T) + bias[quad], [1, 1, N_MONOMIALS - 1, 3])
    offset = tf.matmul(mean, weight[const].T) + bias[const]  # [1,3]
    channel = dict(zip("rgb", tf.split(image, 3, axis=-1)))
    # MONOMIAL_ORDER without the constant "1" (the offset above): "rg" is r * g, "r" is r.
    mono = tf.concat([channel[m[0]] * channel[m[1]] if len(m) == 2 else channel[m] for m in MONOMIAL_ORDER if m != "1"], axis=-1)
    return {ColorIO.OUTPUT: tf.nn.conv2d(mono, filt, strides=1, padding="VALID") + offset}


def tf_graphs(model: DeepISP, ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, tf.Module]:
    """The graphs {"tile": ..., "color": ... (full only)} with symbolic height and width; `ranges`: the tile
    graph's int8 ranges (module doc: for the int8 variant), or None.

    Each is a tf.Module whose `serve` method is the graph; the module is what the TFLite converter needs
    to write a SignatureDef, so apps and runners find inputs and outputs by name. The spatial size is left
    open so calibration can run on small windows; `tflite_export` fixes the exported window shape after
    conversion. The ops have no shape-dependent constants, so any even size gives the same graph.
    """
    cfg = model.cfg
    check_translatable(model)
    graphs = {"tile": tf.Module()}
    graphs["tile"].serve = tf.function(
        lambda mosaic: tile_forward(model, mosaic, ranges), input_signature=[tf.TensorSpec([1, None, None, 1], tf.float32, name=TileIO.MOSAIC)]
    )
    if cfg.mode == Mode.FULL:
        graphs["color"] = tf.Module()
        graphs["color"].serve = tf.function(
            lambda image, mean: color_forward(model, image, mean),
            input_signature=[
                tf.TensorSpec([1, None, None, 3], tf.float32, name=ColorIO.IMAGE),
                tf.TensorSpec([1, cfg.hl_width], tf.float32, name=ColorIO.MEAN),
            ],
        )
    return graphs
