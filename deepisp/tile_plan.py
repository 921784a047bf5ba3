"""The tile plan: which fixed-size windows cover a frame, which rows each keeps and which high-level cells
it owns, torch-free (pure arithmetic on a ModelConfig).

The same plan drives the PyTorch runner (`deepisp.tiling`), the exported ONNX/TFLite graphs (`deepisp.runtime`) and a
phone app (the plan is written into every exported model's metadata). Every window of a frame has the
same shape, so one static-shape graph serves all tiles on a GPU/NPU delegate.

The plan, per axis (2-D windows are the products of the row and column plans); A = `alignment(cfg)`
(the high-level stride 4^n_hl, at least 2 for the CFA), h = `low_level_halo(cfg)`, r = `high_level_reach(cfg)`:

* Low-level halo. Every layer reflection-pads its input, so at a window edge that lies inside the frame
  the padded values are wrong, and the error creeps in one pixel per 3x3 layer: demosaic (1) + n_ll
  blocks = h pixels. Kept rows (the *core*) stay h pixels away from interior window edges; at true frame
  edges the window's padding *is* the frame's padding, so nothing is lost there.
* High-level stage and the global W. The paper's W comes from a mean over the whole frame's high-level
  cell map, so tiles must not each compute their own W. Pass 1 runs the high-level convs in every window
  too and keeps the cells the window *owns* (cell p is owned by the core containing row A*p); their sum
  is accumulated, and the mean is exactly the full-frame global mean. One cell reads low-level rows
  [A*p - r, A*p + A - 1], so cores start `top_margin` = ceil((h + r) / A) * A rows after an interior window
  origin. Window origins are multiples of A so every window's cell grid coincides with the frame's.
* Fixed window size S. The first window starts at 0, the last one ends at the frame edge (so frame-edge
  padding is exact), and both must start on the A grid: S = n (mod A). S is the smallest such size with
  room for a `tile`-pixel core (S >= tile + top_margin + h), or n when the frame is smaller. Interior
  origins step by the largest multiple of A that keeps neighbouring cores touching; cores meet at
  `origin + top_margin` of the later window. S therefore depends on the frame size: a phone exports
  graphs for its sensor's frame (3024x4032 on the S7: 1104x1152 windows for tile 1024 and 3 high-level
  layers), and the Python runners resize their graphs for other frames.
* Pass 2 applies the per-pixel quadratic transform with that W to the stored low-level image, in blocks
  of the window's shape (pointwise, so blocks may overlap at the frame's end).

Window origins are even, so every window's mosaic keeps the RGGB phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deepisp.errors import DeepISPError
from deepisp.model.config import ModelConfig
from deepisp.options import MAX_HOST_WINDOW, Mode


@dataclass(frozen=True)
class Span:
    """One window along one axis: input rows [window), kept output rows [core), owned cells [cells)."""

    window: tuple[int, int]
    core: tuple[int, int]
    cells: tuple[int, int]


@dataclass(frozen=True)
class AxisPlan:
    """The windows along one axis of `n` pixels, all `size` long."""

    n: int
    size: int
    spans: tuple[Span, ...]


def cell_count(n: int, cfg: ModelConfig) -> int:
    """High-level cells along an axis of n pixels (conv k3 s2 p1, then floor 2x2 pool, per layer)."""
    if cfg.mode == Mode.JDD:
        return 0
    n //= cfg.pack_factor
    for _ in range(cfg.n_hl):
        n = (n - 1) // 2 + 1
        n //= 2
    return n


def alignment(cfg: ModelConfig) -> int:
    """Window origins and tile sizes are multiples of this: the high-level stride, and even for the CFA."""
    return max(2, cfg.hl_stride)


def low_level_halo(cfg: ModelConfig) -> int:
    """n_ll 3x3 blocks + the 3x3 demosaic, each wrong row costing a whole working row when packed."""
    return cfg.pack_factor * (cfg.n_ll + 1)


def high_level_reach(cfg: ModelConfig) -> int:
    """How many rows before its own block a high-level cell reads: (4^n_hl - 1) / 3 working rows."""
    return cfg.pack_factor * (4**cfg.n_hl - 1) // 3 if cfg.mode == Mode.FULL else 0


def top_margin(cfg: ModelConfig) -> int:
    """Rows between an interior window's origin and its core: halo + reach, rounded up to the A grid."""
    a = alignment(cfg)
    return math.ceil((low_level_halo(cfg) + high_level_reach(cfg)) / a) * a


