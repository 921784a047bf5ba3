"""Camera raw files -> normalised canonical-RGGB mosaics (rawpy/LibRaw), and the way back to the sensor
frame and display orientation.

Owns everything that touches rawpy: which files are accepted (2x2 Bayer sensors only), black/white level
normalisation, and the way between a file's frames and the canonical frame. The canonical frame is the sensor frame mirrored left-right
and/or top-bottom so the CFA becomes RGGB at pixel (0,0), deepisp's convention (`deepisp.cfa.canonicalize`).
Flipping, unlike cropping one row/column, keeps every pixel, and it is undone exactly by
`RawMosaic.to_sensor_frame`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rawpy
import tifffile

from deepisp.cfa import CFA_PATTERNS, canonicalize, mirror
from deepisp.errors import DeepISPError
from deepisp.options import MAX_MEGAPIXELS

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_MAKE, _DNG_VERSION, _NOISE_PROFILE, _SUB_IFDS, _WHITE_LEVEL, _EXIF_IFD = 271, 50706, 51041, 330, 50717, 34665
# The shot's description carried into the developed image (RawMosaic.shot): IFD0 tags, then EXIF-IFD ones.
SHOT_TAGS = {271: "Make", 272: "Model", 306: "DateTime"}
SHOT_EXIF_TAGS = ("DateTimeOriginal", "ExposureTime", "FNumber", "ISOSpeedRatings", "FocalLength")
_READ_TAGS = frozenset({_MAKE, _DNG_VERSION, _NOISE_PROFILE, _WHITE_LEVEL, _EXIF_IFD, *SHOT_TAGS})


@dataclass(frozen=True)
class RawMosaic:
    """One raw frame in the canonical frame.

    Attributes:
        mosaic: [H,W] float32 in [0,1], linear sensor values (no white balance or colour matrix), canonical
            RGGB phase (pixel (0,0) red). H and W are even: an odd trailing row/column of the visible area
            is dropped, so the mosaic is whole 2x2 Bayer quads and the flips below keep the phase.
        pattern: the sensor's own CFA of the visible area, "RGGB"|"GRBG"|"GBRG"|"BGGR".
        flip_h: the sensor frame was mirrored left-right to reach RGGB.
        flip_v: the sensor frame was mirrored top-bottom to reach RGGB.
        black_level: black level of each 2x2 site of the *sensor* pattern, raster order, in raw DN.
        white_level: saturation level in raw DN.
        orientation: rawpy `sizes.flip` (LibRaw bits: 4 transpose, 2 flip rows, 1 flip columns; in practice
            0 none, 3 rot180, 5 rot90 CCW, 6 rot90 CW), the turn that takes the sensor frame to display.
        camera_wb: as-shot white-balance multipliers (R, G, B) normalised to G = 1; None when the file has
            none. `deepisp process` balances full models' input with it (deepisp.conditioning).
        noise_profile: the DNG NoiseProfile (S, O), averaged over colour planes: noise variance S*x + O at
            mosaic level x; None when the file has none (non-DNG raws, most older DNGs). Noise-aware JDD
            models are told it (deepisp.model.noise_levels).
        camera_matrix: [3,3] nested tuples, camera RGB from linear sRGB with rows summing to 1 (dcraw's
            normalisation), from the file's colour matrix as LibRaw reads it (a DNG's ColorMatrix, or LibRaw's
            per-camera table for other formats); None when LibRaw knows none. deepisp.conditioning maps the
            camera's colours into the reference camera's with it.
        shot: what the file says of the shot, for the developed image's EXIF: (name, value) pairs of Make,
            Model, DateTime, DateTimeOriginal, ExposureTime, FNumber, ISOSpeedRatings, FocalLength (those the
            file has; TIFF-based raws: DNG, CR2, NEF, ARW, ...).
    """

    mosaic: np.ndarray
    pattern: str
    flip_h: bool
    flip_v: bool
    black_level: tuple[float, float, float, float]
    white_level: float
    orientation: int
    camera_wb: tuple[float, float, float] | None
    noise_profile: tuple[float, float] | None = None
    camera_matrix: tuple[tuple[float, float, float], ...] | None = None
    shot: tuple[tuple[str, object], ...] = ()

    def to_sensor_frame(self, img: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
        """Undo the canonicalising flips of an image in the canonical frame.

        Args:
            img: [H,W] (channel_axis None), or a 3-D array whose channels sit on `channel_axis`
                ([H,W,C] with -1 or 2, [C,H,W] with 0), spatially the same full frame as `mosaic`.
        Returns:
            a contiguous array of the same shape and dtype, in the sensor frame.
        """
        if channel_axis is None:
            if img.ndim != 2:
                raise ValueError(f"to_sensor_frame: a {img.ndim}-D array needs channel_axis")
            rows, cols = 0, 1
        else:
            if img.ndim != 3:
                raise ValueError(f"to_sensor_frame: channel_axis is for 3-D arrays, got {img.ndim}-D")
            rows, cols = (a for a in range(3) if a != channel_axis % 3)
        return mirror(img, self.flip_h, self.flip_v, axes=(rows, cols))

    def to_display(self, img: np.ndarray) -> np.ndarray:
        """Canonical frame -> display orientation, as rawpy's `postprocess` would orient it.

        Args:
            img: [H,W] or [H,W,C] in the canonical frame.
        Returns:
            contiguous [H',W'] / [H',W',C] (H',W' swapped for 90-degree turns), same dtype.
        """
        img = self.to_sensor_frame(img, None if img.ndim == 2 else -1)
        # LibRaw's flip_index(): transpose is applied to output coordinates first, so on the array the
        # row/column flips come first and the transpose last.
        if self.orientation & 2:
            img = img[::-1]
        if self.orientation & 1:
            img = img[:, ::-1]
        if self.orientation & 4:
            img = img.swapaxes(0, 1)
        return np.ascontiguousarray(img)

    def from_display(self, img: np.ndarray) -> np.ndarray:
        """Display orientation -> canonical frame, the exact inverse of `to_display` (e.g. for a camera JPEG).

        Args:
            img: [H',W'] or [H',W',C] in display orientation.
        Returns:
            contiguous [H,W] / [H,W,C] in the canonical frame, same dtype.
        """
        if self.orientation & 4:
            img = img.swapaxes(0, 1)
        if self.orientation & 1:
            img = img[:, ::-1]
        if self.orientation & 2:
            img = img[::-1]
        return self.to_sensor_frame(img, None if img.ndim == 2 else -1)  # the flips are their own inverse


def _visible_pattern_indices(raw: rawpy.RawPy) -> np.ndarray:
    """LibRaw colour indices [2,2] of the visible area's first quad; DeepISPError for non-Bayer sensors."""
    try:
        pat = raw.raw_pattern
    except NotImplementedError:  # rawpy raises it for exotic LibRaw `filters` codes
        pat = None
    if pat is None:
        raise DeepISPError("the sensor's colour filter layout is not supported; deepisp needs a 2x2 Bayer raw")
    if raw.num_colors == 1 or pat.shape == (1, 1):
        raise DeepISPError("monochrome sensor (no colour filter array); deepisp needs a Bayer colour raw (RGGB/GRBG/GBRG/BGGR)")
    if pat.shape == (6, 6):
        raise DeepISPError(
            "Fujifilm X-Trans sensor (6x6 colour filter array); deepisp supports 2x2 Bayer raws only, convert it to a demosaiced image with another tool"
        )
    if pat.shape != (2, 2):
        raise DeepISPError(f"{pat.shape[0]}x{pat.shape[1]} colour filter array; deepisp supports 2x2 Bayer raws only")
    # rawpy's raw_pattern is the colour at raw_image[0:2, 0:2], which includes the masked margins; an odd
    # margin moves the visible area's phase.
    s = raw.sizes
    return np.roll(pat, (-(s.top_margin % 2), -(s.left_margin % 2)), axis=(0, 1))


