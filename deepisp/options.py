"""The vocabulary of deepisp's options, torch-free: the values a model config and the commands accept, and the
defaults the commands show. Each is defined here once; the modules that act on them (model, conditioning, raw,
tiling) import it from here, and the `deepisp` command parses its arguments without loading the ML stack
(`deepisp --help` imports no torch).
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """ModelConfig.mode: the paper's joint denoising + demosaicing (low-level stage only) or the full ISP (both
    stages)."""

    JDD = "jdd"
    FULL = "full"


class Compand(StrEnum):
    """ModelConfig.compand, the network's working domain (jdd models): the linear raw itself, or its signed
    square root."""

    NONE = "none"
    SQRT = "sqrt"


class Exposure(StrEnum):
    """ModelConfig.exposure, the exposure contract of full models: the raw as shot, or metered to the trained
    level (deepisp.conditioning)."""

    AS_IS = "as_is"
    METERED = "metered"


class WhiteBalance(StrEnum):
    """ModelConfig.white_balance, the white-balance contract of full models: the network estimates it from the
    raw as is (the paper), or takes the mosaic balanced with the file's as-shot white balance
    (deepisp.white_balance)."""

    ESTIMATE = "estimate"
    AS_SHOT = "as_shot"


class WhiteBalanceSource(StrEnum):
    """Where `deepisp process` takes a full model's white balance from (deepisp.conditioning.prepare): the
    file's as-shot balance (estimated when it has none), always the estimate, or none (the raw as is)."""

    CAMERA = "camera"
    ESTIMATE = "estimate"
    OFF = "off"


class ExportFormat(StrEnum):
    """The exported graphs' formats (deepisp.export.backends): TFLite for LiteRT on phones, ONNX."""

    TFLITE = "tflite"
    ONNX = "onnx"


# The values as plain strings, for argparse choices and messages. Configs, checkpoints and sidecars store these
# strings (a StrEnum member equals its value, so comparisons with the members work on them).
MODES = tuple(m.value for m in Mode)
COMPANDINGS = tuple(c.value for c in Compand)
EXPOSURES = tuple(e.value for e in Exposure)
WHITE_BALANCES = tuple(w.value for w in WhiteBalance)
WHITE_BALANCE_SOURCES = tuple(s.value for s in WhiteBalanceSource)
EXPORT_FORMATS = tuple(f.value for f in ExportFormat)
# What `deepisp process --backend` runs: the checkpoint in PyTorch, or an export's graphs.
PROCESS_BACKENDS = ("torch", *EXPORT_FORMATS)
# Largest frame decoded, in megapixels: checked from the header, before LibRaw allocates or decodes
# anything (a few-kB file can declare a frame of many GB). `read_raw(max_megapixels=...)` raises it.
MAX_MEGAPIXELS = 100.0
# Default nominal core for PyTorch processing on the host. Large windows waste little on overlap (a 12 MP
# frame computes 1.25x its pixels at 1024, 1.57x at 448: the high-level stage's 64-row margins), and the
# low-level stage inside each window runs in row bands (deepisp.tiling), so window size no longer costs cache
# misses.
DEFAULT_TILE = 1024
