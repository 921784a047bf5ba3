"""Image quality of deepisp's models against classical pipelines, on ground truth the project can trust.

    python benchmarks/quality.py [--jdd-model CKPT] [--full-model CKPT ...] [--limit N] [--sigmas 0 2 5 10]
                                 [--figure PHOTO SIGMA]

Owns two comparisons and the results files benchmarks/results/quality.json (every number, per image and
mean, with the protocols) and quality.md (the tables the README shows, generated here, never typed):

    jdd   joint denoising + demosaicing of the 24 Kodak photographs, mosaiced and noised here: a JDD model
          (`--jdd-model`, default: the shipped deepisp/weights/deepisp_phone_jdd.pt) against bilinear, Malvar-He-Cutler and Menon
          (colour-demosaicing), OpenCV's three Bayer demosaicers, and LibRaw's AHD and DCB with and without
          its FBDD denoiser (through rawpy, on DNGs written from the very same mosaics).
    full  the whole ISP on S7-layout low-light pairs (the Kodak photos rendered by `deepisp make-synthetic
          --seed 1`): full models (default: the shipped one; several may be given) against rawpy's default postprocess with the
          camera white balance, and against no ISP at all, after the paper's histogram stretch.

Also quality_crops.jpg: one photo at one noise level (`--figure`; by default kodim19 at σ = 5 when 5 is among
the sigmas), the crop where bilinear demosaicing goes most wrong, through the truth, the classical rows of
FIGURE_CLASSICAL and every DeepISP model, each labelled with its sRGB PSNR on that crop; quality.json records
which photo, sigma and crop.

The exact protocols are JDD_PROTOCOL and FULL_PROTOCOL below; `--help` prints them and both results files
carry them, so the numbers never travel without the way they were measured. Besides deepisp's own
dependencies this needs colour-demosaicing (`pip install "colour-demosaicing>=0.2.7"`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import rawpy
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from deepisp.atomic import atomic_path
from deepisp.cfa import canonicalize, mosaic
from deepisp.checkpoint import DEFAULT_JDD_CHECKPOINT, load_model
from deepisp.color import histogram_stretch, linear_to_srgb, srgb_to_linear
from deepisp.data import DEFAULT_EVAL_SET, SHARED_DATA
from deepisp.data.dng import write_dng
from deepisp.data.s7 import PAIRS, S7Dataset, register
from deepisp.data.synthetic import find_photos
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.metrics import image_metrics, psnr, psnr_linear_and_srgb, ssim
from deepisp.model import DeepISP, fold_noise_level, noise_levels
from deepisp.options import DEFAULT_TILE
from deepisp.raw import read_raw
from deepisp.tiling import run_tiled

try:
    with warnings.catch_warnings():  # colour-demosaicing 0.2.7 imports SciPy's deprecated ndimage.filters
        warnings.simplefilter("ignore", DeprecationWarning)
        import colour_demosaicing
except ImportError:  # reported by main() as one line with the install command
    colour_demosaicing = None

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DEFAULT_PHOTOS = SHARED_DATA / "photos" / "kodak24"
SIGMAS = (0.0, 2.0, 5.0, 10.0)
BORDER = 8  # pixels cropped from every side before any JDD metric: border handling is not what is compared
NOISE_SEED = 0
U16 = 65535  # full scale of the 16-bit mosaic every JDD method receives: 65535 is linear 1.0
INSTALL_HINT = 'pip install "colour-demosaicing>=0.2.7"'
NO_ISP, RAWPY = "bilinear + sRGB curve (no ISP)", "rawpy default (AHD, camera WB)"  # full-ISP row names

JDD_PROTOCOL = f"""\
Ground truth: each photo (Kodak24, 500x500 sRGB PNG) decoded with the inverse sRGB curve
(deepisp.color.srgb_to_linear) to linear RGB in [0,1], taken as linear camera RGB (no colour matrix, no
white balance). Input: that image sampled on the RGGB grid (deepisp.cfa.mosaic), plus white Gaussian
noise of standard deviation sigma/255 added in linear space (one N(0,1) field per photo, seeded by
({NOISE_SEED}, photo index) and scaled by each sigma), clipped to [0,1] and quantised to 16 bits
(round(x*65535)); every method gets that same uint16 mosaic, and no noise level except the models marked
noise-aware, which are also given sigma (read noise only, no shot noise: what the mosaic has). Outputs are clipped to
[0,1] and {BORDER} pixels are cropped from every side before any metric. PSNR linear: on the linear values;
PSNR sRGB: after deepisp.color.linear_to_srgb (the MSR protocol, deepisp.metrics.psnr_linear_and_srgb);
SSIM: deepisp.metrics.ssim (11x11 Gaussian window, sigma 1.5, mean over R,G,B) on the sRGB-encoded images.
Table values are means over photos of per-photo values. s/image: wall time of the method alone on one
500x500 mosaic on this machine (LibRaw rows include writing and decoding the DNG)."""

FULL_PROTOCOL = """\
Data: S7-layout low-light pairs of the same photos from `deepisp make-synthetic --seed 1` (short_exposure.dng:
1/4 of the auto exposure, shot + read noise, 10 bit, the Galaxy S7 colour matrix, a sampled white
balance; target medium_exposure.jpg, the photo itself), all in the raw's canonical frame. No ISP: bilinear
demosaic + sRGB curve, the `deepisp eval` baseline. rawpy: LibRaw's default postprocess (AHD, sRGB through
the DNG's colour matrix, BT.709 gamma, auto brightness) with use_camera_wb=True (the DNG's AsShotNeutral),
16-bit output, brought to the canonical frame. Model: exact tiled inference (deepisp.tiling.run_tiled),
clamped to [0,1]; a model whose white_balance is "as_shot" gets the mosaic balanced with the DNG's
AsShotNeutral (deepisp.white_balance), the same information rawpy's use_camera_wb reads. Every output and the target get the paper's histogram stretch
(deepisp.color.histogram_stretch: luma stretched with 5% of pixels saturated at each end, chroma kept),
then PSNR, SSIM and CIEDE2000 (mean and 99th percentile over the image's pixels) on the whole frame, as
`deepisp eval` does. rawpy gets exactly the colour matrix and white balance the generator used, a best case
that real S7 files would not give it."""

Demosaicer = Callable[[np.ndarray], np.ndarray]


class Method(NamedTuple):
    """One row of the JDD table. `run`: [H,W] uint16 RGGB mosaic (65535 = linear 1.0) -> [3,H,W] float,
    linear camera RGB, nominally [0,1] (not clipped: the metrics clip). A `noise_aware` method's run also
    takes the noise's sigma on the [0,1] scale."""

    name: str
    run: Demosaicer
    about: str
    noise_aware: bool = False


def _chw(hwc: np.ndarray, full_scale: float = 1.0) -> np.ndarray:
    """[H,W,3] -> [3,H,W] float64 divided by `full_scale`."""
    return np.moveaxis(hwc, -1, 0).astype(np.float64) / full_scale


def deepisp_bilinear(cfa: np.ndarray) -> np.ndarray:
    """deepisp's bilinear demosaic, in float32, as the model runs it (float64 convolutions are several times slower in torch)."""
    return bilinear_demosaic(torch.from_numpy((cfa / U16).astype(np.float32))[None, None])[0].double().numpy()


def colour_demosaic(cfa: np.ndarray, fn: Callable) -> np.ndarray:
    """A colour-demosaicing function (float [H,W] mosaic, pattern name) -> [H,W,3] float."""
    return _chw(fn(cfa / U16, "RGGB"))


# OpenCV names a Bayer pattern by the second and third pixels of its second row, so the RGGB mosaic
# (R G / G B) is OpenCV's "BG" (tests/test_quality_benchmark.py pins this on a constant-colour image).
OPENCV_RGGB = {"bilinear": cv2.COLOR_BayerBG2RGB, "VNG": cv2.COLOR_BayerBG2RGB_VNG, "EA": cv2.COLOR_BayerBG2RGB_EA}


def opencv_demosaic(cfa: np.ndarray, code: int) -> np.ndarray:
    """cv2.cvtColor on the uint16 mosaic (bilinear and EA take 16 bit; OpenCV returns R,G,B for *2RGB)."""
    return _chw(cv2.cvtColor(cfa, code), U16)


def opencv_vng(cfa: np.ndarray) -> np.ndarray:
    """OpenCV's VNG accepts 8-bit mosaics only. Linear 8 bit would posterise the shadows far below any
    demosaicing error (a step of 1/255 in linear is 13/255 in sRGB near black), so it gets the mosaic
    sRGB-encoded to 8 bit, and its output is decoded back to linear."""
    srgb = linear_to_srgb(torch.from_numpy(cfa / U16)).numpy()
    out = cv2.cvtColor(np.round(srgb * 255).astype(np.uint8), OPENCV_RGGB["VNG"])
    return srgb_to_linear(torch.from_numpy(_chw(out, 255))).numpy()


# LibRaw as a pure demosaicer: camera RGB out (no colour matrix), linear (gamma 1), no brightening, unit
# white balance, no rotation. adjust_maximum_thr=0 stops LibRaw from lowering the white level to the
# image's own maximum (by default it does so when that maximum is above 75% of the white level), which
# would rescale some images and not others.
LIBRAW_LINEAR = dict(
    output_color=rawpy.ColorSpace.raw,
    gamma=(1, 1),
    no_auto_bright=True,
    output_bps=16,
    use_camera_wb=False,
    user_wb=[1, 1, 1, 1],
    user_flip=0,
    adjust_maximum_thr=0.0,
)


def libraw_demosaic(cfa: np.ndarray, dng: Path, **params) -> np.ndarray:
    """The mosaic as a DNG (black 0, white 65535, so DN = value exactly) decoded by LibRaw with `params`."""
    write_dng(dng, cfa, pattern="RGGB", black_level=0, white_level=U16, color_matrix=np.eye(3), as_shot_neutral=(1.0, 1.0, 1.0))
    with rawpy.imread(str(dng)) as raw:
        return _chw(raw.postprocess(**LIBRAW_LINEAR, **params), U16)


def classical_methods(workdir: Path) -> list[Method]:
    """The JDD table's classical rows; LibRaw rows write their DNG into `workdir`."""
    if not rawpy.DemosaicAlgorithm.DCB.isSupported:
        raise DeepISPError(f"this LibRaw build (rawpy {rawpy.__version__}) lacks DCB; install rawpy's PyPI wheel")
    cdm = colour_demosaicing
    libraw = partial(libraw_demosaic, dng=workdir / "mosaic.dng")
    ahd = dict(demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD)
    # DCB with RawTherapee's defaults (2 refinement passes, enhanced colours); plain LibRaw DCB is weaker.
    dcb = dict(demosaic_algorithm=rawpy.DemosaicAlgorithm.DCB, dcb_iterations=2, dcb_enhance=True)
    # FBDD (the DCB author's pre-demosaic denoiser) "Light": it beat "Full" at every sigma on a 3-photo check.
    fbdd = dict(fbdd_noise_reduction=rawpy.FBDDNoiseReductionMode.Light)
    return [
        Method("bilinear", deepisp_bilinear, "deepisp.demosaic.bilinear_demosaic (the model's own input)"),
        Method(
            "Malvar-He-Cutler",
            partial(colour_demosaic, fn=cdm.demosaicing_CFA_Bayer_Malvar2004),
            "colour-demosaicing demosaicing_CFA_Bayer_Malvar2004 (5x5 gradient-corrected linear filters)",
        ),
        Method(
            "Menon",
            partial(colour_demosaic, fn=cdm.demosaicing_CFA_Bayer_Menon2007),
            "colour-demosaicing demosaicing_CFA_Bayer_Menon2007 (DDFAPD, with its refining step)",
        ),
        Method("OpenCV bilinear", partial(opencv_demosaic, code=OPENCV_RGGB["bilinear"]), "cv2.cvtColor COLOR_BayerBG2RGB on the uint16 mosaic"),
        Method("OpenCV VNG", opencv_vng, "cv2.cvtColor COLOR_BayerBG2RGB_VNG; 8-bit only, so on the mosaic sRGB-encoded to 8 bit, output decoded to linear"),
        Method("OpenCV EA", partial(opencv_demosaic, code=OPENCV_RGGB["EA"]), "cv2.cvtColor COLOR_BayerBG2RGB_EA (edge-aware) on the uint16 mosaic"),
        Method("LibRaw AHD", partial(libraw, **ahd), "rawpy postprocess, DemosaicAlgorithm.AHD, linear camera RGB"),
        Method("LibRaw AHD + FBDD", partial(libraw, **ahd, **fbdd), "as LibRaw AHD, fbdd_noise_reduction=Light"),
        Method("LibRaw DCB", partial(libraw, **dcb), "DemosaicAlgorithm.DCB, dcb_iterations=2, dcb_enhance=True"),
        Method("LibRaw DCB + FBDD", partial(libraw, **dcb, **fbdd), "as LibRaw DCB, fbdd_noise_reduction=Light"),
    ]


def model_label(path: Path | None, state: dict) -> str:
    """'DeepISP <preset>[ noise-aware][ sqrt-companded] (<file>, <steps> steps)' from a checkpoint's saved configs."""
    preset = state.get("train_config", {}).get("preset", "custom")
    if state["model_config"].get("noise_input"):
        preset += " noise-aware"
    if state["model_config"].get("compand", "none") != "none":
        preset += f" {state['model_config']['compand']}-companded"
    where = "shipped" if path is None else Path(path).name
    steps = f", {state['step']} steps" if "step" in state else ""
    return f"DeepISP {preset} ({where}{steps})"


def jdd_model_method(path: Path, tile: int) -> Method:
    """The JDD table's row for a `deepisp train --preset *-jdd` checkpoint (float32, exact tiling)."""
    model, state = load_model(path)
    if model.cfg.mode != "jdd":
        raise DeepISPError(f"--jdd-model {path} is a {model.cfg.mode!r} model; pass a jdd checkpoint (deepisp train --preset phone-jdd)")

    def run(cfa: np.ndarray, sigma: float | None = None) -> np.ndarray:
        folded = model if sigma is None else fold_noise_level(model, noise_levels(sigma))
        return run_tiled(folded, torch.from_numpy((cfa / U16).astype(np.float32)), tile=tile).double().numpy()

    if model.cfg.noise_input:
        about = f"{path.name} through deepisp.tiling.run_tiled; noise-aware: given sigma (deepisp.model.fold_noise_level)"
        return Method(model_label(path, state), run, about, noise_aware=True)
    return Method(model_label(path, state), run, f"{path.name} through deepisp.tiling.run_tiled; blind (given no noise level)")


def load_linear_photo(path: Path) -> np.ndarray:
    """An sRGB photo -> [3,H,W] float64 linear RGB in [0,1] (the JDD ground truth)."""
    srgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    return srgb_to_linear(torch.from_numpy(_chw(srgb))).numpy()


def timed(fn: Callable, *args) -> tuple:
    """(fn(*args), wall seconds)."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


class Reference(NamedTuple):
    """A JDD ground truth cut to the scored area: [3,H-2B,W-2B] float64 linear and sRGB-encoded, in [0,1]."""

    linear: torch.Tensor
    srgb: torch.Tensor


def reference(target: np.ndarray) -> Reference:
    """[3,H,W] linear ground truth -> its scored area, linear and encoded (once per photo)."""
    linear = torch.from_numpy(np.clip(target[:, BORDER:-BORDER, BORDER:-BORDER], 0.0, 1.0))
    return Reference(linear, linear_to_srgb(linear))


def jdd_metrics(pred: np.ndarray, ref: Reference) -> dict[str, float]:
    """pred [3,H,W] linear RGB -> PSNR linear, PSNR sRGB and SSIM (sRGB) against `ref`.

    The numbers of deepisp.metrics.psnr_linear_and_srgb(pred, target, border=BORDER) (clip, then encode;
    tested equal), with the reference encoded once per photo instead of once per method.
    """
    linear = torch.from_numpy(np.clip(pred[:, BORDER:-BORDER, BORDER:-BORDER], 0.0, 1.0))
    srgb = linear_to_srgb(linear)
    return {"psnr_linear": psnr(linear, ref.linear), "psnr_srgb": psnr(srgb, ref.srgb), "ssim": ssim(srgb, ref.srgb)}


def noisy_mosaics(target: np.ndarray, sigmas: Sequence[float], seed: Sequence[int]) -> dict[float, np.ndarray]:
    """[3,H,W] linear -> {sigma: [H,W] uint16 RGGB mosaic}: noise sigma/255 in linear, clipped, 16 bit."""
    clean = mosaic(torch.from_numpy(target)[None])[0, 0].numpy()
    z = np.random.default_rng(seed).standard_normal(clean.shape)
    return {s: np.round(np.clip(clean + s / 255.0 * z, 0.0, 1.0) * U16).astype(np.uint16) for s in sigmas}


def run_jdd(
    photos: Sequence[Path], sigmas: Sequence[float], methods: Sequence[Method], keep: tuple[str, float] | None = None
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every method on every photo and sigma; one row per (photo, sigma, method). Also the outputs [3,H,W]
    (linear) of every method, and the truth ("truth"), for `keep` = (photo stem, sigma); empty if not run."""
    # One untimed call each first, so one-off setup (torch's first convolution, library caches) is not
    # billed to the first photo.
    warm_up = np.full((64, 64), U16 // 2, dtype=np.uint16)
    for method in methods:
        method.run(warm_up, *([0.0] if method.noise_aware else []))
    rows, kept = [], {}
    for index, path in enumerate(tqdm(photos, desc="jdd", unit="photo")):
        target = load_linear_photo(path)
        ref = reference(target)
        for sigma, cfa in noisy_mosaics(target, sigmas, (NOISE_SEED, index)).items():
            for method in methods:
                out, seconds = timed(method.run, cfa, *([sigma / 255.0] if method.noise_aware else []))
                rows.append({"image": path.stem, "sigma": sigma, "method": method.name, **jdd_metrics(out, ref), "seconds": seconds})
                if keep == (path.stem, sigma):
                    kept.update({"truth": target, method.name: out})
    return rows, kept


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


def rawpy_default(raw_path: Path, target: torch.Tensor) -> torch.Tensor:
    """rawpy's default postprocess with the camera white balance, in the frame of the dataset's target.

    Rendered with user_flip=0 (sensor frame, not display) and then cut and flipped exactly as
    deepisp.raw.read_raw and deepisp.data.s7 cut and flip the mosaic: even size, flips to RGGB, the
    dataset's centre crop. (Going through the display orientation and `RawMosaic.from_display` would be
    off by a pixel for an odd-sized frame, whose odd row/column read_raw drops before flipping.)

    Args:
        raw_path: the scene's short-exposure raw.
        target: [3,H,W] the dataset's target for that scene, for its size.
    Returns:
        [3,H,W] float32 in [0,1], sRGB primaries, BT.709-gamma-encoded (LibRaw's default curve).
    """
    raw = read_raw(raw_path)
    with rawpy.imread(str(raw_path)) as r:
        rgb = r.postprocess(use_camera_wb=True, output_bps=16, user_flip=0)
    h, w = raw.mosaic.shape
    canonical, _, _ = canonicalize(np.moveaxis(rgb[:h, :w], -1, 0), raw.pattern)
    target_hwc = target.permute(1, 2, 0).numpy()
    cropped = [register(c, target_hwc, raw_path.name)[0] for c in canonical]
    return torch.from_numpy(np.stack(cropped).astype(np.float32) / U16)


@torch.no_grad()
def run_full(root: Path, models: dict[str, DeepISP], tile: int, limit: int | None) -> list[dict]:
    """No ISP, rawpy and each model on each scene of the S7-layout `root`; one row per (scene, method),
    metrics after the stretch. "as_shot" models read the scene balanced with its as-shot white balance."""
    dataset = S7Dataset(root, split="all")
    inputs = {name: S7Dataset(root, split="all", model_config=model.cfg) for name, model in models.items()}
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for model in models.values():  # untimed warm-up, as in run_jdd
        run_tiled(model, torch.from_numpy(dataset.frame(0)[0]), tile=tile)
    rows = []
    for i in tqdm(range(n), desc="full ISP", unit="scene"):
        cfa, target = dataset.frame(i)
        raw_path = dataset.scenes[i].files[(PAIRS[dataset.pair][0], "raw")]  # the pair's raw
        renders: dict[str, Callable[[], torch.Tensor]] = {
            # Called within this iteration only, so the loop variables they read are the current ones.
            NO_ISP: lambda: linear_to_srgb(bilinear_demosaic(torch.from_numpy(cfa)[None, None])[0].clamp(0, 1)),  # noqa: B023
            RAWPY: lambda: rawpy_default(raw_path, target),  # noqa: B023
        }
        for name, model in models.items():
            model_cfa = inputs[name].frame(i)[0]
            renders[name] = lambda m=model, c=model_cfa: run_tiled(m, torch.from_numpy(c), tile=tile).clamp(0, 1)
        stretched_target = histogram_stretch(target)
        for name, render in renders.items():
            out, seconds = timed(render)
            metrics = image_metrics(histogram_stretch(out), stretched_target)
            rows.append({"scene": dataset.name(i), "method": name, **metrics, "seconds": seconds})
    return rows


def means(rows: list[dict], keys: Sequence[str], by: Sequence[str]) -> dict:
    """Mean of `keys` over rows grouped by the `by` fields, nested in that order (numbers as str keys)."""
    out: dict = {}
    for row in rows:
        node = out
        for field in by:
            node = node.setdefault(_key(row[field]), {})
        for k in keys:
            node.setdefault(k, []).append(row[k])

    def collapse(node: dict) -> dict:
        return {k: float(np.mean(v)) if isinstance(v, list) else collapse(v) for k, v in node.items()}

    return collapse(out)


def _key(value) -> str:
    """2.0 -> '2', 2.5 -> '2.5', 'x' -> 'x'."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(values: dict, column_best: dict, fmt: dict[str, str]) -> str:
    """'a / b / c' with each value that is its column's best in bold."""
    parts = [format(values[k], f) for k, f in fmt.items()]
    return " / ".join(f"**{p}**" if np.isclose(values[k], column_best[k]) else p for p, k in zip(parts, fmt))


def to_markdown(report: dict) -> str:
    """The two tables and their protocols, as the README shows them."""
    jdd, full = report["jdd"], report["full"]
    sigmas = [_key(s) for s in jdd["sigmas"]]
    fmt = {"psnr_linear": ".2f", "psnr_srgb": ".2f", "ssim": ".4f"}
    best = {s: {k: max(m[s][k] for m in jdd["mean"].values()) for k in fmt} for s in sigmas}
    lines = [
        f"**Joint denoising + demosaicing**, {jdd['n_images']} photos of `{jdd['photos']}`, Gaussian noise σ/255 in linear:",
        "",
        "Each cell: mean PSNR linear (dB) / PSNR sRGB (dB) / SSIM (sRGB); best per column in bold."
        + ("" if jdd["models"] else " No JDD checkpoint was given (`--jdd-model`): classical methods only."),
        "",
        "| method | " + " | ".join(f"σ={s}" for s in sigmas) + " | s/image |",
        "|---|" + "---|" * (len(sigmas) + 1),
    ]
    for name, by_sigma in jdd["mean"].items():
        cells = [_cell(by_sigma[s], best[s], fmt) for s in sigmas]
        seconds = np.mean([by_sigma[s]["seconds"] for s in sigmas])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seconds:.3f} |")
    lines += ["", *(f"- **{name}**: {about}" for name, about in jdd["methods"].items()), "", f"Protocol: {jdd['protocol']}", ""]

    fmt_full = {"psnr": ".2f", "ssim": ".4f", "ciede2000": ".2f", "ciede2000_p99": ".2f"}
    lines += [
        f"**Full ISP**, {full['n_scenes']} S7-layout low-light scenes of `{full['data']}`, against the well-lit target after the paper's histogram stretch:",
        "",
        "| method | PSNR (dB) | SSIM | CIEDE2000 mean | CIEDE2000 p99 | s/image |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in full["mean"].items():
        lines.append(f"| {name} | " + " | ".join(format(m[k], f) for k, f in fmt_full.items()) + f" | {m['seconds']:.3f} |")
    env = report["environment"]
    lines += [
        "",
        f"Protocol: {full['protocol']}",
        "",
        f"Generated by `python benchmarks/quality.py` in {report['seconds'] / 60:.1f} min on {env['cpu_threads']} CPU "
        f"threads; LibRaw {env['libraw']}, rawpy {env['rawpy']}, OpenCV {env['opencv']}, "
        f"colour-demosaicing {env['colour_demosaicing']}, torch {env['torch']}.",
    ]
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    """A path as the results file records it: relative to the repository, so results are portable."""
    return os.path.relpath(Path(path).resolve(), REPO)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__,
        epilog=f"JDD protocol:\n{JDD_PROTOCOL}\n\nFull-ISP protocol:\n{FULL_PROTOCOL}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--photos", type=Path, metavar="DIR", default=DEFAULT_PHOTOS, help="sRGB photos for the JDD part (default: ../shared/data/photos/kodak24)")
    ap.add_argument(
        "--sigmas", type=float, nargs="+", metavar="S", default=list(SIGMAS), help="noise levels, in 1/255 of full scale, linear (default: 0 2 5 10)"
    )
    ap.add_argument("--limit", type=int, metavar="N", default=None, help="use only the first N photos and N scenes")
    ap.add_argument(
        "--jdd-model",
        type=Path,
        metavar="CKPT",
        nargs="+",
        default=[DEFAULT_JDD_CHECKPOINT],
        help=f"jdd checkpoint(s), one row each (deepisp train --preset phone-jdd); default: the shipped {_shown(DEFAULT_JDD_CHECKPOINT)}; "
        "'none': classical rows only",
    )
    ap.add_argument(
        "--full-model",
        type=Path,
        metavar="CKPT",
        nargs="+",
        default=[None],
        help="full checkpoint(s), one row each (default: the shipped deepisp/weights model)",
    )
    ap.add_argument(
        "--s7",
        type=Path,
        metavar="DIR",
        default=None,
        help=f"S7-layout folder for the full-ISP part (default: {_shown(DEFAULT_EVAL_SET)}, made from the Kodak photos if missing)",
    )
    ap.add_argument(
        "--figure",
        nargs=2,
        metavar=("PHOTO", "SIGMA"),
        default=None,
        help="photo stem and noise level (one of --sigmas) of quality_crops.jpg (default: kodim19 5 when 5 is among --sigmas)",
    )
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE, help="model tile size (results do not depend on it)")
    ap.add_argument("--out", type=Path, metavar="DIR", default=RESULTS, help="folder for the results files (default: benchmarks/results)")
    args = ap.parse_args(argv)
    if [str(p) for p in args.jdd_model] == ["none"]:
        args.jdd_model = []
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be at least 1")
    if any(s < 0 for s in args.sigmas):
        ap.error("--sigmas must be non-negative")
    if args.figure is None:
        args.figure = FIGURE_DEFAULT if FIGURE_DEFAULT[1] in args.sigmas else None
    else:
        try:
            args.figure = (args.figure[0], float(args.figure[1]))
        except ValueError:
            ap.error(f"--figure SIGMA must be a number, got {args.figure[1]!r}")
        if args.figure[1] not in args.sigmas:
            ap.error(f"--figure SIGMA must be one of --sigmas {' '.join(f'{s:g}' for s in args.sigmas)}")
    return args


