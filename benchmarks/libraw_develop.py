"""The classical pipeline `deepisp process` is compared against, as a user runs it: rawpy (LibRaw, AHD
demosaic) with the camera's white balance, then the same JPEG write (Pillow, quality 95).

    python -m benchmarks.libraw_develop RAW OUT.jpg

Imports only rawpy and Pillow, so that timing it as a whole process (benchmarks/process_latency.py) counts
what a rawpy user pays.
"""

from __future__ import annotations

import sys

import rawpy
from PIL import Image


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.libraw_develop RAW OUT.jpg", file=sys.stderr)
        return 2
    with rawpy.imread(argv[0]) as raw:
        rgb = raw.postprocess(use_camera_wb=True)
    Image.fromarray(rgb).save(argv[1], quality=95)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
