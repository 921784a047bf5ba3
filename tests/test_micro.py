"""Packed (micro) presets: half-resolution working domain, same contract as every model. The packed
network equals its host (channels-last) and banded inference forms, tiles exactly, and its TensorFlow twin equals it."""

import numpy as np
import pytest
import torch

from deepisp import tiling
from deepisp.model import PRESETS, DeepISP, ModelConfig, flops_per_pixel
from deepisp.tile_plan import alignment, plan_axis
from deepisp.tiling import TorchRunner, run_full_frame, run_tiled
from tests.test_tiling import trained_like

PACKED_FULL = ModelConfig(mode="full", n_ll=3, n_hl=2, width=16, hl_width=8, residual_scale=True, packed=True)
PACKED_JDD = ModelConfig(mode="jdd", n_ll=3, width=16, residual_scale=True, packed=True)


def test_micro_presets_cost_at_most_10_kflop_per_pixel():
    for name in ("micro-full", "micro-jdd"):
        cfg = PRESETS[name]
        assert cfg.packed and flops_per_pixel(cfg) <= 10_000
    # The packed working domain: a quarter of the conv cost of the same network at full resolution.
    flat = ModelConfig(mode="jdd", n_ll=3, width=16)
    assert flops_per_pixel(ModelConfig(mode="jdd", n_ll=3, width=16, packed=True)) < flops_per_pixel(flat)


@pytest.mark.parametrize("cfg", [PACKED_FULL, PACKED_JDD], ids=["full", "jdd"])
def test_packed_model_works_on_the_2x2_packing(cfg):
    model = trained_like(cfg)
    rgb = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        features, image = model.low_level(model.pack(rgb))
    assert image.shape == (1, 12, 32, 48)
    assert torch.equal(model.unpack(model.pack(rgb)), rgb)
    # Residual-image semantics kept: zero residual convs leave the bilinear input unchanged.
    plain = DeepISP(cfg).eval()
    with torch.no_grad():
        out = plain(rgb)
    if cfg.mode == "jdd":
        assert torch.equal(out, rgb)
    with pytest.raises(ValueError, match="even"):
        model(torch.rand(1, 3, 64, 95))


@pytest.mark.parametrize("cfg", [PACKED_FULL, PACKED_JDD], ids=["full", "jdd"])
def test_packed_inference_forms_equal_the_forward(cfg, monkeypatch):
    model = trained_like(cfg)
    rgb = model.pack(torch.rand(1, 3, 90, 52))
    with torch.no_grad():
        features, image = model.low_level(rgb)
    block_input, banded = tiling.low_level_in_bands(model, rgb, band_pixels=1)
    assert torch.allclose(banded, image, atol=1e-6)
    if cfg.mode == "full":
        assert torch.allclose(block_input, torch.cat([features, image], 1), atol=1e-6)
    # Tiled (with row bands inside windows) = the whole frame, on a frame that is no multiple of anything.
    monkeypatch.setattr(tiling, "BAND_PIXELS", 200)
    mosaic = torch.rand(166, 230)
    tile = 2 * alignment(cfg)
    # Odd frames (photos, cropped raws) are extended by one mirrored row/column and cropped back.
    odd = torch.rand(167, 229)
    assert run_full_frame(model, odd).shape == (3, 167, 229)
    assert torch.allclose(run_tiled(model, odd, tile=tile), run_full_frame(model, odd), atol=1e-5)
    assert len(plan_axis(166, tile, cfg).spans) > 1
    full = run_full_frame(model, mosaic)
    assert full.abs().max() < 4
    assert torch.allclose(run_tiled(model, mosaic, tile=tile), full, atol=1e-5)


@pytest.mark.parametrize("cfg", [PACKED_FULL, PACKED_JDD], ids=["full", "jdd"])
def test_tf_twin_equals_the_packed_model(cfg):
    tf = pytest.importorskip("tensorflow", reason="needs the export extras")
    from deepisp.export.tf_graphs import tf_graphs

    model = trained_like(cfg, seed=2)
    mosaic = torch.rand(64, 96)
    out = tf_graphs(model)["tile"].serve(tf.constant(mosaic.numpy()[None, :, :, None]))
    image, cells = TorchRunner(model).low_level(mosaic)
    assert np.abs(out["image"].numpy()[0].transpose(2, 0, 1) - image.numpy()).max() < 1e-5
    if cfg.mode == "full":
        assert np.abs(out["cells"].numpy()[0].transpose(2, 0, 1) - cells.numpy()).max() < 1e-5


def test_packed_model_exports_exact_fp32_and_delegable_fp16_int8(tmp_path, s7_root):
    """Through export/to_tflite.py and to_onnx.py as a user runs them: fp32 tiled graphs equal the PyTorch
    model, fp16 runs wholly on the GPU delegate, full-integer int8 passes the NPU check."""
    pytest.importorskip("tensorflow", reason="needs the export extras")
    import json

    from deepisp.checkpoint import save_checkpoint
    from deepisp.runtime import ExportedModel
    from tests.test_export import export

    model = trained_like(PACKED_FULL, seed=4)
    ckpt = tmp_path / "micro.pt"
    save_checkpoint(ckpt, model, PACKED_FULL)
    frame, tile = (166, 230), 64
    for backend, variants in (("tflite", ["fp32", "fp16", "int8"]), ("onnx", ["fp32"])):
        result = export(tmp_path / backend, backend, variants, ckpt, s7_root, frame=frame, tile=(tile, tile))
        assert result.returncode == 0, result.stdout + result.stderr
    for sidecar in (tmp_path / "tflite" / "deepisp_fp32.json", tmp_path / "onnx" / "deepisp_onnx_fp32.json"):
        exported = ExportedModel(sidecar)
        assert exported.metadata.windows_per_frame > 1
        for size in (frame, (98, 130)):
            mosaic = torch.rand(size)
            assert (exported.run(mosaic) - run_full_frame(model, mosaic)).abs().max() < 1e-4
    fp16 = json.loads((tmp_path / "tflite" / "deepisp_fp16.json").read_text())
    assert fp16["delegates"]["tile"]["gpu"]["ok"] and fp16["delegates"]["color"]["gpu"]["ok"]
    int8 = json.loads((tmp_path / "tflite" / "deepisp_int8.json").read_text())
    assert int8["delegates"]["tile"]["npu"]["ok"]
