"""What a full model's input is made from a raw file of any camera and exposure: the steps before pass 1.

A full model was trained on one kind of mosaic: the simulated Samsung S7 sensor at 1/4 of its automatic
exposure, balanced to the S7 reference (deepisp.white_balance). A raw from another camera or exposure is
brought there, in this order, every step on the canonical RGGB mosaic ([H,W] float32, [0,1] of full scale):

1. White balance: each site times camera_wb / REFERENCE_WB, normalised so the largest gain is 1
   (`deepisp.white_balance.balance`). camera_wb is the file's as-shot balance (AsShotNeutral, LibRaw's camera
   multipliers) or, for a file without one, `estimate_white_balance`.
2. Highlights: a site at the sensor's white level carries no colour, so every site is clipped at the
   *neutral ceiling*: the level where the first channel of a neutral surface saturates, per site
   `min(camera_wb) / (REFERENCE_WB[c] * max gain)`. A sensor site clipped in any channel then renders grey
   or white, never cyan or magenta (LibRaw's default highlight mode, "clip", does the same).
3. Camera colour: the balanced camera RGB of this camera is mapped into the reference (S7) camera's by the
   3x3 `reference_matrix` of the file's colour matrix (LibRaw's, from a DNG's ColorMatrix or its own
   per-camera table; both cameras' matrices row-normalised to white = (1,1,1) as dcraw does). A 3x3 mix
   needs all three colours at a site, so the mosaic is demosaiced bilinearly, mixed and sampled again on the RGGB grid (`remosaic`): the
   model's own first step, so nothing but colour changes at flat colours; the mix of a site's own value with
   its interpolated neighbours costs a little sharpness at colour edges, in proportion to the matrix's
   off-diagonal terms (0 for the S7, at most ~0.35 for the cameras of benchmarks/robustness.py).
4. Exposure (`exposure: metered` models): the whole mosaic times `metering_gain` of the *raw* mosaic (its
   99th percentile brought to METER_TARGET, the level of the trained 1/4 exposure: the synthetic camera's
   auto exposure puts it at 0.8, its short exposure at a quarter of that), then clipped to the neutral
   ceiling again, scaled by the gain but at most HEADROOM of it (and at most full scale): the global
   quadratic colour transform is fitted to inputs up to about that level and folds over far above it, so a
   bright lamp in a brightened dark frame stays white instead of turning cyan or black.

`prepare` does all of it for a RawMosaic and a model config and says what it did (`Conditioning`, warnings
for a file without white balance or colour matrix); `condition` is the same on bare arrays, and it is what
training (deepisp.data.photos) applies to its simulated raws, so training and every runner see one input.
`prepare_mosaic` is `prepare` on a mosaic and its file's `FrameFacts`: a pre-decoded frame, or a window of one
conditioned exactly as the whole frame would be (deepisp.data.cache's training crops).
An app does the same before pass 1 of the exported graphs: the sidecar's `input` entry states it.
The contract itself (its constants, the white-balance rule, `describe`) is deepisp.input_contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from deepisp.cfa import rggb_masks
from deepisp.demosaic import bilinear_demosaic_packed
from deepisp.input_contract import (
    HEADROOM,
    IDENTITY_TOLERANCE,
    METER_GAIN_RANGE,
    METER_PERCENTILE,
    METER_STRIDE,
    METER_TARGET,
    WB_ESTIMATE_CEILING,
    WB_ESTIMATE_NORM,
    WB_ESTIMATE_POOL,
    contract_white_balance,
)
from deepisp.model.config import ModelConfig
from deepisp.options import EXPOSURES, WHITE_BALANCE_SOURCES, Exposure, Mode
from deepisp.raw import RawMosaic
from deepisp.reference_camera import M_CAM_FROM_SRGB
from deepisp.white_balance import REFERENCE_WB, balance, balance_gains, per_site


def metering_gain(mosaic: np.ndarray, stride: int = METER_STRIDE) -> float:
    """The exposure gain that brings the mosaic's METER_PERCENTILE to METER_TARGET, within METER_GAIN_RANGE.

    Args:
        mosaic: [H,W] raw RGGB mosaic, [0,1] of full scale, before white balance (an odd last row or column
            is not metered).
        stride: every stride-th 2x2 quad along each axis is metered.
    """
    h, w = mosaic.shape[0] // 2 * 2, mosaic.shape[1] // 2 * 2
    quads = mosaic[:h, :w].reshape(h // 2, 2, w // 2, 2)[::stride, :, ::stride]
    level = float(np.percentile(quads, METER_PERCENTILE))
    low, high = METER_GAIN_RANGE
    return high if level <= METER_TARGET / high else float(np.clip(METER_TARGET / level, low, high))


def neutral_ceiling(camera_wb: Sequence[float]) -> np.ndarray:
    """(3,) per-channel clip levels of a mosaic balanced with `camera_wb` (see the module doc, step 2): a
    neutral colour in the model's input space, as bright as a neutral can be before any channel clips."""
    wb = np.asarray(camera_wb, dtype=np.float64)
    gains = balance_gains(camera_wb)
    return wb.min() * gains / wb  # = min(wb) / (REFERENCE_WB * max(wb / REFERENCE_WB))


