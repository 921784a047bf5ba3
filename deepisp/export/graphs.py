"""The two exported graphs of a DeepISP model as PyTorch modules (NCHW); ONNX is exported from these.

    TileGraph:  mosaic [1,1,S_h,S_w] float in [0,1], canonical RGGB
                -> image [1,3,S_h,S_w] low-level estimate (linear RGB)
                   (+ cells [1,hl_width,S_h/A,S_w/A] high-level cell map, full mode)
                A `compand` model's graph takes the companded mosaic and gives the companded image
                (deepisp.model.compand; deepisp.tiling.run_tiled applies it around the windows).
    ColorGraph: image [1,3,h,w], mean [1,hl_width] -> [1,3,h,w] sRGB-encoded output (full mode only)

They reuse the model's own stages, so they compute exactly what `deepisp.tiling.TorchRunner` does; the
demosaic is the stride-2 form of `deepisp.demosaic` so the graph carries no full-size mask constants.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from deepisp.demosaic import bilinear_demosaic_strided
from deepisp.model.color_transform import apply_color_transform
from deepisp.model.network import DeepISP
from deepisp.options import Mode


class TileGraph(nn.Module):
    """Pass 1 on one window: mosaic [1,1,S_h,S_w] -> image (and cells, full mode); I/O names: graph_io.TileIO."""

    def __init__(self, model: DeepISP):
        super().__init__()
        self.model = model

    def forward(self, mosaic: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features, image = self.model.low_level(self.model.pack(bilinear_demosaic_strided(mosaic)))
        if self.model.cfg.mode == Mode.JDD:
            return self.model.unpack(image)
        return self.model.unpack(image), self.model.high_level(torch.cat([features, image], dim=1))


class ColorGraph(nn.Module):
    """Pass 2 on one block: image [1,3,h,w] + global mean [1,hl_width] -> [1,3,h,w]; I/O names: graph_io.ColorIO."""

    def __init__(self, model: DeepISP):
        super().__init__()
        if model.cfg.mode != Mode.FULL:
            raise ValueError("ColorGraph exists only for full-ISP models")
        self.model = model

    def forward(self, image: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return apply_color_transform(self.model.color_head(mean), image)
