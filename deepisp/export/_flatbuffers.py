"""The TFLite flatbuffer schema and object-API helpers, from whichever runtime is installed.

ai_edge_litert (LiteRT) ships them as `ai_edge_litert.schema_py_generated` and
`ai_edge_litert.tools.flatbuffer_utils`; TensorFlow as `tensorflow.lite.python.schema_py_generated` and
`tensorflow.lite.tools.flatbuffer_utils`. Same generated code; prefer the lighter LiteRT.
"""

try:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as utils
except ImportError:  # pragma: no cover - depends on what is installed
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as utils

__all__ = ["schema", "utils"]