def reference_matrix(camera_matrix: np.ndarray | None) -> np.ndarray:
    """[3,3] map from a camera's balanced mosaic (step 1) to the reference camera's: identity when the file
    has no colour matrix (the camera is then taken to respond like the reference).

    `camera_matrix` is the camera's camera-from-linear-sRGB matrix, rows normalised (RawMosaic.camera_matrix).
    A balanced camera sees linear sRGB x as M x / REFERENCE_WB, the reference as M_ref x / REFERENCE_WB.
    """
    if camera_matrix is None:
        return np.eye(3)
    ref = np.diag(1.0 / np.asarray(REFERENCE_WB))
    return ref @ M_CAM_FROM_SRGB @ np.linalg.inv(np.asarray(camera_matrix, dtype=np.float64)) @ np.linalg.inv(ref)


def remosaic(mosaic: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[H,W] RGGB mosaic (H, W even) -> bilinear demosaic, `matrix` [3,3] applied per pixel, sampled on RGGB
    again. Computed at half resolution: each site of a 2x2 quad needs only its own colour of the mix, a 1x1
    conv over the packed bilinear image (12 channels c*4 + site -> 4 sites), so no full-size RGB image is
    made (12 MP: 0.5 s instead of 1.7)."""
    packed = bilinear_demosaic_packed(torch.from_numpy(np.ascontiguousarray(mosaic, dtype=np.float32))[None, None])
    site_colour = rggb_masks(2, 2)[0].reshape(3, 4).argmax(dim=0)  # the colour each quad site (dy*2 + dx) measures
    weight = torch.zeros(4, 12, 1, 1)
    for site, colour in enumerate(site_colour.tolist()):
        weight[site, [c * 4 + site for c in range(3)], 0, 0] = torch.from_numpy(matrix[colour]).float()
    return F.pixel_shuffle(F.conv2d(packed, weight), 2)[0, 0].numpy()


def estimate_white_balance(mosaic: np.ndarray) -> tuple[float, float, float]:
    """White balance (R, G, B) multipliers, G = 1, from the mosaic alone: shades of grey (Finlayson and
    Trezzi 2004: the Minkowski p = WB_ESTIMATE_NORM mean of each channel) over blocks of WB_ESTIMATE_POOL^2
    2x2 quads averaged, leaving out blocks whose average reaches WB_ESTIMATE_CEILING in any channel, so
    near-clipped highlights (whose colour is not measured) count in no channel. The raw must be in a camera space whose
    white reads (1,1,1) when balanced, as LibRaw's are.

    Args:
        mosaic: [H,W] canonical RGGB mosaic, [0,1] of full scale (rows/columns past whole blocks are ignored).
    """
    k = WB_ESTIMATE_POOL
    h, w = mosaic.shape[0] // (2 * k) * 2 * k, mosaic.shape[1] // (2 * k) * 2 * k
    blocks = mosaic[:h, :w].reshape(h // (2 * k), k, 2, w // (2 * k), k, 2).astype(np.float64)
    quads = blocks.mean(axis=(1, 4))
    valid = quads.max(axis=(1, 3)) < WB_ESTIMATE_CEILING
    planes = (quads[:, 0, :, 0], (quads[:, 0, :, 1] + quads[:, 1, :, 0]) / 2, quads[:, 1, :, 1])
    means = [float(np.mean(np.maximum(plane[valid], 0.0) ** WB_ESTIMATE_NORM) ** (1 / WB_ESTIMATE_NORM)) if valid.any() else 0.0 for plane in planes]
    if min(means) <= 0:
        return (1.0, 1.0, 1.0)
    return (means[1] / means[0], 1.0, means[1] / means[2])


def condition(
    mosaic: np.ndarray,
    camera_wb: Sequence[float],
    matrix: np.ndarray | None = None,
    gain: float = 1.0,
    headroom: float | None = None,
) -> np.ndarray:
    """Steps 1-4 of the module doc on a canonical RGGB mosaic [H,W] (H, W even) in [0,1]: balanced with
    `camera_wb`, clipped to the neutral ceiling, mapped by the reference `matrix` (None or near-identity:
    skipped), times `gain`, clipped to the scaled ceiling: at most 1, and at most `headroom` times the
    neutral ceiling (metered models: HEADROOM). Returns [H,W] float32."""
    ceiling = neutral_ceiling(camera_wb)
    out = per_site(balance(mosaic, camera_wb), ceiling, np.minimum)
    if matrix is not None and np.abs(matrix - np.eye(3)).max() > IDENTITY_TOLERANCE:
        out = remosaic(out, matrix)
    top = ceiling * min(gain, 1.0 / ceiling.max(), headroom or np.inf)
    return per_site(np.maximum(out * np.float32(gain), 0.0), top, np.minimum)


@dataclass(frozen=True)
class Conditioning:
    """What `prepare` did to one raw: the exposure gain, the white balance and where it came from
    ("as_shot", "estimated" or "off"), where the colour map came from ("file", "reference": no colour matrix
    in the file, or "off"), and warnings for the user."""

    gain: float
    camera_wb: tuple[float, float, float]
    white_balance: str
    color: str
    warnings: tuple[str, ...] = field(default=())

    def record(self) -> dict:
        """A JSON-able summary for `deepisp process` records."""
        return {
            "exposure_gain": round(self.gain, 4),
            "white_balance": self.white_balance,
            "camera_wb": [round(v, 4) for v in self.camera_wb],
            "color": self.color,
        }


@dataclass(frozen=True)
class FrameFacts:
    """What conditioning takes of a raw besides the pixels it conditions: the file's white balance and colour
    matrix (RawMosaic's) and two statistics of the whole frame, its `metering_gain` and
    `estimate_white_balance`. A statistic left None is measured on the mosaic being conditioned, which must
    then be the whole frame; with both given, a window of the frame is conditioned as the frame's own pixels
    are (deepisp.data.cache keeps them beside each pre-decoded frame)."""

    camera_wb: tuple[float, float, float] | None
    camera_matrix: tuple[tuple[float, float, float], ...] | None
    gain: float | None = None
    estimated_wb: tuple[float, float, float] | None = None

    @classmethod
    def of(cls, raw: RawMosaic, measured: bool = False) -> FrameFacts:
        """A raw file's facts; `measured`: with the whole-frame statistics taken now (else left None)."""
        if not measured:
            return cls(raw.camera_wb, raw.camera_matrix)
        return cls(raw.camera_wb, raw.camera_matrix, metering_gain(raw.mosaic), estimate_white_balance(raw.mosaic))


def model_input(raw: RawMosaic, cfg: ModelConfig, white_balance: str | None = None) -> tuple[np.ndarray, Conditioning | None]:
    """The mosaic a model takes for a raw file, the same for every runner (`deepisp process`, eval, training
    on S7 folders, the benchmarks, the export's calibration and accuracy check): `prepare`d for full models,
    by default (`white_balance` None) as the model was trained: "camera" for as_shot models, "off" for the
    paper's metadata-free "estimate" models; the normalised mosaic as is for jdd models (their output is
    finished afterwards, `render_linear`). Returns (mosaic, what was done or None)."""
    return model_input_mosaic(raw.mosaic, FrameFacts.of(raw), cfg, white_balance)


def model_input_mosaic(mosaic: np.ndarray, facts: FrameFacts, cfg: ModelConfig, white_balance: str | None = None) -> tuple[np.ndarray, Conditioning | None]:
    """`model_input` on bare arrays: a whole frame, or a window of one (see `prepare_mosaic`)."""
    if cfg.mode == Mode.JDD:
        return mosaic, None
    return prepare_mosaic(mosaic, facts, cfg.exposure, white_balance or contract_white_balance(cfg))


def prepare(raw: RawMosaic, exposure: str = "as_is", white_balance: str = "camera") -> tuple[np.ndarray, Conditioning]:
    """A full model's input from a raw file (steps 1-4 of the module doc).

    Args:
        raw: the file, read by deepisp.raw.read_raw.
        exposure: the model's ModelConfig.exposure: "metered" applies `metering_gain`, "as_is" feeds the
            exposure as shot (models trained on the 1/4 exposure alone).
        white_balance: "camera" (the file's as-shot balance; estimated, with a warning, when it has none),
            "estimate" (always estimated) or "off" (the mosaic as is: no balance, no colour map, no
            highlight clip; the paper's metadata-free network takes this).
    Returns:
        ([H,W] float32 canonical RGGB mosaic, what was done).
    """
    return prepare_mosaic(raw.mosaic, FrameFacts.of(raw), exposure, white_balance)


def prepare_mosaic(mosaic: np.ndarray, facts: FrameFacts, exposure: str = "as_is", white_balance: str = "camera") -> tuple[np.ndarray, Conditioning]:
    """`prepare` on bare arrays: `mosaic` [H,W] (H, W even) is a whole frame or a window of one at even
    offsets, `facts` its frame's (with the whole-frame statistics for a window). Every step but the colour
    map is per site; the colour map's bilinear neighbours reach 1 px, so a window padded by 2 px of its frame
    (where the frame has them) and trimmed afterwards equals the same pixels of the conditioned frame."""
    if exposure not in EXPOSURES:
        raise ValueError(f"exposure must be one of {EXPOSURES}, got {exposure!r}")
    if white_balance not in WHITE_BALANCE_SOURCES:
        raise ValueError(f"white_balance must be one of {WHITE_BALANCE_SOURCES}, got {white_balance!r}")
    gain = (metering_gain(mosaic) if facts.gain is None else facts.gain) if exposure == Exposure.METERED else 1.0
    if white_balance == "off":
        out = np.clip(mosaic * np.float32(gain), 0.0, 1.0) if gain != 1.0 else mosaic
        return out, Conditioning(gain, (1.0, 1.0, 1.0), "off", "off")
    warnings = []
    wb, wb_source = _white_balance(mosaic, facts, white_balance)
    if wb_source == "estimated" and white_balance == "camera":
        warnings.append("the file has no as-shot white balance: estimated from the image (shades of grey); pass --white-balance off to see the raw colours")
    if facts.camera_matrix is None:
        warnings.append("the file has no colour matrix: the camera is assumed to respond like the reference (S7) sensor; colours may be off")
    out = condition(mosaic, wb, reference_matrix(facts.camera_matrix), gain, HEADROOM if exposure == Exposure.METERED else None)
    color = "file" if facts.camera_matrix is not None else "reference"
    return out, Conditioning(gain, tuple(float(v) for v in wb), wb_source, color, tuple(warnings))


def file_white_balance(raw: RawMosaic, source: str = "camera") -> tuple[tuple[float, float, float], str]:
    """The white balance a raw is developed with, and where it came from: the file's as-shot balance
    ("as_shot") when `source` is "camera" and the file has one, else `estimate_white_balance` ("estimated")."""
    return _white_balance(raw.mosaic, FrameFacts.of(raw), source)


def _white_balance(mosaic: np.ndarray, facts: FrameFacts, source: str) -> tuple[tuple[float, float, float], str]:
    if source == "camera" and facts.camera_wb is not None:
        return facts.camera_wb, "as_shot"
    return (estimate_white_balance(mosaic) if facts.estimated_wb is None else facts.estimated_wb), "estimated"


def render_linear(rgb: torch.Tensor, camera_wb: Sequence[float], camera_matrix: np.ndarray | None) -> torch.Tensor:
    """A JDD model's output (linear camera RGB of the file's sensor, [3,H,W]) as a finished linear sRGB image:
    balanced with `camera_wb`, clipped where a neutral first saturates (highlights stay neutral), mapped to
    linear sRGB by the camera's matrix (the reference camera's when None), clipped to [0,1]. The sRGB curve is
    the caller's."""
    wb = torch.tensor(camera_wb, dtype=rgb.dtype).view(3, 1, 1)
    balanced = torch.minimum(rgb * wb, wb.min())
    srgb_from_cam = np.linalg.inv(M_CAM_FROM_SRGB if camera_matrix is None else np.asarray(camera_matrix, dtype=np.float64))
    return torch.einsum("ij,jhw->ihw", torch.from_numpy(srgb_from_cam).to(rgb.dtype), balanced).clamp(0, 1)
