"""The two exported graphs re-expressed in TensorFlow (NHWC) with the PyTorch weights, for TFLite.

Why not ONNX -> onnx2tf: its Python-3.11 releases pin TensorFlow 2.19 and NumPy 1.x, its layout inference
mis-handles channel slices, and its quantization is TensorFlow's converter anyway. The network is a
handful of op types, so writing it once in TF gives full control of the TFLite graph: every op below is
on the GPU delegate's list (see `delegates`), there are no TRANSPOSE ops, and mirror padding is REFLECT
with a 4x2 paddings tensor, the only form the GPU delegate takes.

    tile:  mosaic [1,S_h,S_w,1] -> {"image": [1,S_h,S_w,3], "cells": [1,S_h/A,S_w/A,C]}  (cells: full only)
    color: image [1,S_h,S_w,3], mean [1,C] -> {"output": [1,S_h,S_w,3]}

Weight layouts: conv [O,I,kh,kw] -> [kh,kw,I,O]; the demosaic's 12 phase kernels are ordered for
DEPTH_TO_SPACE (channel (dy*2+dx)*3 + c); the FC that gives W is split into two FCs whose rows are
permuted so they produce the 1x1-conv filter [1,1,9,3] of the quadratic monomials and the 3 offsets
directly (W's column "1"), so pass 2 is SPLIT, MUL, CONCATENATION, CONV_2D and ADD with no slicing.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import torch.nn as nn

from deepisp.demosaic import phase_kernels
from deepisp.model import MONOMIAL_ORDER, N_MONOMIALS, DeepISP

_REFLECT_1 = [[0, 0], [1, 1], [1, 1], [0, 0]]


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _conv(x: tf.Tensor, conv: nn.Conv2d, stride: int = 1) -> tf.Tensor:
    """A PyTorch Conv2d (padding 0) on NHWC input; the caller pads."""
    kernel = tf.constant(_np(conv.weight.permute(2, 3, 1, 0)))
    return tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=stride, padding="VALID"), tf.constant(_np(conv.bias)))


def _reflect(x: tf.Tensor) -> tf.Tensor:
    return tf.pad(x, _REFLECT_1, mode="REFLECT")


def demosaic(mosaic: tf.Tensor) -> tf.Tensor:
    """Bilinear demosaic, [1,H,W,1] canonical RGGB (H,W even) -> [1,H,W,3]: stride-2 conv + DEPTH_TO_SPACE."""
    # (c, dy, dx, u, v) -> (u, v, 1, (dy, dx, c)) so output channel (dy*2 + dx)*3 + c, TF's depth-to-space order.
    kernel = _np(phase_kernels().permute(3, 4, 1, 2, 0).reshape(4, 4, 1, 12))
    return tf.nn.depth_to_space(tf.nn.conv2d(_reflect(mosaic), tf.constant(kernel), strides=2, padding="VALID"), 2)


def tile_forward(model: DeepISP, mosaic: tf.Tensor) -> dict[str, tf.Tensor]:
    """Pass 1, mirroring `deepisp.export.graphs.TileGraph` op for op."""
    image = demosaic(mosaic)
    x = image
    for block in model.low_level.blocks:
        padded = _reflect(x)  # both convs read the whole padded block input (features and image)
        residual = tf.tanh(_conv(padded, block.conv_residual))
        if block.residual_scale is not None:
            residual = residual * tf.constant(_np(block.residual_scale))
        image = image + residual
        if block.conv_features is not None:
            x = tf.concat([tf.nn.relu(_conv(padded, block.conv_features)), image], axis=-1)
    if model.cfg.mode == "jdd":
        return {"image": image}
    for conv in (m for m in model.high_level.layers if isinstance(m, nn.Conv2d)):
        x = tf.nn.max_pool2d(tf.nn.relu(_conv(_reflect(x), conv, stride=2)), 2, 2, "VALID")
    return {"image": image, "cells": x}


def color_forward(model: DeepISP, image: tf.Tensor, mean: tf.Tensor) -> dict[str, tf.Tensor]:
    """Pass 2: W from the global mean, then the quadratic transform as a 1x1 conv with runtime weights."""
    weight, bias = _np(model.to_w.weight), _np(model.to_w.bias)  # rows c*10 + m
    quad = [c * N_MONOMIALS + m for m in range(N_MONOMIALS - 1) for c in range(3)]  # filter [1,1,9,3] order
    const = [c * N_MONOMIALS + MONOMIAL_ORDER.index("1") for c in range(3)]
    filt = tf.reshape(tf.matmul(mean, weight[quad].T) + bias[quad], [1, 1, N_MONOMIALS - 1, 3])
    offset = tf.matmul(mean, weight[const].T) + bias[const]  # [1,3]
    r, g, b = tf.split(image, 3, axis=-1)
    # MONOMIAL_ORDER without the constant: rr, rg, rb, r, gg, gb, g, bb, b.
    mono = tf.concat([r * r, r * g, r * b, r, g * g, g * b, g, b * b, b], axis=-1)
    return {"output": tf.nn.conv2d(mono, filt, strides=1, padding="VALID") + offset}


def tf_graphs(model: DeepISP) -> dict[str, tf.Module]:
    """The graphs {"tile": ..., "color": ... (full only)} with symbolic height and width.

    Each is a tf.Module whose `serve` method is the graph; the module is what the TFLite converter needs
    to write a SignatureDef, so apps and runners find inputs and outputs by name. The spatial size is left
    open so calibration can run on small windows; `tflite_export` fixes the exported window shape after
    conversion. The ops have no shape-dependent constants, so any even size gives the same graph.
    """
    cfg = model.cfg
    graphs = {"tile": tf.Module()}
    graphs["tile"].serve = tf.function(
        lambda mosaic: tile_forward(model, mosaic), input_signature=[tf.TensorSpec([1, None, None, 1], tf.float32, name="mosaic")]
    )
    if cfg.mode == "full":
        graphs["color"] = tf.Module()
        graphs["color"].serve = tf.function(
            lambda image, mean: color_forward(model, image, mean),
            input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32, name="image"), tf.TensorSpec([1, cfg.hl_width], tf.float32, name="mean")],
        )
    return graphs
