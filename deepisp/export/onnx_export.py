"""ONNX graphs of a model (fp32, dynamic spatial size) from the PyTorch modules in `graphs`.

torch.onnx's dynamo exporter (opset 18) with H and W of the tile graph symbolic (even sizes: the
demosaic is a stride-2 conv + DepthToSpace), so ONNX Runtime runs any window shape of the plan.
Reflection padding exports as Pad(mode="reflect"), which ONNX Runtime implements on CPU.
torch's per-node source locations (metadata `pkg.torch.onnx.stack_trace`: file paths and line numbers of
the exporting checkout) are dropped, so the same model gives the same bytes from any checkout and the file
does not carry the exporting machine's paths.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from deepisp.export.backends import BuiltVariant, Exporter
from deepisp.export.graph_io import ColorIO, TileIO
from deepisp.export.graphs import ColorGraph, TileGraph
from deepisp.options import Mode

STACK_TRACE = "pkg.torch.onnx.stack_trace"


def _export(module: torch.nn.Module, args: tuple, input_names: list[str], output_names: list[str], dynamic_shapes: dict) -> bytes:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" per missing op
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, input_names=input_names, output_names=output_names, dynamic_shapes=dynamic_shapes, dynamo=True, verbose=False)
    proto = program.model_proto
    for node in [*proto.graph.node, *(n for f in proto.functions for n in f.node)]:
        kept = [(p.key, p.value) for p in node.metadata_props if p.key != STACK_TRACE]
        del node.metadata_props[:]
        for key, value in kept:
            node.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()


class OnnxExporter(Exporter):
    """fp32 graphs, traced at the window shape with symbolic H, W (any window shape runs)."""

    def build(self, variant: str, calibration: list[np.ndarray] | None = None) -> BuiltVariant:
        """The tile graph (and color graph, full models) as ONNX bytes; ONNX has one variant, fp32."""
        model = self.model
        h, w = torch.export.Dim("half_h", min=2), torch.export.Dim("half_w", min=2)
        mosaic = torch.rand(1, 1, *self.window)
        outputs = TileIO.outputs(model.cfg.mode)
        graphs = {"tile": _export(TileGraph(model), (mosaic,), [TileIO.MOSAIC], outputs, {TileIO.MOSAIC: {2: 2 * h, 3: 2 * w}})}
        if model.cfg.mode == Mode.FULL:
            image, mean = torch.rand(1, 3, *self.window), torch.rand(1, model.cfg.hl_width)
            ih, iw = torch.export.Dim("h", min=1), torch.export.Dim("w", min=1)
            names = [ColorIO.IMAGE, ColorIO.MEAN]
            graphs["color"] = _export(ColorGraph(model), (image, mean), names, [ColorIO.OUTPUT], dict(zip(names, ({2: ih, 3: iw}, None))))
        return BuiltVariant(variant, graphs, dict.fromkeys(graphs, "cpu"))
