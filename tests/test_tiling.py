"""Exact tiled inference equals the full-frame model, for sizes that are not multiples of the tile."""

import pytest
import torch

from deepisp.errors import DeepISPError
from deepisp.model import DeepISP, ModelConfig
from deepisp.tiling import cell_count, plan_axis, run_full_frame, run_tiled


def trained_like(cfg: ModelConfig, seed: int = 0) -> DeepISP:
    """Default init plus small random residual/colour weights: outputs stay in a realistic ~[0,1] range."""
    torch.manual_seed(seed)
    model = DeepISP(cfg)
    with torch.no_grad():
        for block in model.low_level.blocks:
            block.conv_residual.weight.normal_(0, 0.05)
        if cfg.mode == "full":
            model.to_w.weight.normal_(0, 0.05)
    return model.eval()


CASES = [
    (ModelConfig(mode="full", n_ll=3, n_hl=1, width=8, hl_width=8), (70, 94), 16),
    (ModelConfig(mode="full", n_ll=4, n_hl=2, width=12, hl_width=8), (97, 161), 32),
    (ModelConfig(mode="full", n_ll=3, n_hl=3, width=8, hl_width=8), (130, 203), 64),
    (ModelConfig(mode="jdd", n_ll=5, width=10), (37, 53), 16),
]


@pytest.mark.parametrize("cfg,size,tile", CASES)
def test_tiled_equals_full_frame(cfg, size, tile):
    model = trained_like(cfg)
    mosaic = torch.rand(size)
    full = run_full_frame(model, mosaic)
    tiled = run_tiled(model, mosaic, tile=tile)
    assert len(plan_axis(size[0], tile, cfg)) > 1 and size[0] % tile and size[1] % tile
    assert full.abs().max() < 4  # realistic range, so 1e-5 is a meaningful fp32 bound
    assert (full - tiled).abs().max() < 1e-5


def test_plan_covers_every_row_and_cell_once():
    cfg = ModelConfig(mode="full", n_ll=4, n_hl=2, width=8, hl_width=8)
    for n in (64, 100, 257, 1001):
        spans = plan_axis(n, 32, cfg)
        rows = [r for s in spans for r in range(*s.core)]
        cells = [p for s in spans for p in range(*s.cells)]
        assert rows == list(range(n))
        assert cells == list(range(cell_count(n, cfg)))
        for s in spans:
            assert s.window[0] % 16 == 0  # origins on the high-level grid (and even for the CFA)
            assert s.window[0] <= s.core[0] and s.core[1] <= s.window[1]


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
