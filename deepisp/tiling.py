"""Exact overlapping-tile inference: full-frame results from bounded memory.

The plan (per axis; 2-D windows are the products of the row and column plans):

* The frame is cut into *cores* of `tile` pixels (the last one ends at the frame edge). Each core is
  computed inside a larger *window* of the mosaic; only the core of the window's output is kept.
* Low-level halo. Every layer reflection-pads its input, so at a window edge that lies inside the frame
  the padded values are wrong, and the error creeps in one pixel per 3x3 layer: demosaic (1) + n_ll
  blocks. Cores therefore stay `n_ll + 1` pixels away from interior window edges; at true frame edges the
  window's padding *is* the frame's padding, so nothing is lost there.
* High-level stage and the global W. The paper's W comes from a mean over the whole frame's high-level
  cell map, so tiles must not each compute their own W. Pass 1 runs the high-level convs inside every
  window too and keeps the cells the window *owns* (cell p of a layer stack with stride A = 4^n_hl is owned
  by the core containing row A*p); their sum is accumulated. One high-level cell depends on low-level
  rows [A*p - (A-1)/3, A*p + A - 1] (3x3 stride-2 conv then 2x2 pool, composed n_hl times), so windows
  start (A-1)/3 rows before the core on top of the low-level halo, and window origins are multiples of A
  so their cell grid coincides with the frame's. The mean of the accumulated cells is exactly the
  full-frame global mean; W follows from it.
* Pass 2 applies the per-pixel quadratic transform with that W to the stored low-level image.

Window origins are even, so every window's mosaic keeps the RGGB phase. Exactness is tested against
the full-frame model (max abs difference ~1e-6 in fp32, round-off only).

Shapes: mosaic [H,W] float in [0,1], canonical RGGB; result [3,H,W] float, the model's output space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.model import DeepISP, ModelConfig, apply_color_transform

DEFAULT_TILE = 512


@dataclass(frozen=True)
class Span:
    """One window along one axis: input rows [window), kept output rows [core), owned cells [cells)."""

    window: tuple[int, int]
    core: tuple[int, int]
    cells: tuple[int, int]


def cell_count(n: int, cfg: ModelConfig) -> int:
    """High-level cells along an axis of n pixels (conv k3 s2 p1, then floor 2x2 pool, per layer)."""
    if cfg.mode == "jdd":
        return 0
    for _ in range(cfg.n_hl):
        n = (n - 1) // 2 + 1
        n //= 2
    return n


def alignment(cfg: ModelConfig) -> int:
    """Window origins and tile sizes are multiples of this: the high-level stride, and even for the CFA."""
    return max(2, cfg.hl_stride)


def low_level_halo(cfg: ModelConfig) -> int:
    return cfg.n_ll + 1  # n_ll 3x3 blocks + the 3x3 demosaic


def high_level_reach(cfg: ModelConfig) -> int:
    """How many rows before its own block a high-level cell reads: (4^n_hl - 1) / 3."""
    return (cfg.hl_stride - 1) // 3 if cfg.mode == "full" else 0


def plan_axis(n: int, tile: int, cfg: ModelConfig) -> list[Span]:
    a = alignment(cfg)
    if tile % a:
        raise DeepISPError(f"tile {tile} must be a multiple of {a} for this model (its high-level stride): try --tile {math.ceil(tile / a) * a}")
    halo, reach = low_level_halo(cfg), high_level_reach(cfg)
    n_cells = cell_count(n, cfg)
    spans = []
    for c0 in range(0, n, tile):
        c1 = min(n, c0 + tile)
        w0 = max(0, (c0 - halo - reach) // a * a)
        w1 = min(n, c1 + halo)
        p1 = n_cells if c1 == n else c1 // a
        spans.append(Span((w0, w1), (c0, c1), (min(c0 // a, p1), p1)))
    return spans


@torch.no_grad()
def run_tiled(model: DeepISP, mosaic: torch.Tensor, tile: int = DEFAULT_TILE, progress: bool = False) -> torch.Tensor:
    """The model on a full mosaic, window by window, equal to `run_full_frame` up to float round-off.

    Args:
        mosaic: [H,W] float in [0,1], canonical RGGB, H,W >= the model's min_size.
        tile: core size, a multiple of `alignment(cfg)`; memory grows with (tile + 2*halo)^2.
    Returns:
        [3,H,W] float: linear RGB (jdd) or sRGB-encoded (full), not clamped.
    """
    cfg = model.cfg
    h, w = mosaic.shape
    if min(h, w) < cfg.min_size:
        raise DeepISPError(f"image {h}x{w} is smaller than this model's {cfg.min_size}x{cfg.min_size} minimum")
    device = next(model.parameters()).device
    rows, cols = plan_axis(h, tile, cfg), plan_axis(w, tile, cfg)
    a = alignment(cfg)
    image = torch.empty(3, h, w, dtype=torch.float32)
    cell_sum = torch.zeros(cfg.hl_width, dtype=torch.float64) if cfg.mode == "full" else None
    windows = [(r, c) for r in rows for c in cols]
    for r, c in tqdm(windows, desc="tiles", disable=not progress, leave=False):
        (y0, y1), (x0, x1) = r.window, c.window
        rgb = bilinear_demosaic(mosaic[y0:y1, x0:x1].to(device, torch.float32)[None, None])
        features, estimate = model.low_level(rgb)
        (cy0, cy1), (cx0, cx1) = r.core, c.core
        image[:, cy0:cy1, cx0:cx1] = estimate[0, :, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].cpu()
        if cell_sum is not None and r.cells[1] > r.cells[0] and c.cells[1] > c.cells[0]:
            cells = model.high_level(torch.cat([features, estimate], dim=1))[0]
            (p0, p1), (q0, q1) = r.cells, c.cells
            owned = cells[:, p0 - y0 // a : p1 - y0 // a, q0 - x0 // a : q1 - x0 // a]
            cell_sum += owned.double().sum(dim=(1, 2)).cpu()
    if cell_sum is None:
        return image
    mean = (cell_sum / (cell_count(h, cfg) * cell_count(w, cfg))).float().to(device)
    w_matrix = model.color_head(mean[None]).cpu()
    # Pass 2 in row bands: the quadratic monomials are 10 channels, so bound their memory too.
    for y in range(0, h, tile):
        image[:, y : y + tile] = apply_color_transform(w_matrix, image[None, :, y : y + tile])[0]
    return image


@torch.no_grad()
def run_full_frame(model: DeepISP, mosaic: torch.Tensor) -> torch.Tensor:
    """Reference path: demosaic and run the whole frame at once. mosaic [H,W] -> [3,H,W]."""
    device = next(model.parameters()).device
    return model(bilinear_demosaic(mosaic.to(device, torch.float32)[None, None]))[0].cpu()