def pattern_of(raw: rawpy.RawPy) -> str:
    """The CFA pattern of `raw.raw_image_visible`, e.g. "GRBG".

    LibRaw numbers colours by `color_desc`, which is usually b"RGBG": index 3 is the second green.

    Raises:
        DeepISPError: monochrome, X-Trans, other non-2x2 or non-RGB filter arrays.
    """
    desc = raw.color_desc.decode("ascii", "replace")
    pattern = "".join(desc[i] if i < len(desc) else "?" for i in _visible_pattern_indices(raw).ravel())
    if pattern not in CFA_PATTERNS:
        raise DeepISPError(f"colour filter array {pattern} is not an RGB Bayer pattern (RGGB/GRBG/GBRG/BGGR); deepisp cannot process this sensor")
    return pattern


def _tiff_tags(path: Path) -> dict[int, object] | None:
    """{tag code: value} for the codes deepisp reads (_READ_TAGS) in IFD0 and, where IFD0 lacks them, in its
    SubIFDs (where DNGs keep the raw image's tags); None for files that are not TIFFs or that tifffile cannot
    parse. Other tags' values (maker notes, previews' tables) are never loaded."""
    with open(path, "rb") as f:
        if f.read(4) not in _TIFF_MAGIC:
            return None
    # tifffile logs what it finds wrong in a file (to stderr by default); judging is LibRaw's job here.
    log = logging.getLogger("tifffile")
    was_disabled, log.disabled = log.disabled, True
    try:
        with tifffile.TiffFile(path) as tif:
            ifd0 = tif.pages[0]
            subifds = (ifd0.pages or []) if _SUB_IFDS in ifd0.tags else []
            tags = {}
            for ifd in (ifd0, *subifds):
                for code in _READ_TAGS - tags.keys():
                    if code in ifd.tags:
                        tags[code] = ifd.tags[code].value
            return tags
    except Exception:  # any parse failure means "not for us to decide"
        return None
    finally:
        log.disabled = was_disabled