def window_size(n: int, tile: int, cfg: ModelConfig) -> int:
    """The fixed window length along an axis of n pixels for a nominal `tile`-pixel core (see module doc)."""
    a = alignment(cfg)
    if tile <= 0 or tile % a:
        raise DeepISPError(
            f"tile {tile} must be a positive multiple of {a} for this model (its high-level stride): try --tile {max(1, math.ceil(tile / a)) * a}"
        )
    smallest = tile + top_margin(cfg) + low_level_halo(cfg)
    return min(n, smallest + (n - smallest) % a)


def plan_axis(n: int, tile: int, cfg: ModelConfig, size: int | None = None) -> AxisPlan:
    """Windows of one fixed length covering n pixels; `size` overrides the length derived from `tile`.

    `size` must be n, or satisfy size = n (mod alignment) with room for a core (an exported graph's window).
    """
    a, halo, margin = alignment(cfg), low_level_halo(cfg), top_margin(cfg)
    size = window_size(n, tile, cfg) if size is None else size
    if size > n or (size < n and ((n - size) % a or size < margin + halo + a)):
        raise DeepISPError(
            f"a {size}-pixel window cannot tile a {n}-pixel axis for this model: windows must be the axis "
            f"length or congruent to it mod {a} and at least {margin + halo + a}; re-export for this frame size"
        )
    if size == n:
        return AxisPlan(n, n, (Span((0, n), (0, n), (0, cell_count(n, cfg))),))
    step = (size - halo - margin) // a * a
    origins = [min(k * step, n - size) for k in range(1 + math.ceil((n - size) / step))]
    cores = [0] + [o + margin for o in origins[1:]] + [n]
    n_cells = cell_count(n, cfg)
    spans = []
    for k, o in enumerate(origins):
        c0, c1 = cores[k], cores[k + 1]
        cells = (min(math.ceil(c0 / a), n_cells), n_cells if c1 == n else min(c1 // a, n_cells)) if cfg.mode == Mode.FULL else (0, 0)
        spans.append(Span((o, o + size), (c0, c1), cells))
    return AxisPlan(n, size, tuple(spans))


def pointwise_blocks(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) blocks of `size` (the last one shifted back to end at n) for pointwise pass 2."""
    size = min(size, n)
    return [(min(s, n - size), min(s, n - size) + size) for s in range(0, n, size)]


def least_overlap_tile(n: int, cfg: ModelConfig, max_window: int = MAX_HOST_WINDOW) -> int:
    """The nominal core whose plan covers an axis of n pixels computing the fewest pixels (windows x window
    length), with no window longer than `max_window`: the whole axis when it fits in one window. Ties go to the
    larger core (fewer windows)."""
    a = alignment(cfg)
    best, best_cost = a, math.inf
    for tile in range(a, max(max_window, a) + 1, a):
        plan = plan_axis(n, tile, cfg)
        cost = plan.size * len(plan.spans)
        if plan.size <= max_window and cost <= best_cost:
            best, best_cost = tile, cost
    return best


def frame_plan(h: int, w: int, cfg: ModelConfig, tile: int | tuple[int, int] | None = None, window: tuple[int, int] | None = None) -> tuple[AxisPlan, AxisPlan]:
    """The row and column plans of an h x w frame. `tile`: the nominal core, one size or (rows, cols), or None
    for each axis's `least_overlap_tile`; `window`: a fixed (S_h, S_w) window shape (an exported graph's) to use
    instead of the one the core gives."""
    if tile is None:
        tile = (least_overlap_tile(h, cfg), least_overlap_tile(w, cfg))
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    return plan_axis(h, tile_h, cfg, None if window is None else window[0]), plan_axis(w, tile_w, cfg, None if window is None else window[1])
