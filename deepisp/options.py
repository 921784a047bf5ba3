"""The vocabulary of deepisp's options, torch-free: the values a model config and the commands accept, and the
defaults the commands show. Each is defined here once; the modules that act on them (model, conditioning, raw,
tiling) import it from here, and the `deepisp` command parses its arguments without loading the ML stack
(`deepisp --help` imports no torch).
"""

from __future__ import annotations

# Model modes (ModelConfig.mode): the paper's joint denoising + demosaicing ("jdd", low-level stage only) and
# the full ISP ("full", both stages).
MODES = ("jdd", "full")
# Working domains of ModelConfig.compand: the linear raw itself, or its signed square root.
COMPANDINGS = ("none", "sqrt")
# Exposure contracts of full models (ModelConfig.exposure): the raw as shot, or metered to the trained level.
EXPOSURES = ("as_is", "metered")
# Where `deepisp process` takes a full model's white balance from (deepisp.conditioning.prepare): the file's
# as-shot balance (estimated when it has none), always the estimate, or none (the raw as is).
WHITE_BALANCE_SOURCES = ("camera", "estimate", "off")
# Largest frame decoded, in megapixels: checked from the header, before LibRaw allocates or decodes
# anything (a few-kB file can declare a frame of many GB). `read_raw(max_megapixels=...)` raises it.
MAX_MEGAPIXELS = 100.0
# Default nominal core for PyTorch processing on the host. Large windows waste little on overlap (a 12 MP
# frame computes 1.25x its pixels at 1024, 1.57x at 448: the high-level stage's 64-row margins), and the
# low-level stage inside each window runs in row bands (deepisp.tiling), so window size no longer costs cache
# misses.
DEFAULT_TILE = 1024
