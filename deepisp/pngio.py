"""Reading and writing 8- and 16-bit PNG images (grey or RGB) exactly, through OpenCV.

This module owns the project's PNG I/O for data whose precision matters (the 16-bit MSR files). It uses
OpenCV rather than Pillow because Pillow, and so skimage.io and imageio, truncates 16-bit RGB PNGs to
8 bits; OpenCV's libpng codec keeps all 16 bits of grey and RGB files. OpenCV orders channels BGR; the
functions here convert, so arrays are always RGB.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from deepisp.atomic import atomic_path
from deepisp.errors import DeepISPError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# IHDR is the first chunk, so a PNG's colour type is always the byte at this offset.
_COLOUR_TYPE_OFFSET = 25
_GREY_ALPHA = 4  # PNG colour type of grey + alpha, which OpenCV expands to 4-channel BGRA


def read_png(path: str | Path) -> np.ndarray:
    """A PNG as stored: [H,W] (grey) or [H,W,3] (RGB order), uint16 for 16-bit files, uint8 otherwise.

    Alpha is dropped; palette images come back as RGB, images below 8 bits as uint8.

    Raises:
        DeepISPError when the file is missing or unreadable, not a PNG, or truncated/corrupt.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DeepISPError(f"cannot read {path}: {e.strerror or e}; check that the PNG file exists") from None
    if not data.startswith(_PNG_SIGNATURE):
        raise DeepISPError(f"{path} is not a PNG file (no PNG signature): give a .png image or convert it to PNG")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None:
        raise DeepISPError(f"{path} is a truncated or corrupt PNG that cannot be decoded: re-copy or re-export it")
    if img.ndim == 3:
        if img.shape[2] == 4 and len(data) > _COLOUR_TYPE_OFFSET and data[_COLOUR_TYPE_OFFSET] == _GREY_ALPHA:
            img = img[..., 0]  # grey + alpha: the three colour channels are the same grey
        elif img.shape[2] in (3, 4):
            img = img[..., 2::-1]  # BGR(A) -> RGB
        elif img.shape[2] == 1:
            img = img[..., 0]
    return np.ascontiguousarray(img)


def write_png(path: str | Path, img: np.ndarray, chunks: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Write uint8 or uint16 [H,W] (grey) or [H,W,3] (RGB) as an 8- or 16-bit PNG, atomically; `chunks`
    ((type, data) pairs such as iCCP and eXIf) go right after the header, before the image data.

    The image is encoded first and written to a temporary file beside `path`, which then replaces
    `path`; if anything fails, `path` is left as it was and no temporary file remains.

    Raises:
        ValueError for another dtype or shape; DeepISPError when the file cannot be written.
    """
    path = Path(path)
    img = np.asarray(img)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png expects a uint8 or uint16 image, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"write_png expects a non-empty [H,W] or [H,W,3] image, got shape {img.shape}")
    bgr = np.ascontiguousarray(img[..., ::-1] if img.ndim == 3 else img)
    ok, encoded = cv2.imencode(".png", bgr)
    if not ok:
        raise DeepISPError(f"OpenCV could not encode a {img.dtype} {img.shape} image as PNG for {path}")
    data = encoded.tobytes()
    header_end = 8 + 8 + 13 + 4  # signature, then the IHDR chunk: length, type, 13 bytes, CRC
    extra = b"".join(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in chunks)
    try:
        with atomic_path(path) as tmp, open(tmp, "xb") as f:
            f.write(data[:header_end] + extra + data[header_end:])
    except OSError as e:
        raise DeepISPError(f"cannot write {path}: {e.strerror or e}; check that its folder exists and is writable") from None
