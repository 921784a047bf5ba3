"""quality_crops.jpg of benchmarks/quality.py: one photo at one noise level (`--figure`), the crop where
bilinear demosaicing goes most wrong, through the truth, the classical rows of FIGURE_CLASSICAL and every
DeepISP model, each labelled with its sRGB PSNR on that crop.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from benchmarks.quality_jdd import BORDER
from deepisp.color import linear_to_srgb
from deepisp.errors import DeepISPError
from deepisp.metrics import psnr_linear_and_srgb

# The classical rows the crops figure shows next to the truth and every DeepISP model.
FIGURE_CLASSICAL = ("bilinear", "LibRaw DCB", "LibRaw DCB + FBDD")
FIGURE_CROP, FIGURE_ZOOM, FIGURE_COLUMNS, FIGURE_LABEL = 128, 2, 3, 30  # label strip: two lines of PIL's default font
FIGURE_DEFAULT = ("kodim19", 5.0)  # a picket fence: the moiré case demosaicers fail on
FIGURE_MIN_CROP = 16


def _srgb8(linear: np.ndarray) -> np.ndarray:
    """[3,H,W] linear -> [H,W,3] uint8 sRGB (clipped)."""
    srgb = linear_to_srgb(torch.from_numpy(np.clip(linear, 0.0, 1.0))).numpy()
    return np.round(srgb.transpose(1, 2, 0) * 255).astype(np.uint8)


def hardest_crop(truth: np.ndarray, bilinear: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left (y, x) of the size x size window, inside the metric border, where bilinear's sRGB squared
    error is largest (stride size/4): where demosaicing is hard. truth, bilinear: [3,H,W] linear, [0,1];
    size <= min(H, W) - 2 * BORDER."""
    err = ((_srgb8(truth).astype(np.float64) - _srgb8(bilinear)) ** 2).sum(axis=2)
    h, w = err.shape
    table = np.pad(err.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, size // 4)
    starts = [(y, x) for y in range(BORDER, h - BORDER - size + 1, step) for x in range(BORDER, w - BORDER - size + 1, step)]
    return max(starts, key=lambda p: table[p[0] + size, p[1] + size] - table[p[0], p[1] + size] - table[p[0] + size, p[1]] + table[p[0], p[1]])


def crops_figure(kept: dict[str, np.ndarray], title: str) -> tuple[Image.Image, tuple[int, int, int]]:
    """The crops figure (module doc) from run_jdd's kept outputs ([3,H,W] linear each, "truth" among them):
    an RGB image of FIGURE_COLUMNS panels a row, each the crop zoomed FIGURE_ZOOM x under a two-line label;
    and the crop (y, x, size). DeepISPError for a photo too small to crop inside the metric border."""
    truth = kept["truth"]
    size = min(FIGURE_CROP, truth.shape[1] - 2 * BORDER, truth.shape[2] - 2 * BORDER)
    if size < FIGURE_MIN_CROP:
        raise DeepISPError(f"--figure photo {title} is too small for a {FIGURE_MIN_CROP}-px crop inside the {BORDER}-px border: pick a larger photo")
    y, x = hardest_crop(truth, kept["bilinear"], size)
    names = ["truth", *(n for n in FIGURE_CLASSICAL if n in kept), *(n for n in kept if n.startswith("DeepISP"))]
    panel = size * FIGURE_ZOOM
    rows = -(-len(names) // FIGURE_COLUMNS)
    sheet = Image.new("RGB", (FIGURE_COLUMNS * panel, FIGURE_LABEL + rows * (panel + FIGURE_LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 3), f"{title}, crop ({y}, {x}) {size}x{size} px, {FIGURE_ZOOM}x nearest", fill="black")
    for i, name in enumerate(names):
        crop = kept[name][:, y : y + size, x : x + size]
        score = "" if name == "truth" else f"sRGB PSNR {psnr_linear_and_srgb(crop, truth[:, y : y + size, x : x + size])[1]:.2f} dB"
        left, top = (i % FIGURE_COLUMNS) * panel, FIGURE_LABEL + (i // FIGURE_COLUMNS) * (panel + FIGURE_LABEL)
        draw.text((left + 4, top + 2), name.split(" (")[0].removeprefix("DeepISP "), fill="black")  # the row name without its file
        draw.text((left + 4, top + 15), score, fill="black")
        sheet.paste(Image.fromarray(_srgb8(crop)).resize((panel, panel), Image.NEAREST), (left, top + FIGURE_LABEL))
    return sheet, (y, x, size)
