"""The input and output names of the two exported graphs (deepisp.export.graphs: the PyTorch modules;
tf_graphs: their TensorFlow twin), torch-free: the ONNX names, the TFLite signature's, the metadata's and the
runners' keys. See deepisp.export for what each graph does.
"""

from __future__ import annotations

from deepisp.options import Mode


class TileIO:
    """Pass 1: mosaic window -> low-level image (+ high-level cell map, full models)."""

    MOSAIC, IMAGE, CELLS = "mosaic", "image", "cells"

    @classmethod
    def outputs(cls, mode: str) -> list[str]:
        """The tile graph's outputs for a model of `mode`, in order."""
        return [cls.IMAGE] if mode == Mode.JDD else [cls.IMAGE, cls.CELLS]


class ColorIO:
    """Pass 2: low-level image block + global mean -> output (full models)."""

    IMAGE, MEAN, OUTPUT = "image", "mean", "output"


# The inputs by which a graph file proves its role: tile and color graphs embed the same metadata, so a tile graph
# renamed onto the color graph's name (and back) would pass the name check and fail deep inside the runtime.
ROLE_INPUTS = {"tile": {TileIO.MOSAIC}, "color": {ColorIO.IMAGE, ColorIO.MEAN}}
