"""Will a .tflite graph run wholly on a phone's GPU delegate or NPU (NNAPI)? Rules checked offline.

TensorFlow's `Analyzer.analyze(gpu_compatibility=True)` is run too and its verdict kept, but current
builds (TF 2.21, LiteRT 2.3) no longer run the per-op GPU check: they print "looks compatible" for any
graph (their model_analyzer.cc never fills its incompatible-node list). So the verdict that counts is
the rule check here, taken from the GPU delegate's own sources (LiteRT `tflite/tools/versioning/
gpu_compatibility.cc` and `tflite/delegates/gpu/common/model_builder.cc`):

    GPU:  every op on the list below within its version cap; MIRROR_PAD only in REFLECT mode with a 4x2
          paddings tensor; MEAN only with constant int32 axes; tensors float32/float16, or int8/uint8 in
          quantized graphs (delegate built with quantized-model support); int16 activations never run on it.
    NPU:  static shapes, full-integer activations (int8/uint8; int32 only for biases and shapes; float
          allowed only on the graph's own inputs/outputs around QUANTIZE/DEQUANTIZE), ops on NNAPI's list.

Each verdict lists the ops that would fall back to the CPU, with the reason.
"""

from __future__ import annotations

import contextlib
import io

from deepisp.export._flatbuffers import schema, utils

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

# op -> highest version the GPU delegate parses (model_builder.cc); None = no version check found.
GPU_OPS: dict[str, int | None] = {
    "ADD": 2,
    "CONCATENATION": 2,
    "CONV_2D": 6,
    "DEPTHWISE_CONV_2D": 6,
    "DEPTH_TO_SPACE": None,
    "FULLY_CONNECTED": 9,
    "MAX_POOL_2D": 2,
    "MEAN": None,
    "MIRROR_PAD": 2,
    "MUL": 3,
    "RELU": None,
    "RESHAPE": 1,
    "SPLIT": None,
    "TANH": 2,
    "TRANSPOSE": None,
    "DEQUANTIZE": None,
    "QUANTIZE": None,
    "LOGISTIC": None,
    "SUB": None,
    "PAD": None,
}
# Ops the NNAPI delegate maps for quantized graphs. MIRROR_PAD is an NNAPI operation only from feature
# level 7 (recent Android releases); vendor delegates (Qualcomm Hexagon, MediaTek Neuron) map it directly.
NPU_OPS = {
    "ADD",
    "CONCATENATION",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE",
    "FULLY_CONNECTED",
    "MAX_POOL_2D",
    "MEAN",
    "MIRROR_PAD",
    "MUL",
    "RELU",
    "RESHAPE",
    "SPLIT",
    "TANH",
    "TRANSPOSE",
    "QUANTIZE",
    "DEQUANTIZE",
}
_FLOAT = {"FLOAT32", "FLOAT16"}
_INT = {"INT8", "UINT8"}


def _ops(model) -> list[dict]:
    """Flatten subgraph 0 into dicts: index, name, version, input/output tensor descriptions."""
    graph = model.subgraphs[0]

    def tensor(i: int) -> dict:
        t = graph.tensors[i]
        buf = model.buffers[t.buffer] if t.buffer is not None and t.buffer < len(model.buffers) else None
        const = buf is not None and buf.data is not None and len(buf.data) > 0
        sig = list(t.shapeSignature) if t.shapeSignature is not None else list(t.shape if t.shape is not None else [])
        return {"type": _TYPE_NAMES.get(t.type, str(t.type)), "const": const, "shape": list(t.shape if t.shape is not None else []), "signature": sig}

    out = []
    for k, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        out.append(
            {
                "index": k,
                "name": name,
                "version": code.version,
                "options": op.builtinOptions,
                "inputs": [tensor(i) for i in op.inputs if i >= 0],
                "outputs": [tensor(i) for i in op.outputs],
            }
        )
    return out


def _gpu_problem(op: dict, quantized: bool) -> str | None:
    name = op["name"]
    if name not in GPU_OPS:
        return "not supported by the GPU delegate"
    cap = GPU_OPS[name]
    if cap is not None and op["version"] > cap:
        return f"version {op['version']} > {cap} parsed by the GPU delegate"
    runtime = [t for t in op["inputs"] if not t["const"]] + op["outputs"]
    allowed = _FLOAT | (_INT if quantized else set())
    bad = sorted({t["type"] for t in runtime} - allowed - {"INT32"})
    if bad and not (name == "DEQUANTIZE" and bad == ["FLOAT16"]):
        return f"{'/'.join(bad)} tensors"
    if name == "MIRROR_PAD":
        if op["options"].mode != schema.MirrorPadMode.REFLECT:
            return "MIRROR_PAD must be REFLECT"
        if op["inputs"][1]["shape"] not in ([4, 2], [3, 2]):
            return f"MIRROR_PAD paddings must be 4x2 or 3x2, got {op['inputs'][1]['shape']}"
    if name == "MEAN" and not (op["inputs"][1]["const"] and op["inputs"][1]["type"] == "INT32"):
        return "MEAN axes must be a constant int32 tensor"
    return None


def _npu_problem(op: dict, graph_io: set[int]) -> str | None:
    if op["name"] not in NPU_OPS:
        return "not on NNAPI's op list"
    if any(-1 in t["signature"] for t in op["inputs"] + op["outputs"]):
        return "dynamic shape"
    if op["name"] in ("QUANTIZE", "DEQUANTIZE") and op["index"] in graph_io:
        return None  # float only at the graph's own boundary
    for t in op["inputs"] + op["outputs"]:
        if t["type"] in _INT or (t["type"] == "INT32" and t["const"]):
            continue
        return f"{t['type']} {'weights' if t['const'] else 'activations'} (not full-integer)"
    return None


def check(blob: bytes) -> dict:
    """GPU and NPU verdicts for one .tflite flatbuffer.

    Returns:
        {"ops": {name: count}, "gpu": {"ok", "fallback": [...]}, "npu": {"ok", "fallback": [...]},
         "analyzer": TF's analyzer verdict line or None}
    """
    model = utils.read_model_from_bytearray(bytearray(blob))
    ops = _ops(model)
    quantized = any(t["type"] in _INT for op in ops for t in op["outputs"])
    graph = model.subgraphs[0]
    boundary = set(graph.inputs) | set(graph.outputs)
    io_ops = {k for k, op in enumerate(graph.operators) if set(op.inputs) & boundary or set(op.outputs) & boundary}
    verdicts = {}
    for target, problem in (("gpu", lambda op: _gpu_problem(op, quantized)), ("npu", lambda op: _npu_problem(op, io_ops))):
        fallback = [f"#{op['index']} {op['name']}: {why}" for op in ops if (why := problem(op))]
        verdicts[target] = {"ok": not fallback, "fallback": fallback}
    counts: dict[str, int] = {}
    for op in ops:
        counts[op["name"]] = counts.get(op["name"], 0) + 1
    return {"ops": counts, **verdicts, "analyzer": analyzer_verdict(blob)}


def analyzer_verdict(blob: bytes) -> str | None:
    """TensorFlow's analyzer with gpu_compatibility=True: its warning lines, or its final verdict line."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_content=blob, gpu_compatibility=True)
    lines = [ln.strip() for ln in text.getvalue().splitlines()]
    warnings = [ln for ln in lines if ln.startswith("GPU COMPATIBILITY WARNING")]
    if warnings:
        return "; ".join(warnings)
    return next((ln for ln in lines if "compatible with GPU delegate" in ln), None)
