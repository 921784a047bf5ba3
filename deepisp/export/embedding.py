"""The metadata JSON (deepisp.export.metadata.ExportMetadata.to_json) stored inside a graph file, per format:
a TFLite flatbuffer's `Model.metadata` entry named "deepisp" (the schema's own mechanism; tflite-support's
metadata writer is unmaintained and pins protobuf 3), an ONNX model's `metadata_props["deepisp"]`. Readers
need neither TensorFlow nor torch (the Android harness reads graphs with these).
"""

from __future__ import annotations

import json

METADATA_NAME = "deepisp"


def embed_tflite(blob: bytes, meta: dict) -> bytes:
    """Add (or replace) the "deepisp" metadata entry (`ExportMetadata.to_json`) of a .tflite flatbuffer; other entries are kept."""
    from deepisp.export._flatbuffers import schema, utils

    model = utils.read_model_from_bytearray(bytearray(blob))
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != METADATA_NAME]
    buf = schema.BufferT()
    buf.data = list(json.dumps(meta).encode())
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(utils.convert_object_to_bytearray(model))


def embed_onnx(blob: bytes, meta: dict) -> bytes:
    """Store the metadata JSON as the ONNX model's metadata_props[METADATA_NAME]."""
    import onnx

    proto = onnx.load_from_string(blob)
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_NAME]
    del proto.metadata_props[:]
    for key, value in kept:
        proto.metadata_props.add(key=key, value=value)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_NAME, json.dumps(meta)
    return proto.SerializeToString()


def read_onnx(blob: bytes) -> dict | None:
    """The metadata JSON an ONNX graph stores (`embed_onnx`: a metadata_props entry), or None."""
    import onnx

    for p in onnx.load_from_string(blob).metadata_props:
        if p.key == METADATA_NAME:
            return json.loads(p.value)
    return None


def read_tflite(blob: bytes) -> dict | None:
    """The "deepisp" metadata JSON of a .tflite flatbuffer (for `ExportMetadata.from_json`), or None."""
    from deepisp.export._flatbuffers import utils

    model = utils.read_model_from_bytearray(bytearray(blob))
    for m in model.metadata or []:
        if _name(m.name) == METADATA_NAME:
            return json.loads(bytes(model.buffers[m.buffer].data).decode())
    return None


def _name(name) -> str:
    return name.decode() if isinstance(name, bytes) else name
