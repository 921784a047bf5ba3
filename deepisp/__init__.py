"""deepisp: the DeepISP learned camera pipeline (Schwartz, Giryes, Bronstein) for training and phone deployment.

Pipeline stages, one module each:
    raw.py       Bayer raw file -> normalised RGGB mosaic            [H,W] float in [0,1], linear sensor RGB
    cfa.py       Bayer patterns: RGB -> mosaic, phase, flips to RGGB  [B,3,H,W] -> [B,1,H,W] (torch), [H,W,3] -> [H,W] (numpy)
    demosaic.py  RGGB mosaic -> bilinear RGB (a fixed conv)          [B,1,H,W] -> [B,3,H,W] float, linear sensor RGB
    model/       DeepISP network (low-level + high-level stages)     [B,3,H,W] linear -> [B,3,H,W] sRGB-encoded
                 and its config (every model option, declared once), cost, growth, noise input
    color.py     sRGB <-> linear, RGB -> Lab, histogram stretch, colour constants (sRGB -> XYZ)
    losses.py    L2 (JDD) and Lab-L1 + MS-SSIM(L) (full ISP)
    metrics.py   PSNR, SSIM, CIEDE2000
    white_balance.py  as-shot white balance to the S7 reference (the input contract of "as_shot" models)
    input_contract.py  what a full model gets before pass 1 (torch-free); conditioning.py applies it
    reference_camera.py  the simulated S7 the models are trained for (numpy only)
    tile_plan.py exact overlapping-tile plan for full frames (torch-free)
    tiling.py    the runner that follows it (and the host's channels-last, banded runner)
    runtime.py   exported graphs (ONNX Runtime, LiteRT) behind the same tile runner
    data/        S7-ISP, MSR, photo-simulated pairs (photos.py), synthetic S7 scenes and DNG writing
    export/      ONNX and TFLite export: graphs, TF twin, quantization, metadata, accuracy gate, delegate checks

Around them: train.py (training loop, TrainConfig), checkpoint.py (safe loading, shipped weights in
weights/), evaluate.py, process.py (raw file -> image), image_io.py (writing images: ICC, EXIF), cli.py (the `deepisp` command), options.py (the
options' vocabulary and defaults, torch-free, so the command starts without the ML stack), arguments.py
(argument parsing shared by every command: one-line errors, range-checked numbers), errors.py (the one error
type users see, and `printable` for what echoes file names), atomic.py (temp-file-and-rename writes, bounded
reads), pngio.py (16-bit PNG).
"""

import importlib

__version__ = "0.1.0"

# The Python API (deepisp.api), loaded on first use: `import deepisp` (and so the `deepisp` command) stays
# free of torch until a model is needed.
__all__ = ["DeepISPError", "DeepISPWarning", "__version__", "develop", "load_model", "read_raw"]
_API = {"develop": "deepisp.api", "load_model": "deepisp.api", "DeepISPWarning": "deepisp.api", "read_raw": "deepisp.raw", "DeepISPError": "deepisp.errors"}


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'deepisp' has no attribute {name!r}")
