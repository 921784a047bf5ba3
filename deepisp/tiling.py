"""Exact overlapping-tile inference: full-frame results from bounded memory, with fixed-size windows.

The same plan drives the PyTorch model here, the exported ONNX/TFLite graphs (`deepisp.runtime`) and a
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

Window origins are even, so every window's mosaic keeps the RGGB phase. Exactness is tested against
the full-frame model (max abs difference ~1e-6 in fp32, round-off only).

Shapes: mosaic [H,W] float in [0,1], canonical RGGB; result [3,H,W] float, the model's output space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from tqdm import tqdm

from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.model import DeepISP, ModelConfig, apply_color_transform, compand, uncompand
from deepisp.options import DEFAULT_TILE

# Pixels per low-level band on the host: the 24-channel activations of a band this size stay in this CPU's
# cache; one whole 1104x1152 window ran at ~1.9x the time per pixel of 272x1152 bands (4313 vs 2245 ms/MP,
# old phone-full, one thread on this project's 2-core CPU).
BAND_PIXELS = 160_000


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
    if cfg.mode == "jdd":
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
    return cfg.pack_factor * (4**cfg.n_hl - 1) // 3 if cfg.mode == "full" else 0


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
        cells = (min(math.ceil(c0 / a), n_cells), n_cells if c1 == n else min(c1 // a, n_cells)) if cfg.mode == "full" else (0, 0)
        spans.append(Span((o, o + size), (c0, c1), cells))
    return AxisPlan(n, size, tuple(spans))


def pointwise_blocks(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) blocks of `size` (the last one shifted back to end at n) for pointwise pass 2."""
    size = min(size, n)
    return [(min(s, n - size), min(s, n - size) + size) for s in range(0, n, size)]


