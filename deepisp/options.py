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
# The JDD training losses (deepisp.losses has what each is).
JDD_LOSSES = ("l2", "l2+srgb", "log-l2+srgb")
WHITE_BALANCES = tuple(w.value for w in WhiteBalance)
WHITE_BALANCE_SOURCES = tuple(s.value for s in WhiteBalanceSource)
EXPORT_FORMATS = tuple(f.value for f in ExportFormat)
# What `deepisp process --backend` runs: the checkpoint in PyTorch, or an export's graphs.
PROCESS_BACKENDS = ("torch", *EXPORT_FORMATS)
# Largest frame decoded, in megapixels: checked from the header, before LibRaw allocates or decodes
# anything (a few-kB file can declare a frame of many GB). `read_raw(max_megapixels=...)` raises it.
MAX_MEGAPIXELS = 100.0
# Longest side of a window on the host (PyTorch: `deepisp process`, eval, the API) unless --tile is given: per
# frame axis, the plan whose windows compute the fewest pixels with none longer than this
# (deepisp.tile_plan.least_overlap_tile). A frame up to this size runs as one window; a 12 MP frame computes
# 1.04x its pixels with the default model (1.15x with the fixed 1024 core used before). Windows of this size keep a 12 MP frame's
# peak memory near 1 GB; the low-level stage inside each runs in row bands (deepisp.tiling).
MAX_HOST_WINDOW = 2048
# Environment `deepisp process` runs in (set before NumPy and torch load; a user's own setting wins; the other
# commands, training above all, were not measured with it and run without):
# - NUMPY_MADVISE_HUGEPAGE=0: NumPy asks the kernel for transparent huge pages on every array of 4 MB or more;
#   where the kernel compacts memory to serve them (THP "madvise" defrag, this project's machines), first
#   touching a 12 MP float image took 0.4 s instead of 0.02, and writing a 12 MP JPEG 1.7 s instead of 0.2.
#   A command touches each buffer once or twice, where huge pages buy nothing.
# - OMP_WAIT_POLICY=PASSIVE: OpenMP threads that sleep when idle instead of spinning. With another CPU-bound
#   process on the machine, spinning workers took the cores the busy ones needed (12 MP on 2 cores: 1.77x the
#   quiet time spinning, 1.40x passive); quiet, the same time.
# (benchmarks/process_latency.py measures both.)
PROCESS_ENVIRONMENT = {"NUMPY_MADVISE_HUGEPAGE": "0", "OMP_WAIT_POLICY": "PASSIVE"}
