"""Writing a finished image: the output formats and bit depths, and what every developed image carries (an sRGB
ICC profile and the shot's EXIF). Writes are atomic (temp file and rename): a failure leaves no file.

Images arrive as [H,W,3] float in [0,1], display-referred sRGB (encoded), in display orientation.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import tifffile
from PIL import ExifTags, Image, ImageCms, TiffImagePlugin

from deepisp import __version__
from deepisp.atomic import atomic_path
from deepisp.errors import DeepISPError
from deepisp.pngio import write_png
from deepisp.raw import SHOT_TAGS

OUTPUT_FORMATS = {".jpg": 8, ".jpeg": 8, ".png": 8, ".tif": 16, ".tiff": 16}


def check_output_path(path: Path, bits: int | None) -> int:
    """Validate an output path before any work is done; returns the bit depth to write."""
    ext = path.suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise DeepISPError(f"cannot write {path.name}: use an output ending in {', '.join(OUTPUT_FORMATS)}")
    if not path.parent.exists():
        raise DeepISPError(f"output folder {path.parent} does not exist: create it first")
    if not os.access(path.parent, os.W_OK):
        raise DeepISPError(f"output folder {path.parent} is not writable: choose another -o")
    bits = bits or OUTPUT_FORMATS[ext]
    if bits == 16 and ext in (".jpg", ".jpeg"):
        raise DeepISPError("JPEG is 8-bit only: write .png or .tif for 16-bit output")
    if bits not in (8, 16):
        raise DeepISPError(f"--bits must be 8 or 16, got {bits}")
    return bits


def save_image(img: np.ndarray, path: Path, bits: int, shot: Sequence[tuple[str, object]] = ()) -> None:
    """Write [H,W,3] float in [0,1] (display-referred, sRGB) atomically: JPEG/PNG/TIFF by extension, with an sRGB
    ICC profile and the shot's description (`RawMosaic.shot`): JPEG and PNG all of it as EXIF (orientation 1, as
    the pixels are in display orientation; Software: deepisp), TIFF its Make, Model and DateTime tags and
    Software. A failed write (disk full, folder gone) is a DeepISPError and leaves no file."""
    if not np.isfinite(img).all():
        raise DeepISPError(f"the model produced non-finite values for {path.name}; the model file is damaged: re-download or retrain it")
    data = np.round(img * (65535 if bits == 16 else 255)).astype(np.uint16 if bits == 16 else np.uint8)
    ext = path.suffix.lower()
    if ext == ".png":  # OpenCV: Pillow cannot write 16-bit RGB PNG
        exif = exif_bytes(shot).removeprefix(b"Exif\x00\x00")  # eXIf holds the bare TIFF structure
        write_png(path, data, [(b"iCCP", b"sRGB\x00\x00" + zlib.compress(srgb_icc())), (b"eXIf", exif)])
        return
    try:
        with atomic_path(path) as tmp:
            if ext in (".tif", ".tiff"):
                ifd0 = [(code, "s", 0, value, True) for code, name in SHOT_TAGS.items() for key, value in shot if key == name]
                tifffile.imwrite(tmp, data, photometric="rgb", iccprofile=srgb_icc(), software=SOFTWARE, extratags=ifd0)
            else:
                Image.fromarray(data).save(tmp, quality=95, exif=exif_bytes(shot), icc_profile=srgb_icc())
    except OSError as e:
        raise DeepISPError(f"cannot write {path}: {e.strerror or e}; free some space or choose another -o") from None


SOFTWARE = f"deepisp {__version__}"
_EXIF_IFD = 0x8769


@cache
def srgb_icc() -> bytes:
    """The sRGB ICC profile (littleCMS's built-in, via Pillow) every developed image carries."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(shot: Sequence[tuple[str, object]]) -> bytes:
    """An EXIF block ("Exif\\0\\0" + TIFF structure) of the shot's tags, orientation 1 and Software."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 1
    exif[ExifTags.Base.Software] = SOFTWARE
    sub = exif.get_ifd(_EXIF_IFD)
    for name, value in shot:
        tag = ExifTags.Base[name]
        value = TiffImagePlugin.IFDRational(*value) if isinstance(value, tuple) else value
        (exif if tag in SHOT_TAGS else sub)[tag] = value
    return exif.tobytes()
