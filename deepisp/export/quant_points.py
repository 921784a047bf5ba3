"""The int8 quantization points of the tile graph, named once: the names under which calibration stores each
point's range (deepisp.export.int8.calibrated_ranges), the int8 simulation rounds (int8.QuantizedTile) and the
TFLite twin places its FakeQuants (deepisp.export.tf_graphs); torch-free.

The tile graph writes each conv over [features, image] as a conv over each plus an ADD, and the int8 graph
quantizes at these points after the demosaic (each point's int8 step is its range / 255):

    input                      the demosaic's output, the network's input
    b{k}_features              block k's ReLU features: the sum of the conv's two parts (ReLU fused into
                               the ADD); for k = 0 the conv's output itself
    b{k}_residual              block k's residual conv before tanh, likewise
    b{k}_{conv}_on_features,   the two parts of each split conv (blocks k >= 1)
    b{k}_{conv}_on_image
    b{k}_scaled                residual * s (MUL; residual_scale models), every block but the last
    b{k}_image                 the running image after the block (ADD), every block but the last: what the
                               next block reads
    residual_sum               the sum of every block's residual, s_k * tanh_k: a 1x1 conv over the
                               concatenated TANH outputs (all on TANH's fixed int8 grid, so the
                               concatenation is exact) with weights s_k
    output                     the low-level stage's image: input + residual_sum (ADD)
    hl0_on_features,           the first high-level conv's two parts
    hl0_on_image
    hl{k}                      high-level conv k after ReLU (the max-pool keeps its step)
"""

from __future__ import annotations

from deepisp.model.config import ModelConfig
from deepisp.options import Mode

INPUT = "input"
RESIDUAL_SUM = "residual_sum"
OUTPUT = "output"
# The first high-level conv: it reads [features, image], so it is split like the blocks' convs.
FIRST_HIGH_LEVEL_CONV = "hl0"


def features(k: int) -> str:
    return f"b{k}_features"


def residual(k: int) -> str:
    return f"b{k}_residual"


def scaled(k: int) -> str:
    return f"b{k}_scaled"


def image(k: int) -> str:
    return f"b{k}_image"


def high_level(k: int) -> str:
    return f"hl{k}"


def on_features(conv: str) -> str:
    """The part of split conv `conv` (features(k), residual(k) or FIRST_HIGH_LEVEL_CONV) over the features."""
    return f"{conv}_on_features"


def on_image(conv: str) -> str:
    """The part of split conv `conv` over the image."""
    return f"{conv}_on_image"


def points(cfg: ModelConfig) -> list[str]:
    """Every quantization point of a `cfg` model's tile graph, in graph order (a noise-aware model's points are
    those of the model folded at one level)."""
    names = [INPUT]
    for k in range(cfg.n_ll):
        last = k == cfg.n_ll - 1
        has_features = not last or cfg.mode == Mode.FULL  # (the last jdd block has no feature conv)
        for conv in ([features(k)] if has_features else []) + [residual(k)]:
            names += [conv] + ([on_features(conv), on_image(conv)] if k > 0 else [])
        if not last:  # the last block's residual reaches the output through residual_sum only
            names += ([scaled(k)] if cfg.residual_scale else []) + [image(k)]
    names += [RESIDUAL_SUM, OUTPUT]
    if cfg.mode == Mode.FULL:
        names += [on_features(FIRST_HIGH_LEVEL_CONV), on_image(FIRST_HIGH_LEVEL_CONV)] + [high_level(k) for k in range(cfg.n_hl)]
    return names
