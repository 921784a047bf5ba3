"""The input contract of full models, torch-free: what a model gets before pass 1, with every constant, and
the one white-balance rule. deepisp.conditioning applies it (to raw files, and to training's simulated raws);
`describe` states it in every export's metadata (the sidecar's `input` entry), so an app applies the same.

The white-balance rule: a model takes what it was trained with (ModelConfig.white_balance). An "as_shot"
model gets the mosaic balanced with the file's as-shot white balance (estimated when the file has none); an
"estimate" model, the paper's metadata-free network, gets the mosaic as is, on every runner (`deepisp
process`, eval, the benchmarks, the export's calibration and gate, the exported graphs). `deepisp process
--white-balance` overrides it for one run; nothing else does.
"""

from __future__ import annotations

from deepisp.model.config import ModelConfig
from deepisp.options import Exposure, Mode, WhiteBalanceSource
from deepisp.reference_camera import AUTO_EXPOSURE_PERCENTILE, AUTO_EXPOSURE_TARGET, M_CAM_FROM_SRGB, SHORT_EXPOSURE_RATIO
from deepisp.white_balance import REFERENCE_WB

# Metering: the raw's 99th percentile is brought to the level the models were trained at (0.2 of full scale).
METER_PERCENTILE = AUTO_EXPOSURE_PERCENTILE
METER_TARGET = AUTO_EXPOSURE_TARGET * SHORT_EXPOSURE_RATIO
# Gain limits: 16x brightens a 1/64 exposure to the trained level; below 1/16 the noise is beyond training
# anyway. The lower limit only matters for frames clipped over more than 1% (gain 0.2).
METER_GAIN_RANGE = (METER_TARGET, 16.0)
# Quads per axis skipped when metering: the percentile of every 4th quad row/column (all four sites of
# each quad, so the colour mix is kept) is within noise of the whole frame's, at 1/16 of the sort.
METER_STRIDE = 4
# Metered input never exceeds this fraction of the neutral ceiling (the brightest neutral the sensor records):
# 1.75x the metered 99th percentile. The colour transform is a global quadratic, fitted by training to inputs
# up to about this level (1/4-exposure training raws pass it at 0.006% of sites); far above it, its curve folds
# over (a lamp brightened by metering rendered cyan, a clipped highlight black), so brighter sites are clipped
# here, to the neutral ceiling's colour when clipped in every channel.
HEADROOM = 0.35
# A reference matrix within this of the identity is skipped (the S7 itself: its DNG stores the matrix as
# rationals, so it comes back within ~1e-4).
IDENTITY_TOLERANCE = 1e-3
# Shades-of-grey white-balance estimate: the norm, the level above which a quad is left out, and the quads
# averaged per side first (noise would otherwise weigh in the high norm). Chosen on the held-out photos as raws
# (mean angular error at 1/16 / 1 / 1 with 5% clipped of the automatic exposure: 1.86 / 1.87 / 4.8 degrees,
# against 2.45 / 2.15 / 6.2 for p = 6, 0.9 and no averaging).
WB_ESTIMATE_NORM = 8
WB_ESTIMATE_CEILING = 0.95
WB_ESTIMATE_POOL = 2


def contract_white_balance(cfg: ModelConfig) -> str:
    """The `prepare` white-balance mode a full model was trained with: "camera" (as_shot) or "off" (estimate)."""
    return WhiteBalanceSource.CAMERA.value if cfg.balanced_input else WhiteBalanceSource.OFF.value


def describe(cfg: ModelConfig) -> dict:
    """What an app does to the normalised mosaic before pass 1 of this model's exported graphs (`model_input`
    with the model's own white-balance contract), with every constant: the exported metadata's `input` entry."""
    if cfg.mode == Mode.JDD:
        return {"steps": ["none: the normalised mosaic as is (a companded model's square-rooted, see graphs.tile)"]}
    metering = (
        "4 exposure (model_config.exposure 'metered'): gain = clip(meter_target / p, meter_gain_range) with p the "
        "meter_percentile-th percentile of the *raw* normalised mosaic over every meter_stride-th quad (row and column); "
        "every site times gain, then clipped to [0, ceiling[c] * min(gain, 1 / max(ceiling), headroom)] ('as_is': gain 1, "
        "no headroom)"
    )
    constants = {
        "exposure": cfg.exposure,
        "meter_percentile": METER_PERCENTILE,
        "meter_target": METER_TARGET,
        "meter_gain_range": list(METER_GAIN_RANGE),
        "meter_stride": METER_STRIDE,
        "headroom": HEADROOM if cfg.exposure == Exposure.METERED and cfg.balanced_input else None,
    }
    if not cfg.balanced_input:
        return {
            "steps": [
                "the metadata-free network: no white balance, highlight clip or colour map; "
                + metering.replace("ceiling[c] * min(gain, 1 / max(ceiling), headroom)", "1")
            ],
            **constants,
        }
    return {
        "steps": [
            "1 white balance: each site times gains = camera_wb / reference_wb divided by the largest gain; camera_wb = the file's "
            "as-shot R,G,B multipliers with G = 1 (1/AsShotNeutral), or when the file has none the shades-of-grey estimate: "
            "(mean_G / mean_R, 1, mean_G / mean_B) with mean_c the wb_estimate_norm Minkowski mean of channel c (G: the two "
            "greens' average) over blocks of wb_estimate_pool x wb_estimate_pool 2x2 quads averaged, leaving out blocks whose "
            "average reaches wb_estimate_ceiling in any site",
            "2 highlights: each site clipped at ceiling[c] = min(camera_wb) * gains[c] / camera_wb[c]",
            "3 camera colour: unless within identity_tolerance of the identity, M = diag(1/reference_wb) @ reference_cam_from_srgb "
            "@ inv(camera_cam_from_srgb) @ diag(reference_wb) applied per pixel to the bilinear demosaic (reflection padding), "
            "sampled again on RGGB; camera_cam_from_srgb = inv(the camera's sRGB-from-camera matrix), rows summing to 1 "
            "(LibRaw's rgb_cam), the reference's when the camera has none",
            metering,
        ],
        **constants,
        "reference_wb": list(REFERENCE_WB),
        "reference_cam_from_srgb": M_CAM_FROM_SRGB.tolist(),
        "identity_tolerance": IDENTITY_TOLERANCE,
        "wb_estimate_norm": WB_ESTIMATE_NORM,
        "wb_estimate_ceiling": WB_ESTIMATE_CEILING,
        "wb_estimate_pool": WB_ESTIMATE_POOL,
    }
