"""The second JDD test set: colour dead-leaves images, saturated colours and sharp colour edges.

    python benchmarks/dead_leaves.py [--out out/dead-leaves] [--count 12] [--size 500] [--seed 0]

Kodak24 (the first JDD test set) is mostly muted natural colour; demosaicers are known to fail differently on
saturated colours meeting at sharp edges (the McMaster set's content, which this project does not have). These
images are made here, from nothing but a seed, so no model has seen them in training and none is chosen on them.

Protocol (DEAD_LEAVES_PROTOCOL, written into quality.json beside the numbers): each image is the dead-leaves
model (Lee, Mumford and Huang 2001; the texture chart of ISO 19567-2 and IEEE 1858): discs of radius r with
density proportional to r^-3 between RADIUS_RANGE (scale invariance, as natural images have), centres uniform,
each lying behind the earlier ones (drawn front to back: a disc fills only what no earlier disc covers) until
the canvas, SUPERSAMPLE times the output size, is covered;
each disc one colour drawn as HSV with hue uniform, saturation and value uniform in SATURATION_RANGE and
VALUE_RANGE (sRGB-encoded). The canvas is box-averaged down to the output size (anti-aliased edges) and
blurred with a Gaussian of LENS_SIGMA pixels (a lens's softness; without it every edge is a step no camera
records; both done on the sRGB-encoded values, so the edges are soft as a display shows them, not as light
mixes), rounded to 8-bit sRGB and written as PNG; 12 images of 500x500 from seed 0 by default. benchmarks/quality.py then runs its JDD protocol on them as
on Kodak24 (linear ground truth through the inverse sRGB curve, RGGB mosaic, Gaussian noise sigma/255).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from benchmarks.common import parser
from deepisp.atomic import atomic_path, make_folder

RADIUS_RANGE = (2.0, 80.0)  # output pixels
BATCH = 4096  # discs drawn per round until the canvas is covered
SUPERSAMPLE = 2
SATURATION_RANGE = (0.35, 1.0)
VALUE_RANGE = (0.2, 1.0)
LENS_SIGMA = 0.6
MANIFEST = "dead_leaves.json"

DEAD_LEAVES_PROTOCOL = (
    f"Colour dead leaves (benchmarks/dead_leaves.py): discs of radius {RADIUS_RANGE[0]:g}-{RADIUS_RANGE[1]:g} px with density ~ r^-3, "
    f"occluding each other until the image is covered, colours HSV with saturation {SATURATION_RANGE[0]:g}-{SATURATION_RANGE[1]:g} and value "
    f"{VALUE_RANGE[0]:g}-{VALUE_RANGE[1]:g}, drawn at {SUPERSAMPLE}x, box-averaged down, Gaussian blur {LENS_SIGMA:g} px, 8-bit sRGB PNG."
)


def radii(rng: np.random.Generator, n: int) -> np.ndarray:
    """n radii with density ~ r^-3 on RADIUS_RANGE (inverse-CDF sampling)."""
    lo, hi = RADIUS_RANGE
    u = rng.random(n)
    return 1.0 / np.sqrt(u / hi**2 + (1 - u) / lo**2)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[n] hue, saturation, value in [0,1] -> [n,3] RGB in [0,1]."""
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6.0) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def dead_leaves(size: int, seed: int) -> np.ndarray:
    """One image: [size,size,3] uint8 sRGB-encoded (module doc)."""
    rng = np.random.default_rng(seed)
    side = size * SUPERSAMPLE
    canvas = np.zeros((side, side, 3), dtype=np.float32)
    empty = np.ones((side, side), dtype=bool)
    while empty.any():
        r = radii(rng, BATCH) * SUPERSAMPLE
        centres = rng.uniform(0, side, (BATCH, 2))
        colours = hsv_to_rgb(rng.random(BATCH), rng.uniform(*SATURATION_RANGE, BATCH), rng.uniform(*VALUE_RANGE, BATCH))
        for (cy, cx), radius, colour in zip(centres, r, colours):
            y0, y1 = max(0, int(cy - radius)), min(side, int(cy + radius) + 1)
            x0, x1 = max(0, int(cx - radius)), min(side, int(cx + radius) + 1)
            yy, xx = np.ogrid[y0:y1, x0:x1]
            fill = ((yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= radius**2) & empty[y0:y1, x0:x1]
            canvas[y0:y1, x0:x1][fill] = colour
            empty[y0:y1, x0:x1][fill] = False
    image = canvas.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    image = gaussian_filter(image, sigma=(LENS_SIGMA, LENS_SIGMA, 0))
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def make_dead_leaves(folder: Path, count: int = 12, size: int = 500, seed: int = 0) -> Path:
    """Write `count` images (dead_leaves_00.png, ...; image k drawn with seed `seed * 1000 + k`) into `folder`, or keep the
    ones there when its manifest says they were made with the same settings. Returns the folder."""
    folder = Path(folder)
    settings = {"count": count, "size": size, "seed": seed, "protocol": DEAD_LEAVES_PROTOCOL}
    manifest = folder / MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()) == settings:
        return folder
    make_folder(folder)
    for k in range(count):
        with atomic_path(folder / f"dead_leaves_{k:02d}.png") as tmp:
            Image.fromarray(dead_leaves(size, seed * 1000 + k)).save(tmp, format="PNG")
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps(settings))
    return folder


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--out", type=Path, default=Path("out/dead-leaves"))
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"wrote {make_dead_leaves(args.out, args.count, args.size, args.seed)}")


if __name__ == "__main__":
    main()