class WindowRunner(Protocol):
    """One backend's two passes on fixed-shape windows (PyTorch here, ONNX/TFLite in deepisp.runtime)."""

    cfg: ModelConfig

    def low_level(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pass 1. window [S_h,S_w] mosaic -> (image [3,S_h,S_w], cells [hl_width,h,w] or None for jdd); both
        in the network's working domain (`compand`ed mosaic in, companded image out for `cfg.compand` models)."""

    def color(self, image: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Pass 2. image [3,h,w] low-level estimate, mean [hl_width] global mean -> [3,h,w] output."""


class TorchRunner:
    """`WindowRunner` over a `DeepISP` module (fp32, on the module's device), low-level convs merged."""

    def __init__(self, model: DeepISP):
        self.model, self.cfg = model, model.cfg
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def low_level(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        rgb = bilinear_demosaic(window.to(self.device, torch.float32)[None, None])
        block_input, image = low_level_in_bands(self.model, self.model.pack(rgb))
        image = self.model.unpack(image)[0].cpu()
        if self.cfg.mode == "jdd":
            return image, None
        return image, self.model.high_level(block_input)[0].cpu()

    @torch.no_grad()
    def color(self, image: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        w = self.model.color_head(mean.to(self.device, torch.float32)[None])
        return apply_color_transform(w, image.to(self.device)[None])[0].cpu()


def low_level_in_bands(model: DeepISP, rgb: torch.Tensor, band_pixels: int | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """`model.low_level.infer` on rgb [1,C,h,w] (working domain, `DeepISP.pack`), run in bands of rows that
    fit in cache; the same values.

    Each band carries n_ll extra rows on each side inside the window: a band's reflection padding is wrong
    at its inner edges, and the error creeps one row per block (the low-level halo, as between windows).
    At the window's own edges the band's padding is the window's. Returns what `infer` does.
    `band_pixels`: band size in pixels (default BAND_PIXELS).
    """
    halo = model.cfg.n_ll
    h, w = rgb.shape[2:]
    rows = max(2 * halo, (band_pixels or BAND_PIXELS) // w)
    if h <= rows + 2 * halo:
        return model.low_level.infer(rgb)
    block_input = image = None
    for y0 in range(0, h, rows):
        y1 = min(y0 + rows, h)
        top, bottom = max(0, y0 - halo), min(h, y1 + halo)
        band_input, band_image = model.low_level.infer(rgb[:, :, top:bottom])
        if image is None:
            image = rgb.new_empty(1, band_image.shape[1], h, w)
            block_input = None if band_input is None else rgb.new_empty(1, band_input.shape[1], h, w)
        image[:, :, y0:y1] = band_image[:, :, y0 - top : y1 - top]
        if block_input is not None:
            block_input[:, :, y0:y1] = band_input[:, :, y0 - top : y1 - top]
    return block_input, image


def run_tiled(
    model: DeepISP | WindowRunner,
    mosaic: torch.Tensor,
    tile: int | tuple[int, int] = DEFAULT_TILE,
    progress: bool = False,
    window: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The model on a full mosaic, window by window, equal to `run_full_frame` up to float round-off.

    Args:
        model: a DeepISP module, or any `WindowRunner` (an exported graph from deepisp.runtime).
        mosaic: [H,W] float in [0,1], canonical RGGB, H,W >= the model's min_size.
        tile: nominal core size (or per axis, (rows, cols)), a multiple of `alignment(cfg)`; memory grows
            with (tile + margins)^2.
        window: fixed (S_h, S_w) window shape to use instead of the one derived from `tile`.
    Returns:
        [3,H,W] float: linear RGB (jdd) or sRGB-encoded (full), not clamped.
    """
    runner = TorchRunner(model) if isinstance(model, DeepISP) else model
    cfg = runner.cfg
    h, w = mosaic.shape
    if min(h, w) < cfg.min_size:
        raise DeepISPError(f"image {h}x{w} is smaller than this model's {cfg.min_size}x{cfg.min_size} minimum")
    if cfg.packed and (h % 2 or w % 2):
        window = None if window is None else (window[0] + h % 2, window[1] + w % 2)
        return run_tiled(runner, even_frame(mosaic), tile, progress, window)[:, :h, :w]
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    mosaic = compand(mosaic, cfg)  # windows run in the network's working domain (ModelConfig.compand)
    rows = plan_axis(h, tile_h, cfg, None if window is None else window[0])
    cols = plan_axis(w, tile_w, cfg, None if window is None else window[1])
    a = alignment(cfg)
    image = torch.empty(3, h, w, dtype=torch.float32)
    cell_sum = torch.zeros(cfg.hl_width, dtype=torch.float64) if cfg.mode == "full" else None
    windows = [(r, c) for r in rows.spans for c in cols.spans]
    for r, c in tqdm(windows, desc="tiles", disable=not progress, leave=False):
        (y0, y1), (x0, x1) = r.window, c.window
        estimate, cells = runner.low_level(mosaic[y0:y1, x0:x1].float())
        (cy0, cy1), (cx0, cx1) = r.core, c.core
        image[:, cy0:cy1, cx0:cx1] = estimate[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        if cell_sum is not None:
            (p0, p1), (q0, q1) = r.cells, c.cells
            cell_sum += cells[:, p0 - y0 // a : p1 - y0 // a, q0 - x0 // a : q1 - x0 // a].double().sum(dim=(1, 2))
    if cell_sum is None:
        return uncompand(image, cfg)
    mean = (cell_sum / (cell_count(h, cfg) * cell_count(w, cfg))).float()
    out = torch.empty_like(image)
    for y0, y1 in pointwise_blocks(h, rows.size):
        for x0, x1 in pointwise_blocks(w, cols.size):
            out[:, y0:y1, x0:x1] = runner.color(image[:, y0:y1, x0:x1], mean)
    return out


@torch.no_grad()
def run_full_frame(model: DeepISP, mosaic: torch.Tensor) -> torch.Tensor:
    """Reference path: demosaic and run the whole frame at once. mosaic [H,W] -> [3,H,W]."""
    device = next(model.parameters()).device
    h, w = mosaic.shape
    if model.cfg.packed:
        mosaic = even_frame(mosaic)
    return model(bilinear_demosaic(mosaic.to(device, torch.float32)[None, None]))[0, :, :h, :w].cpu()


def even_frame(mosaic: torch.Tensor) -> torch.Tensor:
    """mosaic [H,W] extended to even H, W by mirroring its last row/column's neighbour (what reflection
    padding does): the added row repeats row H-2, so the CFA phase is kept. Packed models work on 2x2 cells."""
    h, w = mosaic.shape
    return torch.nn.functional.pad(mosaic[None, None], (0, w % 2, 0, h % 2), mode="reflect")[0, 0]