def benchmark(args: argparse.Namespace) -> tuple[dict, Image.Image | None]:
    """Both parts: the report that quality.json holds, and the crops figure (None without `--figure`, or when
    its photo is not among those run). DeepISPError for missing inputs or dependencies."""
    if colour_demosaicing is None:
        raise DeepISPError(f"this benchmark needs colour-demosaicing: {INSTALL_HINT}")
    if not args.photos.is_dir():
        raise DeepISPError(f"photos folder {args.photos} not found: the benchmark needs ../shared/data/photos/kodak24 beside the repo, or pass --photos DIR")
    photos = find_photos([args.photos])[: args.limit]
    if args.s7 is None:
        from deepisp.export.calibration import default_s7_root  # builds DEFAULT_EVAL_SET on first use

        args.s7 = default_s7_root(DEFAULT_EVAL_SET)
    full_models = {}
    for path in args.full_model:
        model, state = load_model(path)
        if model.cfg.mode != "full":
            raise DeepISPError(f"--full-model {path} is a {model.cfg.mode!r} model; pass a full checkpoint")
        full_models[model_label(path, state)] = model

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deepisp-quality-") as tmp:
        methods = classical_methods(Path(tmp))
        methods += [jdd_model_method(path, args.tile) for path in args.jdd_model]
        jdd_rows, kept = run_jdd(photos, args.sigmas, methods, keep=args.figure)
    full_rows = run_full(args.s7, full_models, args.tile, args.limit)

    jdd_keys, full_keys = ("psnr_linear", "psnr_srgb", "ssim", "seconds"), ("psnr", "ssim", "ciede2000", "ciede2000_p99", "seconds")
    figure, crop = crops_figure(kept, f"{args.figure[0]}, sigma {args.figure[1]:g}/255") if kept else (None, None)
    report = {
        "jdd": {
            "photos": _shown(args.photos),
            "n_images": len(photos),
            "sigmas": args.sigmas,
            "border": BORDER,
            "models": [_shown(path) for path in args.jdd_model],
            "protocol": " ".join(JDD_PROTOCOL.split()),
            "methods": {m.name: m.about for m in methods},
            "mean": means(jdd_rows, jdd_keys, ("method", "sigma")),
            "per_image": jdd_rows,
            "figure": None if crop is None else {"photo": args.figure[0], "sigma": args.figure[1], "crop_y_x_size": list(crop)},
        },
        "full": {
            "data": _shown(args.s7),
            "n_scenes": len({r["scene"] for r in full_rows}),
            "models": list(full_models),
            "protocol": " ".join(FULL_PROTOCOL.split()),
            "mean": means(full_rows, full_keys, ("method",)),
            "per_image": full_rows,
        },
        "environment": {
            "libraw": ".".join(map(str, rawpy.libraw_version)),
            "rawpy": rawpy.__version__,
            "opencv": cv2.__version__,
            "colour_demosaicing": colour_demosaicing.__version__,
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "seconds": time.perf_counter() - t0,
    }
    return report, figure


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report, figure = benchmark(args)
    except DeepISPError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "quality.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    with atomic_path(args.out / "quality.md") as tmp:
        tmp.write_text(to_markdown(report))
    crops = args.out / "quality_crops.jpg"
    if figure is not None:
        with atomic_path(crops) as tmp:
            figure.save(tmp, format="JPEG", quality=92)
    elif crops.exists():  # a figure of an earlier run would sit beside numbers it does not belong to
        crops.unlink()
    if figure is None and args.figure is not None:
        print(f"note: --figure photo {args.figure[0]} is not among the photos run: no {crops.name}", file=sys.stderr)
    written = ", ".join(p.name for p in (args.out / "quality.json", args.out / "quality.md", crops) if p.exists())
    print(f"wrote {written} in {args.out} ({report['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
