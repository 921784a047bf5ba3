"""Raw file -> finished image at full resolution (`deepisp process`).

read_raw (canonical RGGB mosaic) -> full models: the raw brought to what the model was trained on
(deepisp.conditioning: white balance, neutral highlights, the camera's colours mapped into the reference
camera's, metered exposure; `white_balance="off"` feeds the raw as is) -> exact tiled DeepISP (PyTorch, or
exported ONNX/TFLite graphs via deepisp.runtime) -> undo the CFA flips and apply the file's
orientation -> clamp to [0,1] -> write JPEG (8-bit), PNG (8 or 16-bit) or TIFF (16-bit).
Full-ISP models output sRGB-encoded images. JDD models output linear sensor RGB, which is finished the way
LibRaw finishes a demosaiced raw (the file's white balance and colour matrix, then the sRGB curve:
deepisp.conditioning.render_linear), or with `linear=True` only given the sRGB curve (the sensor's own colours).
Noise-aware JDD models are told each file's noise: its DNG NoiseProfile, or `noise_profile` when given
(deepisp.model.fold_noise_level bakes it into the network for that file). Graphs exported from such a model
have one level baked in: a file whose NoiseProfile is another level gets a warning in its record, and so
does a level beyond the noise the model was trained on.
Outputs are written by deepisp.image_io (a temp file renamed, so a failure never leaves a partial image).
Several files (`process_files`) run as a three-stage pipeline: the next file is decoded and the previous
one encoded while the current one is in the network (LibRaw, torch, ONNX Runtime, TFLite and the image
encoders release the GIL), with results, and any error, reported in input order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from deepisp.color import linear_to_srgb
from deepisp.conditioning import Conditioning, file_white_balance, model_input, render_linear
from deepisp.data.photos import JDD_MAX_SIGMA, JDD_SHOT_RANGE
from deepisp.errors import DeepISPError
from deepisp.image_io import check_output_path, save_image
from deepisp.model.network import DeepISP
from deepisp.noise_estimate import estimate_noise_profile
from deepisp.noise_level import at_noise_level, check_noise_profile, profile_levels
from deepisp.options import MAX_MEGAPIXELS, WHITE_BALANCE_SOURCES, Mode
from deepisp.raw import RawMosaic, read_raw
from deepisp.runtime import ExportedModel
from deepisp.tiling import run_tiled

# Difference of noise level (read sigma, sqrt shot gain; relative to the larger) beyond which a file's
# NoiseProfile is "another level" than the one baked into exported graphs. The shot gain S, and read sigma
# where it scales with the analog gain, change 26% per third of an ISO stop (21% of the larger), so
# neighbouring third stops pass and two thirds apart warn; differences under NOISE_LEVEL_FLOOR (on the [0,1]
# scale, a quarter of a 0-255 code) never count.
NOISE_LEVEL_TOLERANCE = 0.25
NOISE_LEVEL_FLOOR = 0.25 / 255


class Decoded(NamedTuple):
    """A raw file ready for the model: the RawMosaic (orientation, colour; its noise_profile estimated from
    the image when the file has none and a noise-aware model needs one), the model's input [H,W] float in
    [0,1] canonical RGGB, what was done to it (full models: deepisp.conditioning), and warnings for the user."""

    raw: RawMosaic
    mosaic: torch.Tensor
    conditioning: Conditioning | None
    warnings: tuple[str, ...]


def decode(
    model: DeepISP | ExportedModel,
    raw_path: Path,
    white_balance: str | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
    linear: bool = False,
    noise_given: bool = False,
) -> Decoded:
    """Read a raw file and prepare the model's input (`prepare_input`)."""
    return prepare_input(model, read_raw(raw_path, max_megapixels), white_balance, linear, noise_given)


def prepare_input(model: DeepISP | ExportedModel, raw: RawMosaic, white_balance: str | None = None, linear: bool = False, noise_given: bool = False) -> Decoded:
    """A read raw as the model's input (`white_balance` "camera", "estimate", "off" or None, the model's own
    contract; `linear` and `noise_given` as in `process_files`: what the warnings need to know)."""
    if white_balance is not None and white_balance not in WHITE_BALANCE_SOURCES:
        raise DeepISPError(f"unknown white balance mode {white_balance!r}: use one of {', '.join(WHITE_BALANCE_SOURCES)}")
    mosaic, conditioning = model_input(raw, model.cfg, white_balance)
    warnings = file_warnings(model, raw, conditioning, linear)
    if model.cfg.noise_input and raw.noise_profile is None and not noise_given:
        estimated = estimate_noise_profile(raw.mosaic)
        if estimated is not None:
            raw = replace(raw, noise_profile=estimated)
            warnings.append(
                f"the file has no NoiseProfile: noise estimated from the image (S={estimated[0]:.3g}, O={estimated[1]:.3g}); --noise-profile S O sets it"
            )
    return Decoded(raw, torch.from_numpy(mosaic), conditioning, tuple(warnings))


