"""The noise-level input of noise-aware jdd models (`noise_input`, beyond the paper, which trains its JDD network
blind): the levels a sensor's noise model gives, and `fold_noise_level`, which bakes one level into a model.

`noise_input` (jdd models only, beyond the paper, which trains its JDD network blind): the model
is told the noise level, FFDNet-style, as two constant planes appended to every block's input: the read-noise
standard deviation and the square root of the shot-noise gain, (sqrt(b), sqrt(a)) for a sensor whose
variance at linear level x is a*x + b on the [0,1] scale (a DNG's NoiseProfile; `noise` [B,2] below, times
NOISE_INPUT_SCALE). A 3x3 conv of a constant plane under reflection padding is the constant times the
kernel's sum, so the planes are kept as what they are, a per-image offset of every block's conv bias
(`LowLevelStage.noise_to_bias`, zero at init: a noise-aware model starts as its blind twin).
`fold_noise_level` bakes one level into those biases and gives an ordinary model: what tiling, `deepisp
process` and the exported graphs run, exact for that level.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from deepisp.model.network import DeepISP


def noise_levels(read_sigma: float, shot_gain: float = 0.0) -> torch.Tensor:
    """[1,2] noise-level input for a sensor with variance shot_gain*x + read_sigma^2 at linear level x, all on
    the [0,1] scale (a DNG NoiseProfile's (S, O) are (shot_gain, read_sigma^2))."""
    if not (read_sigma >= 0 and shot_gain >= 0):
        raise ValueError(f"noise levels must be non-negative, got read sigma {read_sigma}, shot gain {shot_gain}")
    return torch.tensor([[read_sigma, shot_gain**0.5]], dtype=torch.float32)


@torch.no_grad()
def fold_noise_level(model: DeepISP, noise: torch.Tensor) -> DeepISP:
    """A blind copy of a noise-aware model with one noise level [1,2] baked into its conv biases: the same
    output for that level (exactly: the level's planes are constant), and a plain jdd model for tiling and
    export. A blind model is returned as is (and must be given no level)."""
    if not model.cfg.noise_input:
        model.low_level.bias_offsets(noise)  # refuses a level for a blind model
        return model
    if tuple(noise.shape) != (1, 2):
        raise ValueError(f"fold_noise_level bakes one noise level [1,2], got {tuple(noise.shape)}")
    folded = DeepISP(replace(model.cfg, noise_input=False)).to(model.low_level.noise_to_bias.weight)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("low_level.noise_to_bias.")}
    folded.load_state_dict(state)
    for block, offset in zip(folded.low_level.blocks, model.low_level.bias_offsets(noise)):
        n = 0 if block.conv_features is None else block.conv_features.out_channels
        if block.conv_features is not None:
            block.conv_features.bias += offset[0, :n]
        block.conv_residual.bias += offset[0, n:]
    return folded.train(model.training)
