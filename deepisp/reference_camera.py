"""The reference camera, numpy only: the sensor the synthetic S7 scenes simulate (deepisp.data.synthetic) and
that every full model's input is brought to (deepisp.input_contract, deepisp.conditioning): the Samsung Galaxy
S7's colour response, its exposures and white-balance range, and the sRGB -> XYZ matrix its colour matrices
are expressed against.
"""

from __future__ import annotations

import numpy as np

# Linear sRGB (D65) -> CIE XYZ, IEC 61966-2-1: [3,3] float64, rows X, Y, Z, applied as xyz = M @ rgb.
# The camera matrices below are expressed against it.
M_XYZ_FROM_SRGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)

SHORT_EXPOSURE_RATIO = 0.25  # S7-ISP: short = 1/4 of the automatic exposure
AUTO_EXPOSURE_PERCENTILE, AUTO_EXPOSURE_TARGET = 99.0, 0.8
# As-shot white-balance gains (R, B; G = 1) the synthetic scenes draw from.
WB_GAIN_RANGE = {"R": (1.6, 2.4), "B": (1.3, 2.0)}

# Samsung Galaxy S7 (the S7-ISP camera) XYZ(D65) -> camera matrix, x10000, as tabulated in LibRaw's
# src/tables/colordata.cpp (Adobe DNG Converter's D65 ColorMatrix; "Galaxy S7" and "S7 Edge" share it).
S7_XYZ_TO_CAMERA = np.array([[9927, -3704, -1024], [-3935, 12758, 1257], [-389, 1512, 4993]]) / 10000.0


def camera_from_srgb(xyz_to_camera: np.ndarray) -> np.ndarray:
    """A camera's XYZ(D65)->camera matrix [3,3] (a DNG ColorMatrix, LibRaw's table) -> camera RGB from linear
    sRGB, rows scaled to sum to 1 so sRGB white reads (1,1,1) before white balance (dcraw's normalisation):
    the sensor's own daylight cast is carried by the white-balance gains."""
    m = np.asarray(xyz_to_camera, dtype=np.float64) @ M_XYZ_FROM_SRGB
    return m / m.sum(axis=1, keepdims=True)


M_CAM_FROM_SRGB = camera_from_srgb(S7_XYZ_TO_CAMERA)
M_SRGB_FROM_CAM = np.linalg.inv(M_CAM_FROM_SRGB)
# What the DNG's ColorMatrix1 holds: XYZ (D65) -> this normalised camera space.
M_CAM_FROM_XYZ = M_CAM_FROM_SRGB @ np.linalg.inv(M_XYZ_FROM_SRGB)
