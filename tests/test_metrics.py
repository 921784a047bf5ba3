"""deepisp.metrics against hand-computed values and direct skimage calls."""

import math

import numpy as np
import pytest
import torch
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deepisp.color import linear_to_srgb
from deepisp.metrics import ciede2000, psnr, psnr_linear_and_srgb, ssim


def _images(seed: int = 0, shape=(3, 24, 32)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.05, 0.95, shape)
    pred = np.clip(target + rng.normal(0, 0.03, shape), 0, 1)
    return pred, target


def test_psnr_hand_computed():
    target = np.full((3, 8, 8), 0.5)
    # MSE 0.01 -> 10*log10(1/0.01) = 20 dB; peak 2 -> 10*log10(4/0.01).
    assert psnr(target + 0.1, target) == pytest.approx(20.0)
    assert psnr(target + 0.1, target, data_range=2.0) == pytest.approx(10 * math.log10(400))
    assert psnr(target, target) == math.inf


def test_psnr_border_batch_and_types():
    target = np.full((3, 8, 8), 0.5)
    pred = target + 0.1
    pred[:, 0, :] = 5.0  # only the border is wrong beyond the 0.1 offset
    assert psnr(pred, target, border=1) == pytest.approx(20.0)
    assert psnr(pred, target) < 20.0
    # A batch averages per-image PSNRs: MSE 1e-2 and 1e-4 -> (20 + 40) / 2.
    batch_t = np.stack([target, target])
    batch_p = np.stack([target + 0.1, target + 0.01])
    assert psnr(batch_p, batch_t) == pytest.approx(30.0)
    assert psnr(torch.from_numpy(batch_p).float(), torch.from_numpy(batch_t).float()) == pytest.approx(30.0, abs=1e-4)
    with pytest.raises(ValueError):
        psnr(target, target[:, :4])


def test_psnr_matches_skimage():
    pred, target = _images()
    assert psnr(pred, target) == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=1.0), rel=1e-12)


def test_psnr_linear_and_srgb_clips_then_encodes():
    pred, target = _images(1)
    pred[0, :2, :2] = 1.4  # overshoot and undershoot a model may produce
    pred[1, -2:, -2:] = -0.2
    lin, srgb = psnr_linear_and_srgb(torch.from_numpy(pred), torch.from_numpy(target), border=2)
    p, t = np.clip(pred, 0, 1)[:, 2:-2, 2:-2], target[:, 2:-2, 2:-2]
    enc = [linear_to_srgb(torch.from_numpy(a)).numpy() for a in (p, t)]
    assert lin == pytest.approx(peak_signal_noise_ratio(t, p, data_range=1.0), rel=1e-10)
    assert srgb == pytest.approx(peak_signal_noise_ratio(enc[1], enc[0], data_range=1.0), rel=1e-10)


def test_ssim_matches_skimage():
    pred, target = _images(2)
    ref = structural_similarity(
        np.moveaxis(pred, 0, -1),
        np.moveaxis(target, 0, -1),
        data_range=1.0,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(pred, target) == pytest.approx(ref, rel=1e-12)
    batch_p, batch_t = torch.from_numpy(np.stack([pred, target])), torch.from_numpy(np.stack([target, target]))
    assert ssim(batch_p, batch_t) == pytest.approx((ref + 1.0) / 2, rel=1e-12)
    assert ssim(target, target) == pytest.approx(1.0)


def test_ciede2000_matches_skimage():
    pred, target = _images(3)
    de = deltaE_ciede2000(rgb2lab(np.moveaxis(pred, 0, -1)), rgb2lab(np.moveaxis(target, 0, -1)))
    mean, p99 = ciede2000(torch.from_numpy(pred), target)
    assert mean == pytest.approx(de.mean(), rel=1e-12)
    assert p99 == pytest.approx(np.percentile(de, 99), rel=1e-12)
    assert p99 > mean > 0
    assert ciede2000(target, target) == (0.0, 0.0)
