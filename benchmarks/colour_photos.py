"""A second JDD test set of photographs: the colourful colour photographs that scikit-image ships.

    python benchmarks/colour_photos.py [--out out/colour-photos]

Kodak24 is mostly muted natural colour; the project has no McMaster-like set of saturated photographs, and
every photo of its training folders was trained on (but the validation photos, which choose the models). The
scikit-image wheel, a dependency, carries a few public-domain photographs no model here has seen. The rule
that picks them (COLOUR_PHOTOS), fixed before any model was run on them: every colour *photograph* among
skimage/data whose Hasler-Süsstrunk colourfulness exceeds Kodak24's mean (42), leaving out graphics
(color.png, logo.png), the second view of a stereo pair (motorcycle_right.png) and the greyscale files.
Each is written as 8-bit sRGB PNG, cut to even sizes (whole Bayer quads); benchmarks/quality.py then runs its
JDD protocol on them as on Kodak24.
"""

from __future__ import annotations

from pathlib import Path

import skimage
from PIL import Image

from benchmarks.common import parser
from deepisp.atomic import atomic_path, make_folder

# File, and its colourfulness (Hasler and Süsstrunk 2003, on 0-255 sRGB; Kodak24's mean: 42).
COLOUR_PHOTOS = {"astronaut.png": 72.6, "coffee.png": 76.9, "motorcycle_left.png": 54.8, "retina.jpg": 99.5}
COLOUR_PHOTOS_PROTOCOL = (
    "Colour photographs shipped with scikit-image (benchmarks/colour_photos.py): "
    + ", ".join(f"{name} (colourfulness {c:g})" for name, c in COLOUR_PHOTOS.items())
    + ", every colour photograph in skimage/data more colourful than Kodak24's mean (42), cut to even sizes."
)


def make_colour_photos(folder: Path) -> Path:
    """Write the set into `folder` (kept when complete). Returns the folder."""
    folder = Path(folder)
    source = Path(skimage.__file__).parent / "data"
    make_folder(folder)
    for name in COLOUR_PHOTOS:
        out = folder / f"{Path(name).stem}.png"
        if out.is_file():
            continue
        with Image.open(source / name) as im:
            rgb = im.convert("RGB")
            with atomic_path(out) as tmp:
                rgb.crop((0, 0, rgb.width // 2 * 2, rgb.height // 2 * 2)).save(tmp, format="PNG")
    return folder


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--out", type=Path, default=Path("out/colour-photos"))
    print(f"wrote {make_colour_photos(ap.parse_args().out)}")


if __name__ == "__main__":
    main()
