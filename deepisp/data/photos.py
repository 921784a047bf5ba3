"""Training pairs drawn on the fly from folders of sRGB photographs: every crop is a fresh draw.

`deepisp make-synthetic` writes a fixed set of S7-layout DNGs, so a run sees one white balance and one noise
field per photo. Here the same forward models run per crop, in memory, so a run of N steps sees N x batch
different mosaics, noise fields and (full ISP) white balances and exposures of the same photographs:

    jdd   target: the photo crop in linear RGB (inverse sRGB curve), taken as linear camera RGB, as in
          benchmarks/quality.py's JDD protocol; half the crops scaled by a gain in [0.25, 1] (raw frames are
          darker than photos). Input: the target sampled on the RGGB grid, plus noise of variance
          a*x + b: b = (sigma/255)^2 with sigma ~ U(0, JDD_MAX_SIGMA), and for half the crops shot noise a ~
          logU(JDD_SHOT_RANGE) (heteroscedastic, like a real sensor), none for the other half (the
          Gaussian-only protocol of MSR and quality.py); a share `clean_share` (default JDD_CLEAN_FRACTION) of
          the crops gets no noise at all (sigma = 0 is a test condition); 16-bit quantised, clipped to [0,1], demosaiced bilinearly.
    full  exactly make-synthetic's low-light pair (deepisp.data.synthetic): S7 colour matrix, a drawn white
          balance, auto exposure from the whole photo, 1/4 exposure, shot + read noise, 10-bit DN,
          normalised as deepisp.raw does (`balanced`: then balanced with the drawn white balance, which is
          what the DNG's AsShotNeutral carries: the input of "as_shot" models); target: the sRGB photo crop.
          `exposure="metered"` (balanced only): the exposure is drawn instead (EXPOSURE_SHARES: the 1/4 of
          the paper, log-uniform 1/16..1 of the automatic exposure, or over-exposed 1..4x with clipped
          highlights), and the raw is brought back to the trained level as every runner does it
          (deepisp.conditioning.condition with the whole photo's metering gain, highlights clipped neutral);
          a share WB_ESTIMATE_SHARE is balanced with the white balance estimated from the whole photo.

Flips and transposes are applied to the photo before it is mosaiced, so the CFA phase of every input is
the true RGGB phase; so is the colour augmentation (`color_augment`, `augment_colors`): with probability
COLOR_AUGMENT_SHARE each, the crop's saturation scaled by s ~ U(COLOR_SATURATION_RANGE) around each pixel's
mean in sRGB, and its R, G, B channels permuted at random. It gives the model colours and colour edges its
photos have few of (a JDD model otherwise learns its training photos' colour statistics). With `smooth_fields`
(jdd), that share of the crops is replaced by a smooth colour field (`smooth_field`): four random corner colours
interpolated bilinearly in linear RGB, which the bilinear demosaic of its clean mosaic reproduces exactly, so
the right residual there is zero whatever the colour. Models trained on photos alone shift flat colours and
print a CFA-periodic pattern on smooth saturated areas (a flat field of (0.35, 0.1, 0.03) came out at 51 dB,
saturated ones at 38-45 dB): photos have too few such areas to pin that down. Measured and not shipped (the
shipped models' cards): with the per-crop loss (deepisp.losses, "log-l2+srgb") a share of 0.1-0.15 raised 27
flat fields' PSNR by 3-4 dB and cost the validation photos 0.08-0.19 dB at sigma = 0.

Samples: input [3,c,c] bilinear-demosaiced linear RGB in [0,1]; target [3,c,c] (jdd: linear RGB; full:
sRGB-encoded), float32, the interface of S7Dataset and MSRDataset
(len, [i] full frame, crop_pair(i, rng)). With `noise_levels` (jdd; for noise-aware models) every sample
carries a third tensor, the noise it was drawn with: [2] = (sqrt(b), sqrt(a)), deepisp.model's noise input.
The draws are the same with or without it.

Validation photos are held out of the same folders (`holdout`), never drawn for training.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deepisp.cfa import mosaic
from deepisp.color import srgb_to_linear
from deepisp.conditioning import condition, estimate_white_balance, metering_gain
from deepisp.data.synthetic import (
    SHORT_EXPOSURE_RATIO,
    auto_exposure_gain,
    camera_mosaic,
    dn_to_normalised,
    draw_scene_params,
    expose,
    find_photos,
    load_photo,
)
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.input_contract import HEADROOM
from deepisp.options import EXPOSURES, MODES, Exposure, Mode
from deepisp.white_balance import balance

# Share of the photos held out for validation (fixed-seed choice), and its seed.
VAL_FRACTION = 0.08
HOLDOUT_SEED = 0
JDD_MAX_SIGMA = 12.0  # read-noise sigma on 0-255, covers MSR (~1-10) and quality.py's 0..10
JDD_SHOT_RANGE = (1e-5, 1e-3)  # a in var = a*x + b, log-uniform
JDD_GAIN_RANGE = (0.25, 1.0)
# Default share of JDD crops with no noise at all (`clean_share`, --clean-share): a blind denoiser that never sees a clean mosaic smooths one
# (the first phone-jdd, trained without, lost 0.9 dB to LibRaw DCB at sigma 0 while winning at 5 and 10).
JDD_CLEAN_FRACTION = 0.25
# Metered full models: the share of crops at the paper's 1/4 exposure, log-uniform over EXPOSURE_RANGE (of
# the automatic exposure), and over-exposed over OVEREXPOSURE_RANGE (highlights clip, in every channel or some).
EXPOSURE_SHARES = {"short": 0.3, "range": 0.55, "over": 0.15}
EXPOSURE_RANGE = (1 / 16, 1.0)
# Metered full models: the share of crops balanced with the white balance estimated from the whole photo
# (deepisp.conditioning.estimate_white_balance, what a file without one gets) instead of the true one, so the
# colour transform learns to take out what the estimate leaves.
WB_ESTIMATE_SHARE = 0.3
OVEREXPOSURE_RANGE = (1.0, 4.0)
# Colour augmentation (`color_augment`, jdd pairs): the share of crops given each of its two changes, and the
# saturation gain's range. Not tuned here: taken as first proposed (README, "Quality": where the proposal was
# measured, and on which sets).
COLOR_AUGMENT_SHARE = 0.5
COLOR_SATURATION_RANGE = (1.0, 2.0)
# The photo stride used to measure the auto exposure of a whole photo (even, so the CFA mix is kept).
EXPOSURE_STRIDE = 4
_SRGB_TO_LINEAR_LUT = srgb_to_linear(torch.arange(256, dtype=torch.float64) / 255.0).numpy().astype(np.float32)


def holdout(photos: Sequence[Path], split: str) -> list[Path]:
    """The photos of `split` ("train" or "val"): a fixed-seed VAL_FRACTION of the sorted list is validation."""
    if split not in ("train", "val"):
        raise DeepISPError(f"photo folders have train and val splits, not {split!r}")
    ordered = sorted(photos)
    n_val = max(1, round(len(ordered) * VAL_FRACTION)) if len(ordered) >= 2 else 0
    val = set(np.random.default_rng(HOLDOUT_SEED).permutation(len(ordered))[:n_val].tolist())
    return [p for k, p in enumerate(ordered) if (k in val) == (split == "val")]


def draw_exposure(rng: np.random.Generator) -> float:
    """An exposure, as a fraction of the automatic one, for a metered model's crop (EXPOSURE_SHARES)."""
    kind = rng.choice(list(EXPOSURE_SHARES), p=list(EXPOSURE_SHARES.values()))
    if kind == "short":
        return SHORT_EXPOSURE_RATIO
    low, high = EXPOSURE_RANGE if kind == "range" else OVEREXPOSURE_RANGE
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _augment(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and transpose of [H,W,3] (all 8 symmetries of the square)."""
    if rng.random() < 0.5:
        photo = photo[:, ::-1]
    if rng.random() < 0.5:
        photo = photo[::-1]
    if rng.random() < 0.5:
        photo = photo.transpose(1, 0, 2)
    return photo


def augment_colors(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[h,w,3] uint8 sRGB -> the same with, with probability COLOR_AUGMENT_SHARE each, its saturation scaled
    around each pixel's mean (clipped to [0,255], rounded) and its channels permuted. Pixels stay where they
    are: only colours change."""
    if rng.random() < COLOR_AUGMENT_SHARE:
        rgb = photo.astype(np.float32)
        mean = rgb.mean(axis=2, keepdims=True)
        photo = np.clip(np.rint(mean + (rgb - mean) * np.float32(rng.uniform(*COLOR_SATURATION_RANGE))), 0, 255).astype(np.uint8)
    if rng.random() < COLOR_AUGMENT_SHARE:
        photo = photo[:, :, rng.permutation(3)]
    return photo


def smooth_field(size: int, rng: np.random.Generator) -> np.ndarray:
    """A [size,size,3] float32 linear RGB field in [0,1]: four corner colours (uniform in sRGB, linearised)
    interpolated bilinearly. Bilinear in x and y per channel, so every bilinear demosaic stencil reproduces it
    from its mosaic away from the border."""
    corners = _SRGB_TO_LINEAR_LUT[rng.integers(0, 256, size=(2, 2, 3))].astype(np.float64)  # [y,x,rgb]
    t = (np.arange(size) / (size - 1))[:, None]
    top = corners[0, 0] * (1 - t) + corners[0, 1] * t  # [size(x),3]
    bottom = corners[1, 0] * (1 - t) + corners[1, 1] * t
    return (top[None] * (1 - t[:, :, None]) + bottom[None] * t[:, :, None]).astype(np.float32)


class PhotoDataset(torch.utils.data.Dataset):
    """Pairs simulated from photographs (module doc). Photos are held in memory as uint8 (~0.5 MB each)."""

    def __init__(
        self,
        folders: Sequence[str | Path],
        mode: str,
        split: str = "train",
        crop: int = 128,
        augment: bool = True,
        balanced: bool = False,
        noise_levels: bool = False,
        exposure: str = "as_is",
        color_augment: bool = False,
        smooth_fields: float = 0.0,
        clean_share: float = JDD_CLEAN_FRACTION,
    ):
        if mode not in MODES:
            raise DeepISPError(f"mode must be one of {MODES}, got {mode!r}")
        if balanced and mode != Mode.FULL:
            raise DeepISPError("only full-ISP pairs can be white-balanced")
        if noise_levels and mode != Mode.JDD:
            raise DeepISPError("only jdd pairs carry noise levels")
        if color_augment and mode != Mode.JDD:
            # A full pair's exposure, metering and white-balance estimate come from the whole photo, which the
            # crop's colour change would contradict.
            raise DeepISPError("--color-augment is for jdd presets: a full model's simulated exposure and white balance are measured on the whole photo")
        if not 0.0 <= smooth_fields <= 1.0 or (smooth_fields and mode != Mode.JDD):
            raise DeepISPError(f"--smooth-fields is a share in [0, 1] of jdd crops, got {smooth_fields} for {mode!r} pairs")
        if not 0.0 <= clean_share <= 1.0 or (clean_share != JDD_CLEAN_FRACTION and mode != Mode.JDD):
            raise DeepISPError(f"--clean-share is a share in [0, 1] of jdd crops, got {clean_share} for {mode!r} pairs")
        if exposure not in EXPOSURES or (exposure == Exposure.METERED and not balanced):
            raise DeepISPError(f"exposure {exposure!r}: 'metered' pairs are for white-balanced full models, else 'as_is'")
        self.mode, self.crop, self.augment, self.balanced, self.noise_levels = mode, crop, augment, balanced, noise_levels
        self.exposure, self.color_augment, self.smooth_fields = exposure, color_augment, smooth_fields
        self.clean_share = clean_share
        loaded = [(p, load_photo(p)) for p in holdout(find_photos(folders), split)]
        small = [p for p, img in loaded if min(img.shape[:2]) < crop]
        if small:
            warnings.warn(f"photos: skipping {len(small)} photo(s) smaller than the {crop}px crop, e.g. {small[0]}", stacklevel=2)
        loaded = [(p, img) for p, img in loaded if min(img.shape[:2]) >= crop]
        if not loaded:
            raise DeepISPError(
                f"the {split!r} split of the photo folders {', '.join(map(str, folders))} has no photo of at least {crop}px a side; "
                "add photos or use a smaller --crop"
            )
        self.paths = [p for p, _ in loaded]
        self.photos = [img for _, img in loaded]
        # Whole-photo linear RGB at a coarse stride: what auto exposure meters (full ISP).
        self._metering = [_SRGB_TO_LINEAR_LUT[img[::EXPOSURE_STRIDE, ::EXPOSURE_STRIDE]] for img in self.photos]

    def __len__(self) -> int:
        return len(self.photos)

    def name(self, i: int) -> str:
        return self.paths[i].stem

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        """Photo i's whole frame, one fixed draw (seeded by i): (input [3,H,W], target [3,H,W][, noise [2]])."""
        return self._simulate(i, self.photos[i], np.random.default_rng([HOLDOUT_SEED, i]))

    def crop_pair(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """A random `crop` x `crop` pair of photo i (the crop, its symmetries and the noise drawn from `rng`)."""
        photo, c = self.photos[i], self.crop
        if self.smooth_fields and rng.random() < self.smooth_fields:
            return self._jdd(smooth_field(c, rng), rng)
        h, w = photo.shape[:2]
        y = int(rng.integers(0, (h - c) // 2 + 1)) * 2
        x = int(rng.integers(0, (w - c) // 2 + 1)) * 2
        patch = photo[y : y + c, x : x + c]
        if self.augment:
            patch = _augment(patch, rng)
        if self.color_augment:
            patch = augment_colors(patch, rng)
        return self._simulate(i, patch, rng)

    def _simulate(self, i: int, photo: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        linear = _SRGB_TO_LINEAR_LUT[photo]  # [h,w,3] float32
        if self.mode == Mode.JDD:
            return self._jdd(linear, rng)
        params = draw_scene_params(rng)
        metered = camera_mosaic(self._metering[i], "RGGB", params["wb_gains"])
        gain = auto_exposure_gain(metered)
        ratio = draw_exposure(rng) if self.exposure == Exposure.METERED else SHORT_EXPOSURE_RATIO
        dn = expose(camera_mosaic(linear, "RGGB", params["wb_gains"]) * gain, ratio, params, rng)
        raw = dn_to_normalised(dn)
        if self.exposure == Exposure.METERED:
            whole = np.clip(metered * (gain * ratio), 0.0, 1.0)  # the whole photo as shot, for metering
            wb = estimate_white_balance(whole) if rng.random() < WB_ESTIMATE_SHARE else params["wb_gains"]
            raw = condition(raw, wb, None, metering_gain(whole, stride=1), HEADROOM)
        elif self.balanced:
            raw = balance(raw, params["wb_gains"])
        raw = torch.from_numpy(raw)[None, None]
        target = torch.from_numpy(np.array(photo, dtype=np.float32)).permute(2, 0, 1) / 255.0
        return bilinear_demosaic(raw)[0], target

    def _jdd(self, linear: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        target = torch.from_numpy(np.ascontiguousarray(linear)).permute(2, 0, 1)
        if rng.random() < 0.5:
            target = target * float(rng.uniform(*JDD_GAIN_RANGE))
        clean = mosaic(target[None])[0, 0].numpy().astype(np.float64)
        read_var = (rng.uniform(0.0, JDD_MAX_SIGMA) / 255.0) ** 2
        shot_a = float(np.exp(rng.uniform(*np.log(JDD_SHOT_RANGE)))) if rng.random() < 0.5 else 0.0
        if rng.random() < self.clean_share:
            read_var = shot_a = 0.0
        noisy = clean + np.sqrt(shot_a * clean + read_var) * rng.standard_normal(clean.shape)
        raw = np.round(np.clip(noisy, 0.0, 1.0) * 65535.0) / 65535.0
        rgb = bilinear_demosaic(torch.from_numpy(raw.astype(np.float32))[None, None])[0]
        if self.noise_levels:
            return rgb, target.float(), torch.tensor([np.sqrt(read_var), np.sqrt(shot_a)], dtype=torch.float32)
        return rgb, target.float()
