"""Colour on a real sensor: the X-Rite ColorChecker in ../shared/data/raw/colorchart.dng against X-Rite's values.

    python benchmarks/colorchart.py [--full-model CKPT ...] [--out DIR]

The DNG is a real Canon EOS Kiss X4 (550D) frame of an X-Rite ColorChecker Passport; its lower chart holds the
24 patches of the ColorChecker Classic. Every shipped full model (or `--full-model`s) through `deepisp process`'s
path and rawpy's default rendering are compared with X-Rite's published values for the chart made after
November 2014 (CIE L*a*b*, D50; as tabulated in colour-science, `colour.CCS_COLOURCHECKERS["ColorChecker24 -
After November 2014"]`), per patch, after what a colour profile fits: one gain per channel, least squares on the six
neutral patches in linear sRGB. Reported: mean CIEDE2000 of the 18 chromatic patches and of the 6 neutral ones,
the chromatic patches' chroma relative to the reference (mean of C*_measured / C*_reference), and the lamp on the
left of the frame (a light source, the brightest thing in the frame): its mean chroma C*ab as displayed (the
rendering clipped to [0,1], no gains), 0 for a neutral white. Writes
benchmarks/results/colorchart.json, colorchart.md and colorchart.jpg (the patches side by side).
"""

from __future__ import annotations

import sys
from pathlib import Path

import colour
import numpy as np
import rawpy
import torch
from PIL import Image, ImageDraw

from benchmarks.common import RESULTS, add_full_models, fail, missing_shared, parser, save_jpeg, short_label, write_result
from deepisp.checkpoint import load_model
from deepisp.color import srgb_to_linear
from deepisp.conditioning import model_input
from deepisp.data import SHARED_DATA
from deepisp.model import DeepISP
from deepisp.raw import read_raw
from deepisp.tiling import run_tiled

CHART = SHARED_DATA / "raw" / "colorchart.dng"
REFERENCE = "ColorChecker24 - After November 2014"
# Patch centres (x, y) in the frame as processed (display orientation = sensor frame for this file), read off
# the image: row by row from dark skin to black. Each patch is sampled over a PATCH_HALF-pixel half-width box.
PATCH_CENTRES = [
    *[(x + 600, 620) for x in (110, 222, 328, 437, 545, 651)],
    *[(x + 600, 720) for x in (110, 218, 328, 437, 545, 652)],
    *[(x + 600, 820) for x in (105, 215, 325, 435, 540, 651)],
    *[(x + 600, 928) for x in (100, 212, 322, 432, 540, 650)],
]
PATCH_HALF = 15
NEUTRALS = slice(18, 24)
# The lamp: sites left of LAMP_MAX_X whose raw green is above LAMP_LEVEL (the light source and its glow).
LAMP_MAX_X, LAMP_LEVEL = 700, 0.6
RAWPY = "rawpy default (AHD, camera WB, camera matrix)"


def reference_linear_srgb() -> tuple[list[str], np.ndarray]:
    """The 24 patch names and their linear sRGB (D65, Bradford-adapted from D50) values [24,3]."""
    chart = colour.CCS_COLOURCHECKERS[REFERENCE]
    xyz = colour.xyY_to_XYZ(np.array(list(chart.data.values())))
    rgb = colour.XYZ_to_RGB(
        xyz, colour.RGB_COLOURSPACES["sRGB"], illuminant=chart.illuminant, chromatic_adaptation_transform="Bradford", apply_cctf_encoding=False
    )
    return list(chart.data), rgb


def lab(linear_srgb: np.ndarray) -> np.ndarray:
    """Linear sRGB [...,3] -> CIE L*a*b* (D65)."""
    d65 = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D65"]
    return colour.XYZ_to_Lab(colour.RGB_to_XYZ(linear_srgb, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=False), d65)


def patches(linear: np.ndarray) -> np.ndarray:
    """Mean linear RGB of each patch box: [H,W,3] -> [24,3]."""
    return np.array([linear[y - PATCH_HALF : y + PATCH_HALF, x - PATCH_HALF : x + PATCH_HALF].reshape(-1, 3).mean(0) for x, y in PATCH_CENTRES])


def lamp_mask(path: Path) -> np.ndarray:
    raw = read_raw(path)
    green = raw.mosaic[0::2, 1::2].repeat(2, 0).repeat(2, 1)
    mask = green > LAMP_LEVEL
    mask[:, LAMP_MAX_X:] = False
    return raw.to_display(mask)