def noise_level_warning(model: DeepISP | ExportedModel, file_profile: tuple[float, float] | None, given: tuple[float, float] | None = None) -> str | None:
    """What a user should know about the noise level a noise-aware model runs at, or None:
    - exported graphs (one level baked in): the file's NoiseProfile is another level (read sigma or sqrt shot
      gain off by more than NOISE_LEVEL_TOLERANCE), or it has none; they run anyway, a phone exports one set
      per ISO band;
    - a PyTorch model: the level it is told (`given`, else the file's) is beyond what it was trained on
      (deepisp.data.photos' JDD noise range), where its learned response is extrapolated."""
    if isinstance(model, ExportedModel):
        baked = model.metadata.noise_profile
        if baked is None:
            return None
        if file_profile is None:
            return f"the file has no NoiseProfile; these graphs assume the level they were exported at (S={baked[0]:.3g}, O={baked[1]:.3g})"
        # compare the network's own inputs, (read sigma, sqrt(S))
        file_level, baked_level = profile_levels(file_profile)[0].tolist(), profile_levels(baked)[0].tolist()
        if all(abs(f - b) <= max(NOISE_LEVEL_TOLERANCE * max(f, b), NOISE_LEVEL_FLOOR) for f, b in zip(file_level, baked_level)):
            return None
        return (
            f"the file's NoiseProfile (S={file_profile[0]:.3g}, O={file_profile[1]:.3g}) is not the level these graphs were exported at "
            f"(S={baked[0]:.3g}, O={baked[1]:.3g}); for this ISO, export again with --noise-profile {file_profile[0]:.3g} {file_profile[1]:.3g}"
        )
    level = given or file_profile
    if not model.cfg.noise_input or level is None:
        return None
    shot, read_var = level
    if read_var**0.5 <= JDD_MAX_SIGMA / 255 and shot <= JDD_SHOT_RANGE[1]:
        return None
    return (
        f"noise level S={shot:.3g}, O={read_var:.3g} is beyond the training range (read sigma <= {JDD_MAX_SIGMA:g}/255, i.e. O <= "
        f"{(JDD_MAX_SIGMA / 255) ** 2:.2g}; S <= {JDD_SHOT_RANGE[1]:g}): the model extrapolates, expect residual noise or smoothing"
    )


def infer(
    model: DeepISP | ExportedModel,
    raw: RawMosaic,
    mosaic: torch.Tensor,
    tile: int | None = None,
    progress: bool = False,
    noise_profile: tuple[float, float] | None = None,
    linear: bool = False,
) -> np.ndarray:
    """A decoded mosaic through the model (PyTorch, or exported graphs with their own tile plan): [H,W,3]
    float in [0,1], display orientation, display-referred. `noise_profile` (S, O): the noise a noise-aware model
    is told, instead of the file's NoiseProfile. JDD output is finished with the file's white balance and
    colour matrix (`linear`: left in the sensor's colours), then the sRGB curve."""
    if isinstance(model, ExportedModel):
        out = model.run(mosaic, progress=progress)
    else:
        out = run_tiled(at_noise_level(model, noise_profile or raw.noise_profile), mosaic, tile=tile, progress=progress)
    if model.cfg.mode == Mode.JDD:
        out = linear_to_srgb(out.clamp(0, 1) if linear else render_linear(out, file_white_balance(raw)[0], raw.camera_matrix))
    img = out.clamp(0, 1).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(raw.to_display(img))


def file_warnings(model: DeepISP | ExportedModel, raw: RawMosaic, conditioning: Conditioning | None, linear: bool) -> list[str]:
    """What the user should know about how one file was developed: the conditioning's warnings (full models),
    and for a finished JDD rendering a file without white balance or colour matrix."""
    if conditioning is not None:
        return list(conditioning.warnings)
    if model.cfg.mode != Mode.JDD or linear:
        return []
    warnings = []
    if raw.camera_wb is None:
        warnings.append("the file has no as-shot white balance: estimated from the image (shades of grey); --linear writes the sensor's colours")
    if raw.camera_matrix is None:
        warnings.append("the file has no colour matrix: rendered with the reference (S7) sensor's; colours may be off")
    return warnings


