"""Colour conversions against reference implementations, the loss functions and the histogram stretch."""

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim
from skimage.color import rgb2lab

from deepisp.color import histogram_stretch, linear_to_srgb, srgb_to_lab, srgb_to_linear
from deepisp.losses import LOG_LOSS_FLOOR, TWO_SCALE_WEIGHTS, IspLoss, jdd_log_loss_with_srgb, jdd_loss, jdd_loss_with_srgb


def test_srgb_curve_round_trip_and_reference_points():
    x = torch.linspace(0, 1, 1001)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-6)
    assert srgb_to_linear(torch.tensor(0.5)).item() == pytest.approx(0.21404, abs=1e-5)


def test_lab_matches_skimage():
    rng = np.random.default_rng(0)
    img = rng.random((3, 16, 16)).astype(np.float32)
    ours = srgb_to_lab(torch.from_numpy(img)).numpy().transpose(1, 2, 0)
    ref = rgb2lab(img.transpose(1, 2, 0))
    assert np.abs(ours - ref).max() < 2e-3


def test_lab_gradients_are_finite_out_of_range():
    x = torch.tensor([-0.3, 0.0, 0.02, 0.5, 1.4]).view(1, 5, 1).expand(3, 5, 1).clone().requires_grad_(True)
    srgb_to_lab(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_isp_loss_is_zero_on_identical_images_and_weights_terms():
    t = torch.rand(1, 3, 72, 72)
    assert IspLoss()(t, t).item() == pytest.approx(0.0, abs=1e-6)
    p = (t + 0.1 * torch.randn_like(t)).clamp(0, 1)
    lab_p, lab_t = srgb_to_lab(p), srgb_to_lab(t)
    l1 = (lab_p - lab_t).abs().mean() / 100
    msssim = ms_ssim(lab_p[:, :1], lab_t[:, :1], data_range=100.0, win_size=5, weights=list(TWO_SCALE_WEIGHTS))
    assert IspLoss(alpha=0.0)(p, t).item() == pytest.approx(l1.item(), rel=1e-5)
    assert IspLoss(alpha=1.0)(p, t).item() == pytest.approx(1 - msssim.item(), rel=1e-5)


def test_two_scale_ms_ssim_settings():
    assert len(TWO_SCALE_WEIGHTS) == 2 and sum(TWO_SCALE_WEIGHTS) == pytest.approx(1.0)
    assert IspLoss().window == 5


def test_jdd_srgb_loss_weighs_dark_errors_as_a_display_does():
    target = torch.full((1, 3, 4, 4), 0.01)
    dark, bright = target + 0.005, target.clone()
    bright[..., 0, 0] = 0.9  # one bright pixel off by much more in linear terms...
    target_b = target.clone()
    target_b[..., 0, 0] = 0.9 - 0.02
    # ...same linear L2 order as the dark error, but the sRGB term ranks the dark one higher per linear unit
    assert jdd_loss_with_srgb(dark, target).item() == pytest.approx(
        jdd_loss(dark, target).item() + ((linear_to_srgb(dark) - linear_to_srgb(target)) ** 2).mean().item()
    )
    ratio_dark = jdd_loss_with_srgb(dark, target).item() / jdd_loss(dark, target).item()
    ratio_bright = jdd_loss_with_srgb(bright, target_b).item() / jdd_loss(bright, target_b).item()
    assert ratio_dark > 10 * ratio_bright
    # prediction outside [0,1] is clamped for the curve only
    assert torch.isfinite(jdd_loss_with_srgb(target - 0.5, target))


def test_jdd_loss_is_mse():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert jdd_loss(a, b).item() == pytest.approx(0.25)


def test_histogram_stretch_saturates_five_percent_each_end():
    g = torch.Generator().manual_seed(0)
    img = 0.2 + 0.3 * torch.rand(1, 64, 64, generator=g).expand(3, 64, 64)  # grey, luma in [0.2, 0.5]
    out = histogram_stretch(img)
    assert out.min() == 0 and out.max() == 1
    assert (out[0] == 0).float().mean().item() == pytest.approx(0.05, abs=0.01)
    assert (out[0] == 1).float().mean().item() == pytest.approx(0.05, abs=0.01)


def test_jdd_log_loss_is_the_mean_of_the_crops_minus_psnr():
    target = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    pred = target.clone()
    pred[0] += 0.1  # a poor crop
    pred[1] += 0.001  # a good one

    def minus_psnr(a, b):
        return 10 * torch.log10((a - b).pow(2).mean() + LOG_LOSS_FLOOR)

    want = np.mean([(minus_psnr(pred[k], target[k]) + minus_psnr(linear_to_srgb(pred[k].clamp(0, 1)), linear_to_srgb(target[k]))).item() / 2 for k in range(2)])
    assert jdd_log_loss_with_srgb(pred, target).item() == pytest.approx(want, rel=1e-5)
    # Each crop counts by its PSNR: the good crop's gradient is not drowned by the poor one's (the batch L2's is).
    pred.requires_grad_(True)
    jdd_log_loss_with_srgb(pred, target).backward()
    log_ratio = float(pred.grad[1].abs().mean() / pred.grad[0].abs().mean())
    pred.grad = None
    jdd_loss_with_srgb(pred, target).backward()
    assert log_ratio > 10 and float(pred.grad[1].abs().mean() / pred.grad[0].abs().mean()) < 0.1
    # A perfect crop: finite, at the floor.
    assert jdd_log_loss_with_srgb(target, target).item() == pytest.approx(10 * np.log10(LOG_LOSS_FLOOR))
