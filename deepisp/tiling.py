"""Exact overlapping-tile inference: full-frame results from bounded memory, with fixed-size windows.

The windows, kept cores and owned high-level cells come from the tile plan (deepisp.tile_plan, torch-free:
the same plan drives the exported graphs in `deepisp.runtime` and a phone app). Here: the runner that
follows it (`run_tiled`, two passes: pass 1 runs each window and sums the cells it owns, whose mean is the
exact global mean; pass 2 applies W in blocks), the host's PyTorch window runner (`TorchRunner`: channels-last
activations, cache-sized row bands) and the full-frame reference (`run_full_frame`).

Exactness is tested against the full-frame model (max abs difference ~1e-6 in fp32, round-off only).

Shapes: mosaic [H,W] float in [0,1], canonical RGGB; result [3,H,W] float, the model's output space.
"""

from __future__ import annotations

from typing import Protocol

import torch
from tqdm import tqdm

from deepisp.demosaic import bilinear_demosaic, bilinear_demosaic_packed
from deepisp.errors import DeepISPError
from deepisp.model.color_transform import apply_color_transform
from deepisp.model.config import ModelConfig
from deepisp.model.domain import compand, uncompand
from deepisp.model.network import DeepISP
from deepisp.options import Mode
from deepisp.tile_plan import alignment, cell_count, frame_plan, pointwise_blocks

# Pixels per low-level band on the host: the 24-channel activations of a band this size stay in this CPU's
# cache; one whole 1104x1152 window ran at ~1.9x the time per pixel of 272x1152 bands (4313 vs 2245 ms/MP,
# old phone-full, one thread on this project's 2-core CPU).
BAND_PIXELS = 160_000


class WindowRunner(Protocol):
    """One backend's two passes on fixed-shape windows (PyTorch here, ONNX/TFLite in deepisp.runtime)."""

    cfg: ModelConfig

    def low_level(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pass 1. window [S_h,S_w] mosaic -> (image [3,S_h,S_w], cells [hl_width,h,w] or None for jdd); both
        in the network's working domain (`compand`ed mosaic in, companded image out for `cfg.compand` models)."""

    def color(self, image: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Pass 2. image [3,h,w] low-level estimate, mean [hl_width] global mean -> [3,h,w] output."""


class TorchRunner:
    """`WindowRunner` over a `DeepISP` module (fp32, on the module's device), channels-last activations."""

    def __init__(self, model: DeepISP):
        self.model, self.cfg = model, model.cfg
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def low_level(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mosaic = window.to(self.device, torch.float32)[None, None]
        # The working domain (`DeepISP.pack`); a packed model's computed at half resolution, the same values.
        working = bilinear_demosaic_packed(mosaic) if self.cfg.packed else bilinear_demosaic(mosaic)
        block_input, image = low_level_in_bands(self.model, working)
        image = self.model.unpack(image)[0].cpu()
        if self.cfg.mode == Mode.JDD:
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
        if image is None:  # channels-last like `infer`'s results, so the high-level stage keeps its fast layout
            like = {"dtype": rgb.dtype, "device": rgb.device, "memory_format": torch.channels_last}
            image = torch.empty(1, band_image.shape[1], h, w, **like)
            block_input = None if band_input is None else torch.empty(1, band_input.shape[1], h, w, **like)
        image[:, :, y0:y1] = band_image[:, :, y0 - top : y1 - top]
        if block_input is not None:
            block_input[:, :, y0:y1] = band_input[:, :, y0 - top : y1 - top]
    return block_input, image


def run_tiled(
    model: DeepISP | WindowRunner,
    mosaic: torch.Tensor,
    tile: int | tuple[int, int] | None = None,
    progress: bool = False,
    window: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The model on a full mosaic, window by window, equal to `run_full_frame` up to float round-off.

    Args:
        model: a DeepISP module, or any `WindowRunner` (an exported graph from deepisp.runtime).
        mosaic: [H,W] float in [0,1], canonical RGGB, H,W >= the model's min_size.
        tile: nominal core size (or per axis, (rows, cols)), a multiple of `alignment(cfg)`; memory grows
            with (tile + margins)^2. None: per axis, the least-overlap plan (`least_overlap_tile`).
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
    mosaic = compand(mosaic, cfg)  # windows run in the network's working domain (ModelConfig.compand)
    rows, cols = frame_plan(h, w, cfg, tile, window)
    a = alignment(cfg)
    image = torch.empty(3, h, w, dtype=torch.float32)
    cell_sum = torch.zeros(cfg.hl_width, dtype=torch.float64) if cfg.mode == Mode.FULL else None
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
