"""Bilinear demosaicing as a fixed conv: exact where bilinear is exact, and phase-preserving borders."""

import pytest
import torch

from deepisp.cfa import mosaic, rggb_masks
from deepisp.demosaic import bilinear_demosaic


def test_linear_ramp_is_reconstructed_exactly_inside():
    h, w = 21, 30
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    rgb = torch.stack([0.01 * x + 0.02 * y, 0.3 + 0.005 * x - 0.01 * y, 0.9 - 0.01 * x]).unsqueeze(0) / 2
    out = bilinear_demosaic(mosaic(rgb))
    assert (out - rgb)[..., 1:-1, 1:-1].abs().max() < 1e-12


def test_measured_samples_are_kept_everywhere_including_borders():
    raw = torch.rand(1, 1, 9, 12, dtype=torch.float64)
    out = bilinear_demosaic(raw)
    masks = rggb_masks(9, 12, dtype=torch.float64)
    assert torch.allclose((out * masks).sum(1, keepdim=True), raw)


def test_border_uses_same_colour_neighbours():
    # A constant-per-channel image must come back constant, borders included: reflection keeps the phase.
    rgb = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1).expand(1, 3, 7, 10)
    assert torch.allclose(bilinear_demosaic(mosaic(rgb)), rgb)


def test_strided_demosaic_is_exactly_bilinear():
    """The export graphs' stride-2 conv + pixel-shuffle demosaic equals the mask form, borders included."""
    from deepisp.demosaic import bilinear_demosaic_strided

    raw = torch.rand(2, 1, 38, 52)
    assert torch.equal(bilinear_demosaic_strided(raw), bilinear_demosaic(raw))


def test_half_resolution_demosaic_is_the_packed_bilinear_image():
    """What the host feeds packed models: the same values as packing the full-resolution bilinear image."""
    from deepisp.demosaic import bilinear_demosaic_packed

    raw = torch.rand(2, 1, 38, 52)
    assert torch.equal(bilinear_demosaic_packed(raw), torch.nn.functional.pixel_unshuffle(bilinear_demosaic(raw), 2))
    with pytest.raises(ValueError, match="even"):
        bilinear_demosaic_packed(torch.rand(1, 1, 37, 52))
