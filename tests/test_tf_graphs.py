"""The TensorFlow twin refuses a network it does not know instead of silently dropping a layer."""

import pytest
import torch.nn as nn

pytest.importorskip("tensorflow", reason="needs the export extras")

from deepisp.errors import DeepISPError  # noqa: E402
from deepisp.export.tf_graphs import tf_graphs  # noqa: E402
from deepisp.model import DeepISP, ModelConfig  # noqa: E402

TINY = ModelConfig(mode="full", n_ll=2, n_hl=2, width=8, hl_width=8)


def test_unknown_layer_is_refused():
    model = DeepISP(TINY)
    model.low_level.blocks[0].norm = nn.BatchNorm2d(8)
    with pytest.raises(DeepISPError, match="BatchNorm2d"):
        tf_graphs(model)


@pytest.mark.parametrize("edit", ["activation", "pool"])
def test_changed_high_level_stage_is_refused(edit):
    model = DeepISP(TINY)
    if edit == "activation":
        model.high_level.layers[2] = nn.Sigmoid()
    else:
        model.high_level.layers[3] = nn.MaxPool2d(3)
    with pytest.raises(DeepISPError, match="high-level stage|Sigmoid"):
        tf_graphs(model)
