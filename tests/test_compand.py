"""Companded JDD models (ModelConfig.compand): the network works on the square-root-companded raw, every
runner compands the mosaic before the network and expands its image after, and exports say so."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from deepisp.cfa import mosaic
from deepisp.checkpoint import load_model, save_checkpoint
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.model import PRESETS, DeepISP, ModelConfig, compand, fold_noise_level, noise_levels, uncompand
from deepisp.tiling import run_full_frame, run_tiled
from deepisp.train import TrainConfig, train
from tests.conftest import smooth_photo
from tests.test_tiling import trained_like

# int8 against float on the fixture's frames: 49.4 dB measured; calibrated on linear instead of companded
# windows (the bug this guards against) it gave 43.9.
INT8_MIN_PSNR = 46.0
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


def test_a_noise_aware_companded_model_folds_and_tiles_exactly():
    """The shipped combination: told its noise, folded at one level (what tiles and exports run), companded."""
    model = trained_like(replace(SQRT_JDD, noise_input=True), seed=3)
    with torch.no_grad():
        model.low_level.noise_to_bias.weight.normal_(0, 0.1)
        noise = noise_levels(0.03, 1e-4)
        folded = fold_noise_level(model, noise)
        assert folded.cfg == SQRT_JDD
        raw = torch.rand(38, 54)
        told = model(bilinear_demosaic(raw[None, None]), noise)[0]
        assert (run_tiled(folded, raw, tile=16) - told).abs().max() < 1e-5
        assert (told - model(bilinear_demosaic(raw[None, None]), noise_levels(0.0))[0]).abs().max() > 1e-3


def test_a_linear_checkpoint_warm_starts_a_companded_run(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(13):
        Image.fromarray(smooth_photo(64, 64, i)).save(folder / f"p{i:02d}.png")
    base = TrainConfig(photos=(str(folder),), preset="tiny-jdd", batch=2, crop=32)
    linear_run = train(replace(base, steps=2, out=str(tmp_path / "linear")), progress=False)
    sqrt_run = train(replace(base, steps=1, lr=0.0, compand="sqrt", init_from=str(linear_run), out=str(tmp_path / "sqrt")), progress=False)
    assert "warm-starts this 'sqrt'-domain run" in capsys.readouterr().err
    linear, _ = load_model(linear_run)
    companded, state = load_model(sqrt_run)
    assert companded.cfg == replace(linear.cfg, compand="sqrt") and state["train_config"]["compand"] == "sqrt"
    for name, value in linear.state_dict().items():  # lr 0: the same weights, in the other working domain
        assert torch.equal(companded.state_dict()[name], value), name
    with pytest.raises(DeepISPError, match="--compand is for jdd presets"):
        train(replace(base, preset="tiny-full", steps=1, compand="sqrt", out=str(tmp_path / "full")), progress=False)


@pytest.fixture(scope="module")
def companded_checkpoint(tmp_path_factory):
    model = trained_like(SQRT_JDD, seed=2)
    ckpt = tmp_path_factory.mktemp("sqrt") / "sqrt.pt"
    save_checkpoint(ckpt, model, SQRT_JDD)
    return model, ckpt


def _check_runtime(sidecar, model):
    """The exported graphs through the runtime (which compands and expands) equal the PyTorch model, and the
    sidecar tells a phone app to do the same."""
    from deepisp.runtime import ExportedModel

    exported = ExportedModel(sidecar)
    assert exported.cfg.compand == "sqrt"
    tile_graph = exported.metadata.graphs["tile"]
    assert "companded" in json.dumps(tile_graph["inputs"]) and "y * |y|" in json.dumps(tile_graph["outputs"])
    for size in (FRAME, (97, 131)):  # the export's frame, and an odd one (the runner pads packed frames)
        mosaic_ = torch.rand(size) * 0.8
        assert (exported.run(mosaic_) - run_full_frame(model, mosaic_)).abs().max() < 1e-4


FRAME, TILE = (166, 230), (64, 64)


def test_companded_onnx_export_takes_and_gives_the_companded_domain(tmp_path, s7_root, companded_checkpoint):
    from tests.test_export import export

    model, ckpt = companded_checkpoint
    result = export(tmp_path, "onnx", ["fp32"], ckpt, s7_root, frame=FRAME, tile=TILE)
    assert result.returncode == 0, result.stdout + result.stderr
    _check_runtime(tmp_path / "deepisp_onnx_fp32.json", model)


def test_companded_tflite_export_and_its_int8(tmp_path, s7_root, companded_checkpoint):
    """fp32 as for ONNX; int8 calibrates on companded windows (its accuracy against float holds), its cost
    report compares the expanded output with the model's, and the Android harness feeds it companded tiles."""
    pytest.importorskip("tensorflow", reason="needs the export extras")
    from android_harness.device_accuracy import to_graph_domain
    from tests.test_export import export

    model, ckpt = companded_checkpoint
    result = export(tmp_path, "tflite", ["fp32", "int8"], ckpt, s7_root, frame=FRAME, tile=TILE)
    assert result.returncode == 0, result.stdout + result.stderr
    _check_runtime(tmp_path / "deepisp_fp32.json", model)
    int8 = json.loads((tmp_path / "deepisp_int8.json").read_text())
    assert int8["accepted"] and int8["delegates"]["tile"]["npu"]["ok"]
    assert int8["accuracy"]["psnr_min"] > INT8_MIN_PSNR, int8["accuracy"]
    # Each point rounded alone costs little against the float output: the report compares like with like
    # (a report comparing the companded image with the linear output would sit near 20 dB).
    assert min(p["psnr_alone"] for p in int8["int8_points"]) > 35, int8["int8_points"]
    tiles = np.random.default_rng(0).uniform(0, 1, (2, 8, 8)).astype(np.float32)
    assert np.allclose(to_graph_domain(tiles, tmp_path / "deepisp_tile_int8.tflite"), np.sqrt(tiles))
