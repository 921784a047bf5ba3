"""ONNX graphs of a model (fp32, dynamic spatial size) from the PyTorch modules in `graphs`.

torch.onnx's dynamo exporter (opset 18) with H and W of the tile graph symbolic (even sizes: the
demosaic is a stride-2 conv + DepthToSpace), so ONNX Runtime runs any window shape of the plan.
Reflection padding exports as Pad(mode="reflect"), which ONNX Runtime implements on CPU.
torch's per-node source locations (metadata `pkg.torch.onnx.stack_trace`: file paths and line numbers of
the exporting checkout) are dropped, so the same model gives the same bytes from any checkout and the file
does not carry the exporting machine's paths.
"""

from __future__ import annotations

import json
import logging
import warnings

import torch

from deepisp.export.graphs import ColorGraph, TileGraph
from deepisp.export.pipeline import BuiltVariant
from deepisp.model import DeepISP

VARIANTS = ("fp32",)
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


def build(model: DeepISP, window: tuple[int, int], variant: str = "fp32") -> BuiltVariant:
    """The tile graph (and color graph, full models) as ONNX bytes, traced at `window` with symbolic H, W."""
    if variant not in VARIANTS:
        raise ValueError(f"ONNX export writes {', '.join(VARIANTS)}; quantized variants are TFLite (export/to_tflite.py)")
    h, w = torch.export.Dim("half_h", min=2), torch.export.Dim("half_w", min=2)
    mosaic = torch.rand(1, 1, *window)
    outputs = TileGraph.output_names(model.cfg.mode)
    graphs = {"tile": _export(TileGraph(model), (mosaic,), [TileGraph.MOSAIC], outputs, {TileGraph.MOSAIC: {2: 2 * h, 3: 2 * w}})}
    targets = {"tile": "cpu"}
    if model.cfg.mode == "full":
        image, mean = torch.rand(1, 3, *window), torch.rand(1, model.cfg.hl_width)
        ih, iw = torch.export.Dim("h", min=1), torch.export.Dim("w", min=1)
        names = [ColorGraph.IMAGE, ColorGraph.MEAN]
        graphs["color"] = _export(ColorGraph(model), (image, mean), names, [ColorGraph.OUTPUT], dict(zip(names, ({2: ih, 3: iw}, None))))
        targets["color"] = "cpu"
    return BuiltVariant(variant, graphs, targets)


def embed(blob: bytes, meta: dict) -> bytes:
    """Store the metadata JSON as the ONNX model's metadata_props["deepisp"]."""
    import onnx

    proto = onnx.load_from_string(blob)
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != "deepisp"]
    del proto.metadata_props[:]
    for key, value in kept:
        proto.metadata_props.add(key=key, value=value)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "deepisp", json.dumps(meta)
    return proto.SerializeToString()
