"""The two exported graphs re-expressed in TensorFlow (NHWC) with the PyTorch weights, for TFLite.

Why not ONNX -> onnx2tf: its Python-3.11 releases pin TensorFlow 2.19 and NumPy 1.x, its layout inference
mis-handles channel slices, and its quantization is TensorFlow's converter anyway. The network is a
handful of op types, so writing it once in TF gives full control of the TFLite graph: every op below is
on the GPU delegate's list (see `delegates`), there are no TRANSPOSE ops, and mirror padding is REFLECT
with a 4x2 paddings tensor, the only form the GPU delegate takes.

    tile:  mosaic [1,S_h,S_w,1] -> {"image": [1,S_h,S_w,3], "cells": [1,S_h/A,S_w/A,C]}  (cells: full only)
    color: image [1,S_h,S_w,3], mean [1,C] -> {"output": [1,S_h,S_w,3]}

Weight layouts: conv [O,I,kh,kw] -> [kh,kw,I,O]; the demosaic's 12 phase kernels are ordered for
DEPTH_TO_SPACE (channel (dy*2+dx)*3 + c). Packed models (micro presets) keep those 12 phase channels as
their working image, so the demosaic's DEPTH_TO_SPACE moves to the end of the tile graph; PyTorch's packing
orders channels c*4 + dy*2 + dx instead, so the image channels of their convs' weights are permuted. The FC that gives W is split into two FCs whose rows are
permuted so they produce the 1x1-conv filter [1,1,9,3] of the quadratic monomials and the 3 offsets
directly (W's column "1"), so pass 2 is SPLIT, MUL, CONCATENATION, CONV_2D and ADD with no slicing.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import torch.nn as nn

from deepisp.demosaic import phase_kernels
from deepisp.errors import DeepISPError
from deepisp.export.graphs import ColorGraph, TileGraph
from deepisp.model import MONOMIAL_ORDER, N_MONOMIALS, DeepISP, HighLevelStage, LowLevelBlock, LowLevelStage

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


def _conv(x: tf.Tensor, conv: nn.Conv2d, stride: int = 1, inputs: list[int] | None = None, outputs: list[int] | None = None) -> tf.Tensor:
    """A PyTorch Conv2d (padding 0) on NHWC input; the caller pads. `inputs`/`outputs`: the PyTorch channel
    behind each TF input/output channel, where the orders differ (packed images)."""
    weight, bias = conv.weight, conv.bias
    if inputs is not None:
        weight = weight[:, inputs]
    if outputs is not None:
        weight, bias = weight[outputs], bias[outputs]
    kernel = tf.constant(_np(weight.permute(2, 3, 1, 0)))
    return tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=stride, padding="VALID"), tf.constant(_np(bias)))


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

    The twin mirrors deepisp.model op for op; tests/test_export.py::test_tf_graph_equals_torch_window keeps
    them equal. A new layer type in the model must be added here too."""
    unknown = sorted({type(m).__name__ for m in model.modules() if type(m) not in _KNOWN})
    if model.cfg.mode == "full":
        layers = list(model.high_level.layers)
        pattern = [type(m) for m in layers] == list(_HIGH_LEVEL_LAYER) * model.cfg.n_hl
        if not pattern or any(c.stride != (2, 2) for c in layers[1::4]) or any(p.kernel_size != 2 for p in layers[3::4]):
            unknown.append("high-level stage other than [reflection pad 1, 3x3 conv stride 2, ReLU, 2x2 max-pool] x n_hl")
    if unknown:
        raise DeepISPError(f"the TFLite exporter does not know {', '.join(unknown)}: add it to deepisp/export/tf_graphs.py")


def tile_forward(model: DeepISP, mosaic: tf.Tensor) -> dict[str, tf.Tensor]:
    """Pass 1, mirroring `deepisp.export.graphs.TileGraph` op for op."""
    cfg = model.cfg
    image = demosaic(mosaic, packed=cfg.packed)
    # PyTorch channel behind each TF channel of the image and of a block input (features, then image).
    image_order = _TORCH_OF_TF if cfg.packed else None
    block_order = list(range(cfg.n_features)) + [cfg.n_features + c for c in _TORCH_OF_TF] if cfg.packed else None
    x = image
    for k, block in enumerate(model.low_level.blocks):
        padded = _reflect(x)  # both convs read the whole padded block input (features and image)
        inputs = image_order if k == 0 else block_order
        residual = tf.tanh(_conv(padded, block.conv_residual, inputs=inputs, outputs=image_order))
        if block.residual_scale is not None:
            residual = residual * tf.constant(_np(block.residual_scale))
        image = image + residual
        if block.conv_features is not None:
            x = tf.concat([tf.nn.relu(_conv(padded, block.conv_features, inputs=inputs)), image], axis=-1)
    out = {TileGraph.IMAGE: tf.nn.depth_to_space(image, 2) if cfg.packed else image}
    if cfg.mode == "jdd":
        return out
    for k, conv in enumerate(model.high_level.layers[1::4]):
        x = tf.nn.max_pool2d(tf.nn.relu(_conv(_reflect(x), conv, stride=2, inputs=block_order if k == 0 else None)), 2, 2, "VALID")
    return {**out, TileGraph.CELLS: x}


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
    return {ColorGraph.OUTPUT: tf.nn.conv2d(mono, filt, strides=1, padding="VALID") + offset}


def tf_graphs(model: DeepISP) -> dict[str, tf.Module]:
    """The graphs {"tile": ..., "color": ... (full only)} with symbolic height and width.

    Each is a tf.Module whose `serve` method is the graph; the module is what the TFLite converter needs
    to write a SignatureDef, so apps and runners find inputs and outputs by name. The spatial size is left
    open so calibration can run on small windows; `tflite_export` fixes the exported window shape after
    conversion. The ops have no shape-dependent constants, so any even size gives the same graph.
    """
    cfg = model.cfg
    check_translatable(model)
    graphs = {"tile": tf.Module()}
    graphs["tile"].serve = tf.function(
        lambda mosaic: tile_forward(model, mosaic), input_signature=[tf.TensorSpec([1, None, None, 1], tf.float32, name=TileGraph.MOSAIC)]
    )
    if cfg.mode == "full":
        graphs["color"] = tf.Module()
        graphs["color"].serve = tf.function(
            lambda image, mean: color_forward(model, image, mean),
            input_signature=[
                tf.TensorSpec([1, None, None, 3], tf.float32, name=ColorGraph.IMAGE),
                tf.TensorSpec([1, cfg.hl_width], tf.float32, name=ColorGraph.MEAN),
            ],
        )
    return graphs