@torch.no_grad()
def model_render(model: DeepISP, path: Path) -> np.ndarray:
    """[H,W,3] linear sRGB of `deepisp process`'s output (display orientation)."""
    raw = read_raw(path)
    mosaic, _ = model_input(raw, model.cfg)
    out = run_tiled(model, torch.from_numpy(mosaic)).clamp(0, 1)
    return raw.to_display(srgb_to_linear(out).permute(1, 2, 0).numpy())


def rawpy_render(path: Path) -> np.ndarray:
    """rawpy's default rendering (AHD, camera white balance and matrix, auto brightness) as linear sRGB."""
    with rawpy.imread(str(path)) as r:
        return r.postprocess(use_camera_wb=True, gamma=(1, 1), output_bps=16).astype(np.float64) / 65535.0


def score(linear: np.ndarray, reference: np.ndarray, lamp: np.ndarray) -> dict:
    """Per-patch CIEDE2000 after per-channel gains fitted on the neutral patches, chroma ratio, lamp chroma."""
    measured = patches(linear)
    ref_n, meas_n = reference[NEUTRALS], measured[NEUTRALS]
    gains = (ref_n * meas_n).sum(0) / (meas_n**2).sum(0)
    fitted = measured * gains
    lab_ref, lab_fit = lab(reference), lab(np.clip(fitted, 0, None))
    de = colour.delta_E(lab_fit, lab_ref, method="CIE 2000")
    chroma = np.hypot(lab_fit[:, 1], lab_fit[:, 2]) / np.hypot(lab_ref[:, 1], lab_ref[:, 2])
    lamp_lab = lab(np.clip(linear[lamp], 0, 1))  # as displayed: no gains
    return {
        "gains": gains.tolist(),
        "ciede2000": de.tolist(),
        "chromatic_ciede2000": float(de[:18].mean()),
        "neutral_ciede2000": float(de[NEUTRALS].mean()),
        "chroma_ratio": float(chroma[:18].mean()),
        "lamp_chroma": float(np.hypot(lamp_lab[:, 1], lamp_lab[:, 2]).mean()),
        "lamp_lab": lamp_lab.mean(0).tolist(),
        "fitted": fitted.tolist(),
    }


def figure(reference: np.ndarray, results: dict, path: Path) -> None:
    """One row per patch group: the reference and each method (gain-fitted), as sRGB squares."""
    cell, names = 36, ["X-Rite", *results]
    rows = [reference, *[np.array(r["fitted"]) for r in results.values()]]
    img = Image.new("RGB", (6 * cell * len(rows) + 10 * len(rows), 4 * cell + 24), "white")
    draw = ImageDraw.Draw(img)
    for k, (name, values) in enumerate(zip(names, rows)):
        x0 = k * (6 * cell + 10)
        draw.text((x0, 4 * cell + 6), name[:40], fill="black")
        srgb = np.round(np.clip(colour.cctf_encoding(np.clip(values, 0, 1)), 0, 1) * 255).astype(np.uint8)
        for p, c in enumerate(srgb):
            x, y = x0 + (p % 6) * cell, (p // 6) * cell
            draw.rectangle([x, y, x + cell - 2, y + cell - 2], fill=tuple(int(v) for v in c))
    save_jpeg(img, path, quality=92)


def to_markdown(report: dict) -> str:
    lines = [
        "X-Rite ColorChecker (24 patches) in `colorchart.dng` (Canon EOS Kiss X4), against X-Rite's values for charts made after "
        "November 2014 (colour-science's table), after one gain per channel fitted on the neutral patches. Generated by "
        "`benchmarks/colorchart.py`.",
        "",
        "| method | chromatic CIEDE2000 | neutral CIEDE2000 | chroma / reference | lamp chroma C*ab |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['chromatic_ciede2000']:.2f} | {r['neutral_ciede2000']:.2f} | {r['chroma_ratio']:.2f} | {r['lamp_chroma']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    add_full_models(ap)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not CHART.is_file():
        return fail(missing_shared(CHART))
    names, reference = reference_linear_srgb()
    lamp = lamp_mask(CHART)
    renders = {RAWPY: rawpy_render(CHART)}
    for path in args.full_models:
        model, _ = load_model(path)
        renders[short_label(path)] = model_render(model, CHART)
    results = {name: score(img, reference, lamp) for name, img in renders.items()}
    report = {"reference": REFERENCE, "patches": names, "reference_linear_srgb": reference.tolist(), "results": results}
    markdown = to_markdown(report)
    write_result(args.out / "colorchart.json", report, markdown, indent=1)
    figure(reference, results, args.out / "colorchart.jpg")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
