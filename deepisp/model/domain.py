"""What the network takes and the domain it works in: the input check, and the working domain of `compand`
models.

`compand` (jdd models only, beyond the paper): "sqrt" makes the network work on the square-root-companded
raw: the input's measured samples are companded (x -> sign(x) sqrt|x|; bilinear interpolation keeps them, so
`forward` re-samples the mosaic from its bilinear input, compands it and demosaics again) and the network's
last image is expanded back (y -> y |y|). Input and output stay linear; only the working domain changes.
What it buys is int8: a linear image rounded at a uniform step loses the shadows that the sRGB curve
expands (phone-jdd's full-integer int8 lost 3.2 dB sRGB PSNR against the truth), a companded one is
rounded about evenly in perceptual terms, and square-root companding also makes shot noise about equally
strong at every level. Runners that work on windows (`deepisp.tiling.run_tiled`, the exported graphs)
compand the whole mosaic before the network and expand its image after (`compand`, `uncompand`); an
exported graph's input and output are in the companded domain.
"""

from __future__ import annotations

import torch

from deepisp.model.config import ModelConfig
from deepisp.options import Compand


def compand(raw: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Linear raw values (any shape, [0,1] scale) -> the network's working domain (`cfg.compand`)."""
    return raw.sign() * raw.abs().sqrt() if cfg.compand == Compand.SQRT else raw


def uncompand(image: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Inverse of `compand`: the network's image in its working domain -> linear."""
    return image * image.abs() if cfg.compand == Compand.SQRT else image


def check_input(rgb: torch.Tensor, cfg: ModelConfig) -> None:
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"DeepISP expects [B,3,H,W] bilinear RGB, got {tuple(rgb.shape)}")
    if cfg.packed and (rgb.shape[-2] % 2 or rgb.shape[-1] % 2):
        raise ValueError(f"a packed model needs even H and W, got {tuple(rgb.shape[-2:])}")
    if min(rgb.shape[-2:]) < cfg.min_size:
        raise ValueError(
            f"image {tuple(rgb.shape[-2:])} is smaller than the {cfg.min_size}x{cfg.min_size} minimum of this model ({cfg.n_hl} high-level stride-4 layers)"
        )