def _check_not_plain_tiff(tags: dict[int, object] | None) -> None:
    """LibRaw decodes a plain 16-bit greyscale TIFF as an RGGB raw with black 0 and white 65535. Every
    camera raw that is a TIFF carries Make (TIFF/EP) or DNGVersion in IFD0, so refuse TIFFs with neither.
    Files that are not TIFFs, or that tifffile cannot parse (`tags` None), are left to LibRaw to judge."""
    if tags is not None and _MAKE not in tags and _DNG_VERSION not in tags:
        raise DeepISPError("a plain TIFF image, not a camera raw (no Make or DNGVersion tag); pass the camera's raw file (.dng, .cr2, .nef, .arw, ...)")


def _noise_profile(tags: dict[int, object] | None) -> tuple[float, float] | None:
    """The NoiseProfile tag's (S, O) pairs (one, or one per colour plane) averaged; None if absent or malformed
    (not finite, negative, or a variance above full scale, which no sensor has)."""
    try:
        values = np.atleast_1d(np.asarray((tags or {}).get(_NOISE_PROFILE, ()), dtype=np.float64))
    except (TypeError, ValueError):
        return None
    if values.size < 2 or values.size % 2 or not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        return None
    s, o = values.reshape(-1, 2).mean(axis=0)
    return float(s), float(o)


def _camera_matrix(raw: rawpy.RawPy) -> tuple[tuple[float, float, float], ...] | None:
    """The inverse of LibRaw's rgb_cam (sRGB from camera, computed from the camera's XYZ matrix with dcraw's row
    normalisation); None when LibRaw has no matrix for the camera (it then leaves rgb_cam the identity)."""
    rgb_cam = np.asarray(raw.color_matrix, dtype=np.float64)[:3, :3]
    if not np.all(np.isfinite(rgb_cam)) or np.allclose(rgb_cam, np.eye(3)) or abs(np.linalg.det(rgb_cam)) < 1e-6:
        return None
    return tuple(tuple(float(v) for v in row) for row in np.linalg.inv(rgb_cam))


