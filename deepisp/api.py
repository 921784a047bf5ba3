"""The Python API: a raw file developed in one call, as rawpy's `imread(path).postprocess()` does.

    import deepisp
    img = deepisp.develop("shot.dng")                      # [H,W,3] float32, sRGB-encoded, in [0,1]
    img = deepisp.develop("shot.dng", model="phone-jdd")    # a shipped model by name, a .pt or an export's .json
    model = deepisp.load_model("micro-full")                # the network (torch.nn.Module, eval mode, CPU)

`develop` runs what `deepisp process` runs for one file (deepisp.process: the model's input contract, exact
tiled inference, JDD output finished with the file's colour), and returns the image instead of writing it;
what `process` prints as warnings arrive as Python warnings (DeepISPWarning).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from deepisp.checkpoint import load_model as _load_checkpoint_model
from deepisp.model.network import DeepISP
from deepisp.noise_level import check_noise_profile
from deepisp.options import MAX_MEGAPIXELS
from deepisp.process import infer, noise_level_warning, prepare_input
from deepisp.raw import RawMosaic, read_raw
from deepisp.runtime import ExportedModel


class DeepISPWarning(UserWarning):
    """What the user should know about how a file was developed (no white balance in the file, an estimated
    noise level, ...): `deepisp process` prints these as `warning:` lines."""


def load_model(model: str | Path | None = None) -> DeepISP | ExportedModel:
    """A model to develop with: None (the default, micro-full), a shipped model by name ("micro-full",
    "phone-full", "micro-jdd", "phone-jdd"; the file's sha256 checked), a checkpoint (.pt) from `deepisp train`,
    or an exported variant's sidecar (deepisp_<variant>.json, run with ONNX Runtime or LiteRT)."""
    if model is not None and Path(model).suffix == ".json":
        return ExportedModel(model)
    return _load_checkpoint_model(model)[0]


def develop(
    raw: str | Path | RawMosaic,
    model: str | Path | DeepISP | ExportedModel | None = None,
    *,
    white_balance: str | None = None,
    linear: bool = False,
    noise_profile: tuple[float, float] | None = None,
    tile: int | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
    progress: bool = False,
) -> np.ndarray:
    """Develop one raw file.

    Args:
        raw: a raw file's path (.dng, .cr2, .nef, .arw, ...) or a RawMosaic from `deepisp.raw.read_raw`.
        model: as `load_model` takes it, or a loaded model; None is the shipped default (micro-full).
        white_balance: full models: "camera" (the file's, estimated when it has none), "estimate" or "off";
            None: as the model was trained (`deepisp process --white-balance`).
        linear: JDD models: the denoised, demosaiced sensor RGB through the sRGB curve only.
        noise_profile: noise-aware JDD models: (S, O) instead of the file's NoiseProfile (or its estimate).
        tile, max_megapixels, progress: as `deepisp process --tile/--max-megapixels`, and a progress bar.
    Returns:
        [H,W,3] float32, sRGB-encoded, in [0,1], display orientation.
    Raises:
        deepisp.DeepISPError: a file or model deepisp cannot use, with a one-line reason.
    """
    if not isinstance(model, (DeepISP, ExportedModel)):
        model = load_model(model)
    if not isinstance(raw, RawMosaic):
        raw = read_raw(Path(raw), max_megapixels)
    check_noise_profile(model, noise_profile)
    decoded = prepare_input(model, raw, white_balance, linear, noise_given=noise_profile is not None)
    for message in (*decoded.warnings, noise_level_warning(model, decoded.raw.noise_profile, noise_profile)):
        if message:
            warnings.warn(message, DeepISPWarning, stacklevel=2)
    return infer(model, decoded.raw, decoded.mosaic, tile, progress, noise_profile, linear).astype(np.float32)
