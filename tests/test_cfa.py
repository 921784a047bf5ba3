"""deepisp.cfa: masks and sampling agree with each other and with a site-by-site layout, phase detection reads
the pattern back from data, and the canonical flips reach RGGB and undo exactly."""

import numpy as np
import pytest
import torch

from deepisp.cfa import CFA_PATTERNS, canonicalize, check_pattern, detect_cfa_phase, mirror, mosaic, rggb_masks, sample, spread
from deepisp.errors import DeepISPError

# Written out independently of deepisp.cfa: the channel each 2x2 site measures, raster order.
SITE_CHANNELS = {"RGGB": (0, 1, 1, 2), "GRBG": (1, 0, 2, 1), "GBRG": (1, 2, 0, 1), "BGGR": (2, 1, 1, 0)}


def site_channel_map(pattern: str, h: int, w: int) -> np.ndarray:
    """[H,W] int: the channel each pixel of a `pattern` mosaic measures."""
    site = np.array(SITE_CHANNELS[pattern]).reshape(2, 2)
    return np.tile(site, ((h + 1) // 2, (w + 1) // 2))[:h, :w]


# ---------------------------------------------------------------------------------------------- sampling


def test_rggb_masks_partition_the_grid():
    m = rggb_masks(4, 6)[0]
    assert torch.equal(m.sum(0), torch.ones(4, 6))
    assert m[0, 0, 0] == 1 and m[1, 0, 1] == 1 and m[1, 1, 0] == 1 and m[2, 1, 1] == 1


@pytest.mark.parametrize("h,w", [(6, 8), (5, 7)])
def test_rggb_masks_match_the_site_layout(h, w):
    expected = site_channel_map("RGGB", h, w)[None] == np.arange(3).reshape(3, 1, 1)
    assert np.array_equal(rggb_masks(h, w, dtype=torch.float64)[0].numpy(), expected.astype(np.float64))


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
@pytest.mark.parametrize("h,w", [(6, 8), (5, 7)])
def test_sample_keeps_each_sites_channel(pattern, h, w):
    img = np.random.default_rng(0).integers(0, 65536, (h, w, 3)).astype(np.uint16)
    out = sample(img, pattern)
    assert out.dtype == np.uint16 and out.shape == (h, w)
    assert np.array_equal(out, np.take_along_axis(img, site_channel_map(pattern, h, w)[..., None], -1)[..., 0])


def test_torch_mosaic_equals_numpy_sample_on_rggb():
    rgb = torch.rand(2, 3, 7, 10, dtype=torch.float64)
    out = mosaic(rgb)
    assert out.shape == (2, 1, 7, 10) and out.dtype == torch.float64
    for b in range(2):
        assert np.array_equal(out[b, 0].numpy(), sample(rgb[b].permute(1, 2, 0).numpy(), "RGGB"))
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        mosaic(rgb[0])


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_spread_is_the_three_channel_form(pattern):
    m = np.random.default_rng(1).integers(1, 65536, (6, 9)).astype(np.uint16)
    three = spread(m, pattern)
    assert three.dtype == np.uint16 and three.shape == (6, 9, 3)
    assert np.array_equal(three.sum(-1), m)  # one non-zero channel per pixel
    assert np.array_equal(sample(three, pattern), m)
    assert np.array_equal(three.argmax(-1), site_channel_map(pattern, 6, 9))


def test_unknown_patterns_are_refused():
    for bad in ("RGBG", "rggb", "RGB"):
        with pytest.raises(ValueError, match="unknown CFA pattern"):
            check_pattern(bad)
        with pytest.raises(ValueError, match="unknown CFA pattern"):
            sample(np.zeros((4, 4, 3)), bad)


# ---------------------------------------------------------------------------------------------- phase


def _stored_mosaic(pattern: str, h: int, w: int, rng, three_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    gt = rng.integers(1000, 60000, (h, w, 3)).astype(np.uint16)
    onehot = site_channel_map(pattern, h, w)[..., None] == np.arange(3)
    return (gt * onehot if three_channel else (gt * onehot).sum(-1)), gt


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_detect_cfa_phase(pattern):
    rng = np.random.default_rng(1)
    three, _ = _stored_mosaic(pattern, 8, 10, rng, three_channel=True)
    assert detect_cfa_phase(three) == pattern
    one, gt = _stored_mosaic(pattern, 8, 10, rng, three_channel=False)
    noisy = one + rng.normal(0, 300, one.shape)
    assert detect_cfa_phase(noisy, gt) == pattern


def test_detect_cfa_phase_refuses_undecidable_data():
    rng = np.random.default_rng(2)
    with pytest.raises(DeepISPError, match="not a Bayer mosaic"):
        detect_cfa_phase(rng.uniform(0.1, 1, (8, 8, 3)))  # an RGB image, not a mosaic
    with pytest.raises(DeepISPError, match="all-zero"):
        detect_cfa_phase(np.zeros((8, 8, 3)))
    grey = np.repeat(rng.uniform(0, 1, (8, 8, 1)), 3, axis=2)
    with pytest.raises(DeepISPError, match="cannot tell"):
        detect_cfa_phase(grey[..., 0], grey)
    with pytest.raises(DeepISPError, match="needs the ground truth"):
        detect_cfa_phase(grey[..., 0])


# ---------------------------------------------------------------------------------------- canonical frame


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_canonicalize_reaches_rggb_and_mirror_undoes_it(pattern):
    rgb = np.random.default_rng(3).random((6, 8, 3))
    sensor = sample(rgb, pattern)
    canonical, flip_h, flip_v = canonicalize(sensor, pattern)
    assert canonical.flags.c_contiguous
    # The canonical mosaic is the RGGB sampling of the identically mirrored image.
    assert np.array_equal(canonical, sample(mirror(rgb, flip_h, flip_v, axes=(0, 1)), "RGGB"))
    assert np.array_equal(mirror(canonical, flip_h, flip_v), sensor)
    # Leading axes ride along: a channel-first image flips as its mosaic does.
    chw, _, _ = canonicalize(rgb.transpose(2, 0, 1), pattern)
    assert np.array_equal(sample(chw.transpose(1, 2, 0), "RGGB"), canonical)


def test_canonicalize_validates():
    with pytest.raises(ValueError, match="odd"):
        canonicalize(np.zeros((4, 5)), "GRBG")
    out, flip_h, flip_v = canonicalize(np.zeros((4, 5)), "GBRG")  # only rows are flipped: odd width is fine
    assert out.shape == (4, 5) and (flip_h, flip_v) == (False, True)
    with pytest.raises(ValueError, match="unknown CFA"):
        canonicalize(np.zeros((4, 4)), "RGBG")
