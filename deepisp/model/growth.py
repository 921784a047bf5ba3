"""Net2Net-style growth (beyond the paper): a trained model turned into a wider and/or deeper one of the same
kind that computes the same function, a warm start for a bigger preset (`deepisp train --init-from` a smaller
checkpoint; the shipped phone-jdd was grown from micro-jdd).
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from deepisp.model.config import ModelConfig
from deepisp.model.network import DeepISP
from deepisp.options import Mode


def can_grow(small: ModelConfig, big: ModelConfig) -> bool:
    """`grow` can turn a `small` model into a `big` one: the same model but for more features per block
    and/or more low-level blocks (adding blocks needs >= 2 old ones to put them between); a blind model may
    grow into a noise-aware one. jdd models have no high-level stage, so its fields are not compared."""
    free = {"width", "n_ll", "noise_input"} | ({"n_hl", "hl_width"} if small.mode == Mode.JDD else set())
    same = {k: v for k, v in asdict(small).items() if k not in free} == {k: v for k, v in asdict(big).items() if k not in free}
    return (
        same
        and big.width >= small.width
        and big.n_ll >= small.n_ll
        and (big.noise_input or not small.noise_input)
        and (big.n_ll == small.n_ll or small.n_ll >= 2)
    )


@torch.no_grad()
def grow(model: DeepISP, cfg: ModelConfig, seed: int = 0) -> DeepISP:
    """A `cfg` model (wider and/or deeper, see `can_grow`) that computes what `model` computes, Net2Net-style:
    a warm start for a bigger preset from a trained smaller one.

    Wider: each block's new feature channels get the conv's default random init for their incoming weights and
    zero outgoing ones (the next block's and the high-level stage's columns for them), so they change nothing
    until training grows those. Deeper: identity blocks are inserted, spread over the gaps between the old
    blocks (never after the last, which in a jdd model has no features): feature conv = centre-tap identity
    (the features are ReLU outputs, so ReLU gives them back), residual conv zero (tanh(0) = 0).
    """
    small = model.cfg
    if not can_grow(small, cfg):
        raise ValueError(f"cannot grow a {small} model into {cfg}: only width, n_ll (from >= 2 blocks) and a noise input may grow")
    with torch.random.fork_rng(devices=[]):  # the new channels' random init, without touching the caller's RNG
        torch.manual_seed(seed)
        big = DeepISP(cfg).to(next(model.parameters()))
    nf0, nf1 = small.n_features, cfg.n_features
    n_old, n_new = small.n_ll, cfg.n_ll
    extra = [(n_new - n_old) // max(n_old - 1, 1) + (g < (n_new - n_old) % max(n_old - 1, 1)) for g in range(n_old - 1)] + [0]
    old_index = {k + sum(extra[:k]): k for k in range(n_old)}  # new block index -> the old block it copies

    def remap_inputs(w_old: torch.Tensor, w_new: torch.Tensor, reads_features: bool) -> None:
        # [out, in, ...] weights reading concat(features, image): old columns to their new place, new ones zero.
        if not reads_features:  # the first block reads the image alone
            w_new.copy_(w_old)
            return
        w_new.zero_()
        w_new[:, :nf0] = w_old[:, :nf0]
        w_new[:, nf1:] = w_old[:, nf0:]

    old_offsets = model.low_level.bias_offsets_weight_rows() if small.noise_input else None
    new_rows = big.low_level.bias_offsets_weight_rows() if cfg.noise_input else None
    for j, block in enumerate(big.low_level.blocks):
        old = model.low_level.blocks[old_index[j]] if j in old_index else None
        if old is None:  # identity block (its noise offsets start at zero like a new model's)
            block.conv_features.weight.zero_()
            block.conv_features.weight[:, :nf1, 1, 1] = torch.eye(nf1)
            block.conv_features.bias.zero_()
            continue
        reads_features = j > 0
        if old.conv_features is not None:
            remap_inputs(old.conv_features.weight, block.conv_features.weight[:nf0], reads_features)
            block.conv_features.bias[:nf0] = old.conv_features.bias
        remap_inputs(old.conv_residual.weight, block.conv_residual.weight, reads_features)
        block.conv_residual.bias.copy_(old.conv_residual.bias)
        if old.residual_scale is not None:
            block.residual_scale.copy_(old.residual_scale)
        if old_offsets is not None:  # (new rows, and all rows of a blind model's growth, stay at their zero init)
            rows_old, rows_new = old_offsets[old_index[j]], new_rows[j]
            n_old_feat = 0 if old.conv_features is None else nf0
            n_new_feat = 0 if block.conv_features is None else nf1
            rows_new[:n_old_feat] = rows_old[:n_old_feat]
            rows_new[n_new_feat:] = rows_old[n_old_feat:]
    if cfg.mode == Mode.FULL:
        first = big.high_level.layers[1]
        remap_inputs(model.high_level.layers[1].weight, first.weight, True)
        first.bias.copy_(model.high_level.layers[1].bias)
        big.high_level.layers[2:].load_state_dict(model.high_level.layers[2:].state_dict())
        big.to_w.load_state_dict(model.to_w.state_dict())
    return big.train(model.training)
