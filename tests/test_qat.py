"""Quantization-aware fine-tuning: the simulation rounds like TFLite's int8 tile graph, and `--qat` trains
through it into an ordinary checkpoint."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from deepisp.checkpoint import load_checkpoint, load_model
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.qat import TANH_STEP, ActivationQuant, QuantizedTile, quantize_tanh, quantize_weight
from deepisp.train import TrainConfig, train
from tests.conftest import smooth_photo
from tests.test_micro import PACKED_FULL
from tests.test_tiling import trained_like


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


def test_int8_grids():
    t = quantize_tanh(torch.tanh(torch.randn(1000)))
    assert torch.allclose(t / TANH_STEP, (t / TANH_STEP).round(), atol=1e-4)
    w = quantize_weight(torch.randn(4, 3, 3, 3))
    for row in w:  # symmetric per output channel: max |w| is code 127
        step = row.abs().max() / 127
        assert torch.allclose(row / step, (row / step).round(), atol=1e-3)
    q = ActivationQuant().train()
    x = torch.rand(10000) * 0.3 + 0.1  # a range that excludes 0: int8's range is widened to hold it
    y = q(x)
    assert q.lo == 0 and torch.isclose(q.hi, x.max()) and len(torch.unique(y)) <= 256
    assert rms(y, x) < (x.max() / 255).item()


def test_simulation_rounds_like_the_int8_tflite_graph(tmp_path):
    """Calibrated on the same windows, the simulated tile graph's error against float is the size of the
    real full-integer TFLite graph's (the simulation rounds at the same tensors with similar steps)."""
    pytest.importorskip("tensorflow", reason="needs the export extras")
    from deepisp.export.calibration import calibration_windows
    from deepisp.export.tf_graphs import tf_graphs
    from deepisp.export.tflite_export import build
    from deepisp.runtime import TfliteRunner
    from deepisp.tiling import TorchRunner

    model = trained_like(PACKED_FULL, seed=3)
    photo = smooth_photo(160, 224, seed=5).astype(np.float32) / 255
    mosaic = np.zeros(photo.shape[:2], np.float32)  # RGGB, a realistic low-light level
    for (dy, dx), c in (((0, 0), 0), ((0, 1), 1), ((1, 0), 1), ((1, 1), 2)):
        mosaic[dy::2, dx::2] = 0.25 * photo[dy::2, dx::2, c]
    window = (64, 64)
    calibration = calibration_windows([mosaic[:, :128]], window, 8, input_max=0.25)
    tile = build(tf_graphs(model), "int8", window, PACKED_FULL.hl_width, calibration, layer_report=0).graphs["tile"]
    (tmp_path / "tile.tflite").write_bytes(tile)
    int8 = TfliteRunner(PACKED_FULL, {"tile": tmp_path / "tile.tflite"})

    sim = QuantizedTile(model).train()
    with torch.no_grad():  # one batch of every calibration window: its ranges are the windows' min/max
        sim.tile(bilinear_demosaic(torch.from_numpy(np.stack(calibration))[:, None]))
    sim.eval()
    test = torch.from_numpy(mosaic[:64, 160:224].copy())  # not in the calibration windows
    float_image, float_cells = TorchRunner(model).low_level(test)
    int8_image, int8_cells = int8.low_level(test)
    with torch.no_grad():
        sim_image, sim_cells = (t[0] for t in sim.tile(bilinear_demosaic(test[None, None])))
    for sim_out, int8_out, float_out in ((sim_image, int8_image, float_image), (sim_cells, int8_cells, float_cells)):
        err_sim, err_int8 = rms(sim_out, float_out), rms(int8_out, float_out)
        assert 0.5 < err_sim / err_int8 < 2, (err_sim, err_int8)


def test_train_qat_fine_tunes_into_an_ordinary_checkpoint(s7_root, tmp_path):
    torch.set_num_threads(1)
    base = TrainConfig(data=str(s7_root), preset="tiny-full", batch=2, crop=72, ckpt_every=2, val_every=2, lr=2e-3, steps=2, out=str(tmp_path / "a"))
    with pytest.raises(DeepISPError, match="--init-from"):
        train(replace(base, qat=True), progress=False)
    train(base, progress=False)
    qat = replace(base, qat=True, init_from=str(tmp_path / "a" / "last.pt"), out=str(tmp_path / "b"), steps=1)
    train(qat, progress=False)
    train(replace(qat, steps=2), resume=True, progress=False)  # the ranges come back with the run
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert b["step"] == 2 and b["train_config"]["qat"] and b["qat_ranges"]["input.seen"]
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    model, _ = load_model(tmp_path / "b" / "last.pt")  # a plain DeepISP: exports and runs like any other
    assert type(model).__name__ == "DeepISP"
