"""The white-balance convention of full models that take the file's as-shot white balance (`as_shot`).

A full model either estimates the white balance from the raw itself (ModelConfig.white_balance
"estimate", the paper's metadata-free network) or receives a mosaic already balanced with the file's
as-shot white balance ("as_shot": AsShotNeutral in a DNG, LibRaw's camera multipliers elsewhere).
Balanced means each colour site is scaled by camera_wb / REFERENCE_WB, the gains divided by their largest
so nothing passes full scale: a neutral surface then arrives with the R:G:B ratio of an S7 neutral under a
typical daylight balance, whatever camera took the file. deepisp.conditioning applies it (with the
highlight clip, the camera's colour map and metering) to "as_shot" models, and to "estimate" models when
asked (`deepisp process --white-balance camera`: an input from the middle of their training range).

Everything here is in the canonical frame: [H,W] float32 mosaic in [0,1], RGGB (pixel (0,0) red).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# Geometric middle of the synthetic S7 scenes' drawn gains (deepisp.data.synthetic.WB_GAIN_RANGE:
# R 1.6-2.4, B 1.3-2.0), (R, G, B) multipliers normalised to G = 1.
REFERENCE_WB = (float(np.sqrt(1.6 * 2.4)), 1.0, float(np.sqrt(1.3 * 2.0)))


def balance_gains(camera_wb: Sequence[float]) -> np.ndarray:
    """(3,) float64 gains for R, G, B sites: camera_wb / REFERENCE_WB divided by its largest (all <= 1)."""
    gains = np.asarray(camera_wb, dtype=np.float64) / np.asarray(REFERENCE_WB)
    return gains / gains.max()


def per_site(mosaic: np.ndarray, values: Sequence[float], op: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """`op(mosaic, v)` with v = values[R], [G], [G], [B] at the RGGB sites: [H,W] (H, W even) -> float32 [H,W]."""
    quad = np.array([[values[0], values[1]], [values[1], values[2]]], dtype=np.float32)
    h, w = mosaic.shape
    return op(mosaic.reshape(h // 2, 2, w // 2, 2), quad.reshape(1, 2, 1, 2)).reshape(h, w).astype(np.float32)


def balance(mosaic: np.ndarray, camera_wb: Sequence[float]) -> np.ndarray:
    """[H,W] canonical RGGB mosaic (H, W even) -> the same scaled by `balance_gains(camera_wb)`, float32."""
    return per_site(mosaic, balance_gains(camera_wb), np.multiply)