def process_files(
    model: DeepISP | ExportedModel,
    jobs: Sequence[tuple[Path, Path]],
    tile: int | None = None,
    bits: int | None = None,
    progress: bool = True,
    white_balance: str | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
    noise_profile: tuple[float, float] | None = None,
    linear: bool = False,
    model_files: Sequence[Path] = (),
) -> Iterator[dict]:
    """Process (raw, output) pairs, decoding file i+1 and encoding file i-1 while file i is in the network.
    Yields one record per file once its output is written, in input order: input, output, height, width,
    bits, seconds (decode-wait + inference for that file), `conditioning` (full models: the exposure gain,
    white balance and colour source used, `Conditioning.record`), and `warnings`, a list of lines for the user
    (`file_warnings`, `noise_level_warning`), when there are any.
    The first error (bad raw, failed write) is raised when its file's turn comes, after every earlier file is
    written; later files are not written. Outputs that would overwrite an input or each other, and
    unwritable ones, are refused before any processing; `model_files` (the checkpoint, or the sidecar and its
    graphs) are inputs too.
    `noise_profile` (S, O): every file's noise for a noise-aware model, instead of its own NoiseProfile."""
    check_noise_profile(model, noise_profile)
    inputs, outputs = {raw.resolve() for raw, _ in jobs}, set()
    models = {Path(f).resolve() for f in model_files}
    for _, out in jobs:
        if out.resolve() in inputs | models:
            kind = "the model" if out.resolve() in models else "an input file"
            raise DeepISPError(f"output {out} is {kind}: deepisp never writes over an input; pass -o with another name")
        if out.resolve() in outputs:
            raise DeepISPError(f"two inputs would both write {out}: rename one of them or process them into different folders")
        outputs.add(out.resolve())
    bits_of = [check_output_path(out, bits) for _, out in jobs]

    def report(written: tuple[Future, dict] | None) -> Iterator[dict]:
        if written is not None:
            written[0].result()
            yield written[1]

    with ThreadPoolExecutor(1, thread_name_prefix="decode") as reader, ThreadPoolExecutor(1, thread_name_prefix="encode") as writer:
        read = partial(decode, model, white_balance=white_balance, max_megapixels=max_megapixels, linear=linear, noise_given=noise_profile is not None)
        pending = reader.submit(read, jobs[0][0]) if jobs else None
        written = None
        try:
            for i, (raw_path, out_path) in enumerate(jobs):
                t0 = time.perf_counter()
                try:
                    raw, mosaic, conditioning, file_notes = pending.result()
                    pending = reader.submit(read, jobs[i + 1][0]) if i + 1 < len(jobs) else None
                    img = infer(model, raw, mosaic, tile=tile, progress=progress, noise_profile=noise_profile, linear=linear)
                except BaseException:
                    yield from report(written)  # the file before the failing one is still written and reported
                    raise
                record = {"input": str(raw_path), "output": str(out_path), "height": img.shape[0], "width": img.shape[1], "bits": bits_of[i]}
                if conditioning is not None:
                    record["conditioning"] = conditioning.record()
                warnings = list(file_notes)
                noise_warning = noise_level_warning(model, raw.noise_profile, noise_profile)
                warnings += [noise_warning] if noise_warning else []
                if warnings:
                    record["warnings"] = warnings
                record["seconds"] = time.perf_counter() - t0
                yield from report(written)
                written = (writer.submit(save_image, img, out_path, bits_of[i], raw.shot), record)
            yield from report(written)
        finally:
            if pending is not None:
                pending.cancel()


def process_file(
    model: DeepISP | ExportedModel,
    raw_path: Path,
    out_path: Path,
    tile: int | None = None,
    bits: int | None = None,
    progress: bool = True,
    white_balance: str | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
    noise_profile: tuple[float, float] | None = None,
    linear: bool = False,
) -> dict:
    """Process one raw file; returns timings and sizes for the caller to report."""
    (record,) = process_files(model, [(raw_path, out_path)], tile, bits, progress, white_balance, max_megapixels, noise_profile, linear)
    return record
