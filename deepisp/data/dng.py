"""Writing real DNG files (Bayer CFA, uncompressed) that rawpy/LibRaw reads back, plus atomic JPEG output.

Owns the DNG tag set deepisp produces (synthetic S7-layout scenes, test fixtures). Every file is written
through `deepisp.atomic.atomic_path`, so a crash or error never leaves a partial file under the final name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from deepisp.atomic import atomic_path
from deepisp.cfa import check_pattern

# TIFF field types (TIFF 6.0 section 2).
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL, _DOUBLE = 1, 2, 3, 4, 5, 10, 12
_CFA_COLOR_CODE = {"R": 0, "G": 1, "B": 2}  # TIFF/EP CFAPattern colour codes
_PHOTOMETRIC_CFA = 32803
_ILLUMINANT_D65 = 21
# Fixed denominator of the rational tags: 1e-6 resolution, numerators stay inside int32.
_DENOMINATOR = 1_000_000
# LibRaw refuses raw images narrower or shorter than this (identify(): "width < 22 || height < 22").
MIN_LIBRAW_SIZE = 22


def _rationals(values: np.ndarray) -> tuple[int, ...]:
    """Flattened (numerator, denominator) pairs for tifffile's RATIONAL/SRATIONAL tags."""
    out: list[int] = []
    for v in np.asarray(values, dtype=np.float64).ravel():
        out += [int(round(v * _DENOMINATOR)), _DENOMINATOR]
    return tuple(out)


def write_dng(
    path: str | Path,
    cfa: np.ndarray,
    *,
    pattern: str = "RGGB",
    black_level: int = 64,
    white_level: int = 1023,
    color_matrix: np.ndarray,
    as_shot_neutral: tuple[float, float, float] | None,
    orientation: int = 1,
    make: str = "deepisp",
    model: str = "synthetic",
    noise_profile: tuple[float, float] | None = None,
) -> None:
    """Write an uncompressed Bayer DNG (DNG 1.4) atomically.

    Args:
        path: destination file; its folder must exist.
        cfa: [H,W] uint16 sensor values (black level included) laid out in the sensor `pattern`;
            H, W >= 22 (LibRaw's minimum).
        pattern: CFA of the sensor frame at pixel (0,0): "RGGB", "GRBG", "GBRG" or "BGGR".
        black_level: black level in DN, the same for every site.
        white_level: saturation level in DN, > black_level.
        color_matrix: [3,3] XYZ (D65) -> camera RGB, stored as ColorMatrix1 with CalibrationIlluminant1 D65.
        as_shot_neutral: camera RGB of a neutral surface under the scene light (1 / white-balance gains); None
            writes no AsShotNeutral (a file without white-balance metadata).
        orientation: TIFF/EXIF Orientation 1..8 (display rotation/mirroring of the stored frame).
        make, model: Make and Model tags; UniqueCameraModel is "<make> <model>".
        noise_profile: (S, O) of the DNG NoiseProfile tag: the noise variance at normalised level x is S*x + O
            (x = (DN - black) / (white - black)); None writes no tag.
    """
    cfa = np.asarray(cfa)
    if cfa.ndim != 2 or cfa.dtype != np.uint16:
        raise ValueError(f"write_dng expects an [H,W] uint16 array, got {cfa.dtype} {cfa.shape}")
    if min(cfa.shape) < MIN_LIBRAW_SIZE:
        raise ValueError(f"write_dng: {cfa.shape} is too small, LibRaw reads only raws >= {MIN_LIBRAW_SIZE} px")
    check_pattern(pattern)
    if not 0 <= black_level < white_level <= np.iinfo(np.uint16).max:
        raise ValueError(f"need 0 <= black_level < white_level <= 65535, got {black_level}, {white_level}")
    color_matrix = np.asarray(color_matrix, dtype=np.float64)
    if color_matrix.shape != (3, 3) or not np.all(np.isfinite(color_matrix)) or np.abs(color_matrix).max() > 2000:
        raise ValueError(f"color_matrix must be a finite 3x3 matrix with |entries| <= 2000, got {color_matrix}")
    neutral = np.ones(3) if as_shot_neutral is None else np.asarray(as_shot_neutral, dtype=np.float64)
    if neutral.shape != (3,) or not np.all((neutral > 0) & (neutral < 4000)):
        raise ValueError(f"as_shot_neutral must be 3 positive values, got {as_shot_neutral}")
    if orientation not in range(1, 9):
        raise ValueError(f"orientation must be 1..8, got {orientation}")
    if noise_profile is not None and not (len(noise_profile) == 2 and all(np.isfinite(v) and v >= 0 for v in noise_profile)):
        raise ValueError(f"noise_profile must be two non-negative numbers (S, O), got {noise_profile}")

    # (code, type, count, value, write-once); tifffile adds the baseline image/strip tags itself.
    tags = [
        (271, _ASCII, 0, make, True),  # Make
        (272, _ASCII, 0, model, True),  # Model
        (274, _SHORT, 1, orientation, True),  # Orientation
        (33421, _SHORT, 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, _BYTE, 4, bytes(_CFA_COLOR_CODE[c] for c in pattern), True),  # CFAPattern
        (50706, _BYTE, 4, bytes((1, 4, 0, 0)), True),  # DNGVersion
        (50707, _BYTE, 4, bytes((1, 1, 0, 0)), True),  # DNGBackwardVersion
        (50708, _ASCII, 0, f"{make} {model}", True),  # UniqueCameraModel
        (50713, _SHORT, 2, (1, 1), True),  # BlackLevelRepeatDim
        (50714, _LONG, 1, int(black_level), True),  # BlackLevel
        (50717, _LONG, 1, int(white_level), True),  # WhiteLevel
        (50721, _SRATIONAL, 9, _rationals(color_matrix), True),  # ColorMatrix1
        (50778, _SHORT, 1, _ILLUMINANT_D65, True),  # CalibrationIlluminant1
    ]
    if as_shot_neutral is not None:
        tags.append((50728, _RATIONAL, 3, _rationals(neutral), True))  # AsShotNeutral
    if noise_profile is not None:
        tags.append((51041, _DOUBLE, 2, tuple(float(v) for v in noise_profile), True))  # NoiseProfile
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            cfa,
            photometric=_PHOTOMETRIC_CFA,
            subfiletype=0,  # NewSubfileType 0: the main (full-resolution) image
            rowsperstrip=cfa.shape[0],  # one strip: LibRaw reads uncompressed DNG data as one run
            metadata=None,  # no tifffile JSON ImageDescription
            software=False,
            extratags=tags,
        )


def write_jpeg(path: str | Path, srgb_uint8: np.ndarray, quality: int = 95) -> None:
    """Write an sRGB image as a baseline JPEG atomically.

    Args:
        path: destination file; its folder must exist.
        srgb_uint8: [H,W,3] uint8, sRGB-encoded, display orientation.
        quality: libjpeg quality 1..100. Chroma is not subsampled (4:4:4) so colour edges survive.
    """
    img = np.asarray(srgb_uint8)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"write_jpeg expects [H,W,3] uint8, got {img.dtype} {img.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="JPEG", quality=quality, subsampling=0)
