"""The rows of benchmarks/quality.py's JDD table: what a method is (Method), the classical demosaicers it
compares against, and a DeepISP JDD checkpoint as a row.

Every row gets the same input, an [H,W] uint16 RGGB mosaic whose full scale U16 is linear 1.0. The classical
rows need colour-demosaicing (INSTALL_HINT), OpenCV and a LibRaw with DCB (rawpy's PyPI wheel).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import rawpy
import torch

from benchmarks.common import model_label
from deepisp.checkpoint import load_model
from deepisp.color import linear_to_srgb, srgb_to_linear
from deepisp.data.dng import write_dng
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.model import fold_noise_level, noise_levels
from deepisp.options import Mode
from deepisp.tiling import run_tiled

try:
    with warnings.catch_warnings():  # colour-demosaicing 0.2.7 imports SciPy's deprecated ndimage.filters
        warnings.simplefilter("ignore", DeprecationWarning)
        import colour_demosaicing
except ImportError:  # reported by require_colour_demosaicing() as one line with the install command
    colour_demosaicing = None

U16 = 65535  # full scale of the 16-bit mosaic every JDD method receives: 65535 is linear 1.0
INSTALL_HINT = 'pip install "colour-demosaicing>=0.2.7"'

Demosaicer = Callable[[np.ndarray], np.ndarray]


class Method(NamedTuple):
    """One row of the JDD table. `run`: [H,W] uint16 RGGB mosaic (65535 = linear 1.0) -> [3,H,W] float,
    linear camera RGB, nominally [0,1] (not clipped: the metrics clip). A `noise_aware` method's run also
    takes the noise's sigma on the [0,1] scale."""

    name: str
    run: Demosaicer
    about: str
    noise_aware: bool = False


def require_colour_demosaicing() -> None:
    """DeepISPError saying what to install when colour-demosaicing is missing."""
    if colour_demosaicing is None:
        raise DeepISPError(f"this benchmark needs colour-demosaicing: {INSTALL_HINT}")


def library_versions() -> dict[str, str]:
    """The versions of the libraries behind the classical rows, as quality.json's environment records them."""
    return {
        "libraw": ".".join(map(str, rawpy.libraw_version)),
        "rawpy": rawpy.__version__,
        "opencv": cv2.__version__,
        "colour_demosaicing": colour_demosaicing.__version__,
    }


def chw(hwc: np.ndarray, full_scale: float = 1.0) -> np.ndarray:
    """[H,W,3] -> [3,H,W] float64 divided by `full_scale`."""
    return np.moveaxis(hwc, -1, 0).astype(np.float64) / full_scale


def deepisp_bilinear(cfa: np.ndarray) -> np.ndarray:
    """deepisp's bilinear demosaic, in float32, as the model runs it (float64 convolutions are several times slower in torch)."""
    return bilinear_demosaic(torch.from_numpy((cfa / U16).astype(np.float32))[None, None])[0].double().numpy()


def colour_demosaic(cfa: np.ndarray, fn: Callable) -> np.ndarray:
    """A colour-demosaicing function (float [H,W] mosaic, pattern name) -> [H,W,3] float."""
    return chw(fn(cfa / U16, "RGGB"))


# OpenCV names a Bayer pattern by the second and third pixels of its second row, so the RGGB mosaic
# (R G / G B) is OpenCV's "BG" (tests/test_quality_benchmark.py pins this on a constant-colour image).
OPENCV_RGGB = {"bilinear": cv2.COLOR_BayerBG2RGB, "VNG": cv2.COLOR_BayerBG2RGB_VNG, "EA": cv2.COLOR_BayerBG2RGB_EA}


def opencv_demosaic(cfa: np.ndarray, code: int) -> np.ndarray:
    """cv2.cvtColor on the uint16 mosaic (bilinear and EA take 16 bit; OpenCV returns R,G,B for *2RGB)."""
    return chw(cv2.cvtColor(cfa, code), U16)


def opencv_vng(cfa: np.ndarray) -> np.ndarray:
    """OpenCV's VNG accepts 8-bit mosaics only. Linear 8 bit would posterise the shadows far below any
    demosaicing error (a step of 1/255 in linear is 13/255 in sRGB near black), so it gets the mosaic
    sRGB-encoded to 8 bit, and its output is decoded back to linear."""
    srgb = linear_to_srgb(torch.from_numpy(cfa / U16)).numpy()
    out = cv2.cvtColor(np.round(srgb * 255).astype(np.uint8), OPENCV_RGGB["VNG"])
    return srgb_to_linear(torch.from_numpy(chw(out, 255))).numpy()


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
        return chw(raw.postprocess(**LIBRAW_LINEAR, **params), U16)


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


def jdd_model_method(path: Path, tile: int) -> Method:
    """The JDD table's row for a `deepisp train --preset *-jdd` checkpoint (float32, exact tiling)."""
    model, state = load_model(path)
    if model.cfg.mode != Mode.JDD:
        raise DeepISPError(f"--jdd-model {path} is a {model.cfg.mode!r} model; pass a jdd checkpoint (deepisp train --preset phone-jdd)")

    def run(cfa: np.ndarray, sigma: float | None = None) -> np.ndarray:
        folded = model if sigma is None else fold_noise_level(model, noise_levels(sigma))
        return run_tiled(folded, torch.from_numpy((cfa / U16).astype(np.float32)), tile=tile).double().numpy()

    if model.cfg.noise_input:
        about = f"{path.name} through deepisp.tiling.run_tiled; noise-aware: given sigma (deepisp.model.fold_noise_level)"
        return Method(model_label(path, state), run, about, noise_aware=True)
    return Method(model_label(path, state), run, f"{path.name} through deepisp.tiling.run_tiled; blind (given no noise level)")
