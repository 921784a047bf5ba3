"""The high-level stage's output map (paper eq. 1) and its initialisation (paper IV-C): the per-image quadratic
colour transform W [B,3,10] applied to the monomials of triu([r,g,b,1]^T [r,g,b,1]), and the per-image affine
regression the training averages into W's initial value.
"""

from __future__ import annotations

import torch

from deepisp.model.config import MONOMIAL_ORDER, N_MONOMIALS

# Columns of W that hold the affine part (r, g, b, 1): where the paper's affine initialisation goes.
AFFINE_COLUMNS = (MONOMIAL_ORDER.index("r"), MONOMIAL_ORDER.index("g"), MONOMIAL_ORDER.index("b"), MONOMIAL_ORDER.index("1"))


def quadratic_monomials(rgb: torch.Tensor) -> torch.Tensor:
    """The 10 monomials of triu([r,g,b,1]^T [r,g,b,1]) per pixel.

    Args:
        rgb: [B,3,H,W].
    Returns:
        [B,10,H,W] in MONOMIAL_ORDER: r², rg, rb, r, g², gb, g, b², b, 1.
    """
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    one = torch.ones_like(r)
    return torch.cat([r * r, r * g, r * b, r, g * g, g * b, g, b * b, b, one], dim=1)


def apply_color_transform(w: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Apply the per-image quadratic colour transform, eq. (1) of the paper.

    Args:
        w: [B,3,10], row = output channel (r,g,b), column = monomial in MONOMIAL_ORDER.
        rgb: [B,3,H,W] image to transform.
    Returns:
        [B,3,H,W], out[:, c] = sum_m w[:, c, m] * monomial_m.
    """
    b, _, h, wd = rgb.shape
    mono = quadratic_monomials(rgb).reshape(b, N_MONOMIALS, h * wd)
    return torch.bmm(w, mono).reshape(b, 3, h, wd)


def identity_affine() -> torch.Tensor:
    """[3,4] affine map that leaves r, g, b unchanged."""
    return torch.cat([torch.eye(3), torch.zeros(3, 1)], dim=1)


def fit_affine(rgb_in: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Least-squares affine colour map from input to target pixels (the paper's per-image regression).

    Args:
        rgb_in: [3,H,W] input pixels; target: [3,H,W] target pixels (same grid).
    Returns:
        [3,4] A with target ≈ A @ [r,g,b,1].
    """
    x = rgb_in.reshape(3, -1).T.double()
    x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    y = target.reshape(3, -1).T.double()
    solution = torch.linalg.lstsq(x, y).solution  # [4,3]
    return solution.T.float()
