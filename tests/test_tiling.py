"""Exact tiled inference equals the full-frame model, for sizes that are not multiples of the tile."""

import pytest
import torch

from deepisp import tiling
from deepisp.errors import DeepISPError
from deepisp.model import DeepISP, ModelConfig
from deepisp.tile_plan import alignment, cell_count, least_overlap_tile, plan_axis, pointwise_blocks, window_size
from deepisp.tiling import run_full_frame, run_tiled


def trained_like(cfg: ModelConfig, seed: int = 0) -> DeepISP:
    """Default init plus small random residual/colour weights: outputs stay in a realistic ~[0,1] range."""
    torch.manual_seed(seed)
    model = DeepISP(cfg)
    with torch.no_grad():
        for block in model.low_level.blocks:
            block.conv_residual.weight.normal_(0, 0.05)
            if block.residual_scale is not None:
                block.residual_scale.uniform_(0.02, 0.5)
        if cfg.mode == "full":
            model.to_w.weight.normal_(0, 0.05)
    return model.eval()


CASES = [
    (ModelConfig(mode="full", n_ll=3, n_hl=1, width=8, hl_width=8), (70, 94), 16),
    (ModelConfig(mode="full", n_ll=4, n_hl=2, width=12, hl_width=8), (97, 161), 32),
    (ModelConfig(mode="full", n_ll=3, n_hl=3, width=8, hl_width=8), (300, 203), 64),
    (ModelConfig(mode="jdd", n_ll=5, width=10), (37, 53), 16),
    (ModelConfig(mode="jdd", n_ll=3, width=16, residual_scale=True, packed=True, compand="sqrt"), (37, 53), 16),
]


@pytest.mark.parametrize("cfg,size,tile", CASES)
def test_tiled_equals_full_frame(cfg, size, tile):
    model = trained_like(cfg)
    mosaic = torch.rand(size)
    full = run_full_frame(model, mosaic)
    tiled = run_tiled(model, mosaic, tile=tile)
    assert len(plan_axis(size[0], tile, cfg).spans) > 1 and size[0] % tile and size[1] % tile
    assert full.abs().max() < 4  # realistic range, so 1e-5 is a meaningful fp32 bound
    assert (full - tiled).abs().max() < 1e-5


def test_plan_covers_every_row_and_cell_once_with_equal_windows():
    cfg = ModelConfig(mode="full", n_ll=4, n_hl=2, width=8, hl_width=8)
    for n in (64, 100, 257, 1001, 3024):
        plan = plan_axis(n, 32, cfg)
        rows = [r for s in plan.spans for r in range(*s.core)]
        cells = [p for s in plan.spans for p in range(*s.cells)]
        assert rows == list(range(n))
        assert cells == list(range(cell_count(n, cfg)))
        assert plan.spans[0].window[0] == 0 and plan.spans[-1].window[1] == n
        for s in plan.spans:
            assert s.window[1] - s.window[0] == plan.size  # one static-shape graph serves every window
            assert s.window[0] % 16 == 0  # origins on the high-level grid (and even for the CFA)
            assert s.window[0] <= s.core[0] and s.core[1] <= s.window[1]


def test_window_size_for_the_s7_frame():
    cfg = ModelConfig(mode="full", n_ll=8, n_hl=3, width=24, hl_width=32)  # phone-full
    assert alignment(cfg) == 64
    assert (window_size(3024, 1024, cfg), window_size(4032, 1024, cfg)) == (1104, 1152)
    assert window_size(500, 1024, cfg) == 500  # small frames are one window


def test_pointwise_blocks_cover_the_axis_with_one_size():
    for n, size in ((10, 4), (8, 4), (3, 5)):
        blocks = pointwise_blocks(n, size)
        assert {y for b in blocks for y in range(*b)} == set(range(n))
        assert {b[1] - b[0] for b in blocks} == {min(n, size)}


def test_cell_count_matches_the_network():
    cfg = ModelConfig(mode="full", n_ll=1, n_hl=2, width=4, hl_width=4)
    model = DeepISP(cfg)
    for n in (16, 17, 31, 33, 50):
        cells = model.high_level(torch.zeros(1, 4, n, n + 3))
        assert cells.shape[-2:] == (cell_count(n, cfg), cell_count(n + 3, cfg))


def test_tile_must_fit_the_high_level_stride():
    cfg = ModelConfig(mode="full", n_ll=2, n_hl=2, width=8, hl_width=8)
    with pytest.raises(DeepISPError, match="multiple of 16"):
        run_tiled(DeepISP(cfg), torch.rand(64, 64), tile=40)


@pytest.mark.parametrize("cfg", [CASES[1][0], CASES[3][0]], ids=["full", "jdd"])
def test_low_level_bands_equal_the_whole_window(cfg, monkeypatch):
    model = trained_like(cfg)
    rgb = torch.rand(1, 3, 83, 40)
    whole_input, whole_image = model.low_level.infer(rgb)
    for band_pixels in (1, 400, 1000):  # the smallest band (2 n_ll rows), a middle one, and a ragged last band
        block_input, image = tiling.low_level_in_bands(model, rgb, band_pixels)
        assert torch.allclose(image, whole_image, atol=1e-6)
        assert (block_input is None) == (whole_input is None)
        if block_input is not None:
            assert torch.allclose(block_input, whole_input, atol=1e-6)
    # And through the tile runner, bands inside windows still give the full-frame result.
    monkeypatch.setattr(tiling, "BAND_PIXELS", 300)
    mosaic = torch.rand(97, 161)
    assert torch.allclose(run_tiled(model, mosaic, tile=32), run_full_frame(model, mosaic), atol=1e-5)


@pytest.mark.parametrize("cfg", [CASES[1][0], CASES[3][0], CASES[4][0]], ids=["full", "jdd", "packed"])
@pytest.mark.parametrize("n", [100, 1156, 3024, 4032, 6001])
def test_least_overlap_tile_computes_the_fewest_pixels_within_the_window_limit(cfg, n):
    """The host's default plan: of every core size, the one whose windows (none over the limit) cover the axis
    with the fewest computed pixels; an axis that fits runs as one window."""
    limit = 512
    chosen = plan_axis(n, least_overlap_tile(n, cfg, limit), cfg)
    a = alignment(cfg)
    plans = [plan_axis(n, t, cfg) for t in range(a, limit + 1, a)]
    allowed = [p for p in plans if p.size <= limit]
    assert chosen.size <= limit
    assert chosen.size * len(chosen.spans) == min(p.size * len(p.spans) for p in allowed)
    if n <= limit:
        assert len(chosen.spans) == 1 and chosen.size == n


def test_default_tiling_equals_the_full_frame():
    cfg = CASES[1][0]
    model = trained_like(cfg)
    mosaic = torch.rand(97, 161)
    assert (run_full_frame(model, mosaic) - run_tiled(model, mosaic)).abs().max() < 1e-5