def _libraw_message(err: Exception) -> str:
    msg = err.args[0] if err.args else str(err)
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


def read_raw(path: str | Path, max_megapixels: float = MAX_MEGAPIXELS) -> RawMosaic:
    """Read a Bayer raw file into a normalised canonical-RGGB mosaic.

    The frame size declared in the header is checked against `max_megapixels` before anything is decoded.

    Uses the visible area (masked margins cut), subtracts the black level of each pixel's colour site and
    divides by (white - black), clipping to [0,1].

    Args:
        path: any raw format LibRaw reads (DNG, CR2, NEF, ARW, ...).
    Returns:
        RawMosaic; `mosaic` is [H,W] float32 in [0,1], even H and W, canonical RGGB.
    Raises:
        DeepISPError: missing/unreadable/corrupt/truncated file, not a raw, non-Bayer sensor (X-Trans,
            monochrome, already demosaiced "linear" DNG), or inconsistent black/white levels.
    """
    path = Path(path)
    if not path.exists():
        raise DeepISPError(f"raw file not found: {path}; check the path")
    if not path.is_file():
        raise DeepISPError(f"{path} is not a file; pass a raw file such as a .dng")
    if path.stat().st_size == 0:
        raise DeepISPError(f"{path} is empty (0 bytes); copy it from the camera again")
    try:
        tags = _tiff_tags(path)
        _check_not_plain_tiff(tags)
        with rawpy.RawPy() as raw, open(path, "rb") as f, libraw_messages_withheld():
            if _utf8(path):
                raw.open_file(str(path))
            else:  # LibRaw takes UTF-8 paths only: a file name of other bytes is opened here and handed over in memory
                raw.open_buffer(f)
            megapixels = raw.sizes.raw_height * raw.sizes.raw_width / 1e6
            if megapixels > max_megapixels:
                raise DeepISPError(
                    f"declares a {raw.sizes.raw_width}x{raw.sizes.raw_height} frame ({megapixels:.0f} MP), above the "
                    f"{max_megapixels:g} MP limit; if the file is genuine, raise the limit (--max-megapixels)"
                )
            raw.unpack()
            decoded = _decode(raw)
            _check_declared_white_level(tags, decoded)
            return replace(decoded, noise_profile=_noise_profile(tags), shot=_shot(tags))
    except DeepISPError as e:
        raise DeepISPError(f"{path}: {e}") from None
    except rawpy.LibRawFileUnsupportedError:
        raise DeepISPError(f"{path} is not a camera raw file LibRaw can read; pass a Bayer raw (.dng, .cr2, .nef, .arw, ...)") from None
    except (rawpy.LibRawIOError, rawpy.LibRawDataError) as e:
        raise DeepISPError(f"{path} is truncated or corrupt (LibRaw: {_libraw_message(e)}); copy it from the camera again") from None
    except rawpy.LibRawError as e:
        raise DeepISPError(f"LibRaw cannot decode {path} ({_libraw_message(e)}); check the file") from None
    except OSError as e:
        raise DeepISPError(f"cannot read {path}: {e.strerror or e}; check the file's permissions") from None


# What LibRaw's default data-error callback prints to stderr ("<file>: Unexpected end of file", "<file>: data
# corrupted at <offset>"); deepisp says it in its own error line instead.
_LIBRAW_MESSAGE = re.compile(rb"^.*: (Unexpected end of file|data corrupted at -?\d+)\n?$")
_stderr_lock = threading.Lock()


@contextmanager
def libraw_messages_withheld() -> Iterator[None]:
    """Within the block, what is written to file descriptor 2 is held back and passed on afterwards, less
    LibRaw's own data-error lines. fd 2 is process-wide, so output of other threads meanwhile (a progress
    bar) is delayed, not lost."""
    with _stderr_lock, tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True) if not _LIBRAW_MESSAGE.match(line)]
            if kept:
                os.write(2, b"".join(kept))


