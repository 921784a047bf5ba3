"""Companded JDD models (ModelConfig.compand): the network works on the square-root-companded raw, every
runner compands the mosaic before the network and expands its image after, and exports say so."""

import json
from dataclasses import replace

import pytest
import torch
from PIL import Image

from deepisp.cfa import mosaic
from deepisp.checkpoint import load_model, save_checkpoint
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.model import PRESETS, DeepISP, ModelConfig, compand, uncompand
from deepisp.tiling import run_full_frame
from deepisp.train import TrainConfig, train
from tests.conftest import smooth_photo
from tests.test_tiling import trained_like

SQRT_JDD = ModelConfig(mode="jdd", n_ll=3, width=16, residual_scale=True, packed=True, compand="sqrt")


def test_a_companded_model_is_its_network_on_the_companded_raw():
    values = torch.tensor([-0.04, 0.0, 1e-4, 0.25, 1.0])
    assert torch.allclose(compand(values, SQRT_JDD), torch.tensor([-0.2, 0.0, 0.01, 0.5, 1.0]))
    assert torch.allclose(uncompand(compand(values, SQRT_JDD), SQRT_JDD), values)
    linear_cfg = replace(SQRT_JDD, compand="none")
    assert torch.equal(compand(values, linear_cfg), values) and torch.equal(uncompand(values, linear_cfg), values)

    companded = trained_like(SQRT_JDD, seed=1)
    linear = DeepISP(linear_cfg).eval()
    linear.load_state_dict(companded.state_dict())
    raw = torch.rand(2, 1, 24, 32)
    with torch.no_grad():
        # The input is the bilinear image of the linear raw (bilinear keeps the samples, so the model
        # re-samples the mosaic from it), the output is linear.
        assert torch.equal(mosaic(bilinear_demosaic(raw)), raw)
        want = uncompand(linear(bilinear_demosaic(compand(raw, SQRT_JDD))), SQRT_JDD)
        assert torch.allclose(companded(bilinear_demosaic(raw)), want, atol=1e-6)
        assert not torch.allclose(companded(bilinear_demosaic(raw)), linear(bilinear_demosaic(raw)), atol=1e-3)
    with pytest.raises(ValueError, match="jdd models only"):
        replace(PRESETS["tiny-full"], compand="sqrt")
    with pytest.raises(ValueError, match="compand must be"):
        replace(PRESETS["tiny-jdd"], compand="log")


def test_a_linear_checkpoint_warm_starts_a_companded_run(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(13):
        Image.fromarray(smooth_photo(64, 64, i)).save(folder / f"p{i:02d}.png")
    base = TrainConfig(photos=(str(folder),), preset="tiny-jdd", batch=2, crop=32)
    linear_run = train(replace(base, steps=2, out=str(tmp_path / "linear")), progress=False)
    sqrt_run = train(replace(base, steps=1, lr=0.0, compand="sqrt", init_from=str(linear_run), out=str(tmp_path / "sqrt")), progress=False)
    linear, _ = load_model(linear_run)
    companded, state = load_model(sqrt_run)
    assert companded.cfg == replace(linear.cfg, compand="sqrt") and state["train_config"]["compand"] == "sqrt"
    for name, value in linear.state_dict().items():  # lr 0: the same weights, in the other working domain
        assert torch.equal(companded.state_dict()[name], value), name
    with pytest.raises(DeepISPError, match="--compand is for jdd presets"):
        train(replace(base, preset="tiny-full", steps=1, compand="sqrt", out=str(tmp_path / "full")), progress=False)


def test_companded_exports_take_and_give_the_companded_domain(tmp_path, s7_root):
    """fp32 graphs through the runtime equal the PyTorch model (the runner compands and expands); the sidecar
    tells a phone app to do the same; int8 calibrates on companded windows and its cost report compares the
    expanded output with the model's."""
    pytest.importorskip("tensorflow", reason="needs the export extras")
    from deepisp.runtime import ExportedModel
    from tests.test_export import export

    model = trained_like(SQRT_JDD, seed=2)
    ckpt = tmp_path / "sqrt.pt"
    save_checkpoint(ckpt, model, SQRT_JDD)
    frame, tile = (166, 230), (64, 64)
    result = export(tmp_path / "tflite", "tflite", ["fp32", "int8"], ckpt, s7_root, frame=frame, tile=tile)
    assert result.returncode == 0, result.stdout + result.stderr
    result = export(tmp_path / "onnx", "onnx", ["fp32"], ckpt, s7_root, frame=frame, tile=tile)
    assert result.returncode == 0, result.stdout + result.stderr
    mosaic_ = torch.rand(frame) * 0.8
    for sidecar in (tmp_path / "tflite" / "deepisp_fp32.json", tmp_path / "onnx" / "deepisp_onnx_fp32.json"):
        exported = ExportedModel(sidecar)
        assert exported.cfg.compand == "sqrt"
        tile_graph = exported.metadata.graphs["tile"]
        assert "companded" in json.dumps(tile_graph["inputs"]) and "y * |y|" in json.dumps(tile_graph["outputs"])
        assert (exported.run(mosaic_) - run_full_frame(model, mosaic_)).abs().max() < 1e-4
    int8 = json.loads((tmp_path / "tflite" / "deepisp_int8.json").read_text())
    assert int8["accepted"] and int8["delegates"]["tile"]["npu"]["ok"]
    # Each point rounded alone costs little against the float output: the report compares like with like
    # (a report comparing the companded image with the linear output would sit near 20 dB).
    assert min(p["psnr_alone"] for p in int8["int8_points"]) > 35, int8["int8_points"]
