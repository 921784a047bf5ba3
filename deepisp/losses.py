"""Training losses of the paper (section II-B).

    jdd:  L2 (mean squared error) on linear RGB; or, beyond the paper, "l2+srgb": that plus the L2 of the
          sRGB-encoded images (linear L2 weighs the bright tones, where a display and the sRGB PSNR do not);
          or "log-l2+srgb": both terms per crop, as the mean of the crops' -PSNRs (what the quality tables average):
          a batch's L2 is ruled by its noisy, textured crops, so a model trained on it leaves errors on smooth,
          clean areas that cost a clean photo several dB (shifted flat colours, a CFA pattern on smooth saturated areas).
    full: (1 - alpha) * L1(Lab(pred), Lab(target)) / 100 + alpha * (1 - MS-SSIM(L(pred), L(target)))
          with MS-SSIM on the Lab lightness only, two scales, 5x5 Gaussian windows (paper IV-C).

Lab is divided by 100 in the L1 term so both terms live on a ~[0,1] scale, as in Zhao et al. (the
paper's [35]), whose alpha = 0.84 is our default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim

from deepisp.color import linear_to_srgb, srgb_to_lab

# The first two of Wang et al.'s five MS-SSIM scale weights, renormalised to sum to 1.
TWO_SCALE_WEIGHTS = (0.0448 / (0.0448 + 0.2856), 0.2856 / (0.0448 + 0.2856))
MS_SSIM_WINDOW = 5
# pytorch-msssim asserts min(H,W) > (win - 1) * 16 whatever the number of scales.
MIN_CROP = (MS_SSIM_WINDOW - 1) * 16 + 1


@dataclass(frozen=True)
class IspLoss:
    """The full-ISP loss; call with pred/target [B,3,H,W] sRGB-encoded, H,W >= MIN_CROP. Returns a scalar."""

    alpha: float = 0.84
    weights: tuple[float, ...] = TWO_SCALE_WEIGHTS
    window: int = MS_SSIM_WINDOW

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lab_pred, lab_target = srgb_to_lab(pred), srgb_to_lab(target)
        l1 = (lab_pred - lab_target).abs().mean() / 100.0
        # MS-SSIM needs non-negative structure terms: lightness outside [0,100] is clamped for it only,
        # the L1 term still sees (and pulls back) out-of-range values.
        l_pred = lab_pred[:, :1].clamp(0, 100)
        l_target = lab_target[:, :1].clamp(0, 100)
        similarity = ms_ssim(l_pred, l_target, data_range=100.0, win_size=self.window, weights=list(self.weights))
        return (1 - self.alpha) * l1 + self.alpha * (1 - similarity)


# "log-l2+srgb": an L2 this small (60 dB) counts as exact, so a perfect crop (a clean smooth field) has a
# bounded gradient.
LOG_LOSS_FLOOR = 1e-6


def jdd_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L2 loss for joint denoising and demosaicing: pred/target [B,3,H,W] linear RGB."""
    return F.mse_loss(pred, target)


def jdd_loss_with_srgb(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`jdd_loss` plus the L2 of the sRGB-encoded images (pred clamped to [0,1] for the curve); [B,3,H,W] linear RGB."""
    return F.mse_loss(pred, target) + F.mse_loss(linear_to_srgb(pred.clamp(0, 1)), linear_to_srgb(target))


def jdd_log_loss_with_srgb(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-(PSNR linear + PSNR sRGB) / 2 in dB, each per crop (peak 1, L2 floored at LOG_LOSS_FLOOR), averaged over
    the crops; [B,3,H,W] linear RGB (pred clamped to [0,1] for the curve)."""
    linear = (pred - target).pow(2).flatten(1).mean(1)
    srgb = (linear_to_srgb(pred.clamp(0, 1)) - linear_to_srgb(target)).pow(2).flatten(1).mean(1)
    return 5.0 * (torch.log10(linear + LOG_LOSS_FLOOR) + torch.log10(srgb + LOG_LOSS_FLOOR)).mean()


# deepisp.options.JDD_LOSSES's functions.
JDD_LOSS_FUNCTIONS = {"l2": jdd_loss, "l2+srgb": jdd_loss_with_srgb, "log-l2+srgb": jdd_log_loss_with_srgb}
