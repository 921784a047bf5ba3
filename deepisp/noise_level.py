"""The noise level a noise-aware model runs at: a DNG NoiseProfile (S, O), noise variance S*x + O at normalised
raw level x, as the network's noise input, the model folded at it, and the checks of a level given by the user
(`--noise-profile`). Shared by `deepisp process`, eval, the export and its accuracy gate.
"""

from __future__ import annotations

import numpy as np
import torch

from deepisp.errors import DeepISPError
from deepisp.model.network import DeepISP
from deepisp.model.noise_input import fold_noise_level, noise_levels
from deepisp.runtime import ExportedModel


def check_noise_profile(model: DeepISP | ExportedModel, noise_profile: tuple[float, float] | None) -> None:
    """Refuse a noise profile for a model that cannot use it, and malformed ones."""
    if noise_profile is None:
        return
    if isinstance(model, ExportedModel):
        raise DeepISPError("exported graphs have their noise level baked in (the sidecar's graphs.tile.noise_profile); re-export with another --noise-profile")
    if not model.cfg.noise_input:
        raise DeepISPError("--noise-profile is for noise-aware jdd models (deepisp train --noise-aware); this model takes no noise level")
    if len(noise_profile) != 2 or not all(np.isfinite(v) and v >= 0 for v in noise_profile):
        raise DeepISPError(f"--noise-profile takes two non-negative numbers S O (variance S*x + O), got {noise_profile}")


def at_noise_level(model: DeepISP, noise_profile: tuple[float, float] | None) -> DeepISP:
    """A noise-aware model folded at `noise_profile` (S, O), a file's noise; other models as they are."""
    if not model.cfg.noise_input:
        return model
    if noise_profile is None:
        raise DeepISPError(
            "this noise-aware model needs the file's noise level; the file has no DNG NoiseProfile and the image too few flat, "
            "unclipped areas to estimate it: pass --noise-profile S O (noise variance S*x + O at normalised level x; e.g. "
            "exiftool -NoiseProfile of a DNG from the same camera and ISO)"
        )
    return fold_noise_level(model, profile_levels(noise_profile))


def profile_levels(noise_profile: tuple[float, float]) -> torch.Tensor:
    """A noise profile (S, O), variance S*x + O, as the network's noise input [1,2]: (read sigma, sqrt(S))."""
    shot, read_var = noise_profile
    return noise_levels(read_var**0.5, shot)


def at_given_noise_level(model: DeepISP, noise_profile: tuple[float, float] | None, purpose: str) -> DeepISP:
    """`at_noise_level` where the level can only come from --noise-profile (eval, export): a noise-aware model
    without one is refused, the message naming `purpose`; a blind model given one is refused too."""
    check_noise_profile(model, noise_profile)
    if model.cfg.noise_input and noise_profile is None:
        raise DeepISPError(f"this noise-aware model needs --noise-profile S O (noise variance S*x + O) {purpose}")
    return at_noise_level(model, noise_profile)