def _shot(tags: dict[int, object] | None) -> tuple[tuple[str, object], ...]:
    """RawMosaic.shot from the file's tags (IFD0's, then the EXIF IFD's); malformed or empty values left out."""
    tags = tags or {}
    exif = tags.get(_EXIF_IFD) if isinstance(tags.get(_EXIF_IFD), dict) else {}
    found = [(name, _shot_value(tags.get(code))) for code, name in SHOT_TAGS.items()]
    found += [(name, _shot_value(exif.get(name))) for name in SHOT_EXIF_TAGS]
    return tuple((name, value) for name, value in found if value is not None)


def _shot_value(value: object) -> object | None:
    """A tag's value as RawMosaic.shot keeps it: text stripped of NULs and bounded, a positive int, or a
    positive (numerator, denominator); None for anything else (zeros are what converters write for "unknown")."""
    if isinstance(value, str):
        return value.strip("\x00 ")[:64] or None
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 < value < 1 << 31 else None
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) and 0 < v < 1 << 32 for v in value):
        return value
    return None


def _check_declared_white_level(tags: dict[int, object] | None, raw: RawMosaic) -> None:
    """A DNG's WhiteLevel at or below its black level (0, say) is impossible; LibRaw replaces it with its own
    default (65535) without a word, which renders a 10-bit sensor nearly black."""
    declared = np.atleast_1d(np.asarray((tags or {}).get(_WHITE_LEVEL, np.inf), dtype=np.float64))
    if declared.size and declared.min() <= max(raw.black_level):
        raise DeepISPError(
            f"WhiteLevel {declared.min():g} is not above the black level {max(raw.black_level):g} in the file's metadata; the file is damaged "
            "or not a standard raw"
        )


def _utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # a surrogate-escaped byte of a non-UTF-8 name
        return False
    return True


def _decode(raw: rawpy.RawPy) -> RawMosaic:
    if raw.raw_type != rawpy.RawType.Flat:
        raise DeepISPError(
            "the file holds already-demosaiced RGB (a linear DNG), not a Bayer mosaic; use the camera's original raw or a DNG saved without demosaicing"
        )
    pattern = pattern_of(raw)
    site_colors = _visible_pattern_indices(raw)
    per_color = raw.black_level_per_channel
    black = np.array([per_color[c] for c in site_colors.ravel()], dtype=np.float32).reshape(2, 2)
    white = float(raw.white_level)
    if white <= black.max():
        raise DeepISPError(
            f"white level {white:g} is not above the black level {black.max():g} in the file's metadata; the file is damaged or not a standard raw"
        )

    visible = raw.raw_image_visible
    h, w = visible.shape[0] - visible.shape[0] % 2, visible.shape[1] - visible.shape[1] % 2
    if h == 0 or w == 0 or float(visible[:h, :w].max()) <= float(black.min()):
        # A damaged or mislabelled compressed stream decodes to zeros without an error from LibRaw.
        raise DeepISPError("the raw data decodes empty (every site at or below the black level): the file is damaged; copy it from the camera again")
    # As [H/2, 2, W/2, 2] quads the per-site levels broadcast without a full-size black map.
    quads = visible[:h, :w].astype(np.float32).reshape(h // 2, 2, w // 2, 2)
    site_black = black.reshape(1, 2, 1, 2)
    sensor = ((quads - site_black) / (white - site_black)).reshape(h, w)
    mosaic, flip_h, flip_v = canonicalize(np.clip(sensor, 0.0, 1.0), pattern)

    wb_r, wb_g, wb_b = raw.camera_whitebalance[:3]
    camera_wb = (wb_r / wb_g, 1.0, wb_b / wb_g) if min(wb_r, wb_g, wb_b) > 0 else None
    return RawMosaic(
        mosaic=mosaic,
        pattern=pattern,
        flip_h=flip_h,
        flip_v=flip_v,
        black_level=tuple(float(b) for b in black.ravel()),
        white_level=white,
        orientation=int(raw.sizes.flip),
        camera_wb=None if camera_wb is None else tuple(float(v) for v in camera_wb),
        camera_matrix=_camera_matrix(raw),
    )
