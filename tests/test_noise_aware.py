"""Noise-aware JDD models (ModelConfig.noise_input): the noise level as constant input planes folded into
conv biases, told by the DNG NoiseProfile or --noise-profile, trained from photos whose noise is known."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.quality_jdd import run_jdd
from benchmarks.quality_methods import Method, jdd_model_method
from deepisp.cfa import mosaic
from deepisp.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, load_model, save_checkpoint
from deepisp.cli import main
from deepisp.data.dng import write_dng
from deepisp.data.photos import PhotoDataset
from deepisp.errors import DeepISPError
from deepisp.export.commands import run as export_run
from deepisp.export.gate import reference_model
from deepisp.export.metadata import ExportMetadata, describe
from deepisp.model import PRESETS, DeepISP, fold_noise_level, noise_levels
from deepisp.noise_estimate import estimate_noise_profile
from deepisp.raw import read_raw
from deepisp.tiling import run_tiled
from deepisp.train import TrainConfig, train
from tests.conftest import smooth_photo

TINY = replace(PRESETS["tiny-jdd"], noise_input=True)
MICRO = replace(PRESETS["micro-jdd"], width=16, noise_input=True)  # packed, smaller


def trained_like(cfg, seed: int = 0) -> DeepISP:
    """A model with every weight non-zero (fresh ones have zero residual convs and noise offsets)."""
    torch.manual_seed(seed)
    model = DeepISP(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i in range(13):
        Image.fromarray(smooth_photo(80, 96, i)).save(folder / f"p{i:02d}.png")
    return folder


@pytest.mark.parametrize("cfg", [TINY, MICRO], ids=["tiny", "packed"])
def test_folded_model_equals_the_noise_input_and_tiles_exactly(cfg):
    model = trained_like(cfg)
    rgb = torch.rand(2, 3, 40, 56)
    noise = torch.tensor([[0.03, 0.02], [0.0, 0.0]])
    out = model(rgb, noise)
    assert (out[0] - out[1]).abs().max() > 1e-3  # the level changes the output
    for i in range(2):
        folded = fold_noise_level(model, noise[i : i + 1])
        assert not folded.cfg.noise_input
        assert torch.allclose(folded(rgb[i : i + 1]), out[i : i + 1], atol=1e-6)
        # the host's inference and the tiled runner see an ordinary model
        assert torch.allclose(folded.unpack(folded.low_level.infer(folded.pack(rgb[i : i + 1]))[1]), out[i : i + 1], atol=1e-6)
    mosaic = torch.rand(64, 80)
    folded = fold_noise_level(model, noise_levels(5 / 255, 1e-4))
    assert torch.allclose(run_tiled(folded, mosaic, tile=16), run_tiled(folded, mosaic, tile=256), atol=1e-5)


def test_noise_levels_are_required_or_refused():
    aware, blind = trained_like(TINY), trained_like(PRESETS["tiny-jdd"])
    rgb = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="noise levels"):
        aware(rgb)
    with pytest.raises(ValueError, match="fold_noise_level"):
        aware.low_level.infer(rgb)
    with pytest.raises(ValueError, match="blind"):
        blind(rgb, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="blind"):
        fold_noise_level(blind, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="non-negative"):
        noise_levels(-0.01)
    with pytest.raises(ValueError, match="jdd"):
        replace(PRESETS["tiny-full"], noise_input=True)
    # noise_levels: (read sigma, sqrt(shot gain))
    assert torch.allclose(noise_levels(0.02, 1e-4), torch.tensor([[0.02, 0.01]]))


def test_a_blind_model_starts_its_noise_aware_twin(photo_dir, tmp_path):
    base = TrainConfig(photos=(str(photo_dir),), preset="tiny-jdd", batch=2, crop=32)
    blind_run = train(replace(base, steps=2, out=str(tmp_path / "blind")), progress=False)
    aware_run = train(replace(base, steps=1, lr=0.0, noise_aware=True, init_from=str(blind_run), out=str(tmp_path / "aware")), progress=False)
    blind, _ = load_model(blind_run)
    aware, _ = load_model(aware_run)
    assert aware.cfg.noise_input and load_checkpoint(aware_run)["train_config"]["noise_aware"]
    rgb = torch.rand(1, 3, 24, 24)
    # lr 0: still the blind weights, and zero offsets make the level irrelevant
    assert torch.equal(aware(rgb, noise_levels(0.04, 1e-3)), blind(rgb))
    # the reverse, and noise awareness without photos or for full models, are refused
    with pytest.raises(DeepISPError, match="init-from"):
        train(TrainConfig(photos=(str(photo_dir),), preset="tiny-jdd", steps=1, crop=32, init_from=str(aware_run), out=str(tmp_path / "x")), progress=False)
    with pytest.raises(DeepISPError, match="jdd presets"):
        train(TrainConfig(photos=(str(photo_dir),), preset="tiny-full", steps=1, crop=32, noise_aware=True, out=str(tmp_path / "y")), progress=False)
    # a smaller noise-aware model starts a bigger one (deepisp.model.grow): lr 0 keeps its function
    bigger = replace(aware.cfg, width=12, n_ll=5)
    grown_run = train(
        replace(base, steps=1, lr=0.0, noise_aware=True, init_from=str(aware_run), out=str(tmp_path / "grown")), progress=False, model_config=bigger
    )
    grown, _ = load_model(grown_run)
    assert grown.cfg == bigger
    with torch.no_grad():
        assert torch.allclose(grown(rgb, noise_levels(0.04, 1e-3)), aware(rgb, noise_levels(0.04, 1e-3)), atol=1e-6)
    with pytest.raises(DeepISPError, match="--photos"):
        train(TrainConfig(data=str(tmp_path), preset="tiny-jdd", steps=1, noise_aware=True, out=str(tmp_path / "z")), progress=False)


def test_photo_samples_carry_the_noise_they_were_drawn_with(photo_dir):
    plain, aware = PhotoDataset([photo_dir], "jdd", crop=64), PhotoDataset([photo_dir], "jdd", crop=64, noise_levels=True)
    measured, told = [], []
    for k in range(24):
        rgb, target = plain.crop_pair(0, np.random.default_rng([3, k]))
        rgb2, target2, noise = aware.crop_pair(0, np.random.default_rng([3, k]))
        assert torch.equal(rgb, rgb2) and torch.equal(target, target2)  # the same draws
        assert noise.shape == (2,) and (noise >= 0).all()
        # with the green sites' residual: noise std from the told levels, at the target's mean level
        green = rgb[1, 0::2, 1::2] - target[1, 0::2, 1::2]
        measured.append(float(green.std()))
        told.append(float((noise[0] ** 2 + noise[1] ** 2 * target[1].mean()).sqrt()))
    assert any(t == 0 for t in told) and max(told) > 0.01  # clean crops are told zero
    assert np.corrcoef(measured, told)[0, 1] > 0.95
    with pytest.raises(DeepISPError, match="jdd"):
        PhotoDataset([photo_dir], "full", crop=64, noise_levels=True)


def test_dng_noise_profile_round_trip(tmp_path):
    cfa = np.full((48, 64), 300, np.uint16)
    write_dng(tmp_path / "a.dng", cfa, color_matrix=np.eye(3), as_shot_neutral=(1, 1, 1), noise_profile=(2e-4, 3e-5))
    write_dng(tmp_path / "b.dng", cfa, color_matrix=np.eye(3), as_shot_neutral=(1, 1, 1))
    assert read_raw(tmp_path / "a.dng").noise_profile == pytest.approx((2e-4, 3e-5))
    assert read_raw(tmp_path / "b.dng").noise_profile is None
    write_dng(tmp_path / "absurd.dng", cfa, color_matrix=np.eye(3), as_shot_neutral=(1, 1, 1), noise_profile=(1e300, 0.0))
    assert read_raw(tmp_path / "absurd.dng").noise_profile is None  # a variance above full scale: no sensor's, so not used
    with pytest.raises(ValueError, match="noise_profile"):
        write_dng(tmp_path / "c.dng", cfa, color_matrix=np.eye(3), as_shot_neutral=(1, 1, 1), noise_profile=(-1.0, 0.0))


def test_process_tells_the_model_the_files_noise(tmp_path, capsys):
    model = trained_like(TINY)
    ckpt = tmp_path / "aware.pt"
    save_checkpoint(ckpt, model, TINY)
    cfa = (np.random.default_rng(0).random((64, 80)) * 900 + 64).astype(np.uint16)
    dng_args = dict(color_matrix=np.eye(3), as_shot_neutral=(1, 1, 1))
    write_dng(tmp_path / "tagged.dng", cfa, noise_profile=(4e-4, 1e-4), **dng_args)
    write_dng(tmp_path / "untagged.dng", cfa, **dng_args)
    common = ["--model", str(ckpt), "--bits", "16"]
    assert main(["process", str(tmp_path / "tagged.dng"), "-o", str(tmp_path / "a.png"), *common]) == 0
    assert main(["process", str(tmp_path / "untagged.dng"), "-o", str(tmp_path / "b.png"), *common, "--noise-profile", "4e-4", "1e-4"]) == 0
    assert main(["process", str(tmp_path / "tagged.dng"), "-o", str(tmp_path / "c.png"), *common, "--noise-profile", "0", "0"]) == 0
    a, b, c = (np.asarray(Image.open(tmp_path / f"{n}.png"), dtype=np.int32) for n in "abc")
    assert np.array_equal(a, b)  # the tag and the flag tell the same
    assert np.abs(a - c).max() > 0  # and the override is used
    assert "warning" not in capsys.readouterr().err
    assert main(["process", str(tmp_path / "untagged.dng"), "-o", str(tmp_path / "d.png"), *common]) == 2
    assert "NoiseProfile" in capsys.readouterr().err and not (tmp_path / "d.png").exists()
    blind = tmp_path / "blind.pt"
    save_checkpoint(blind, DeepISP(PRESETS["tiny-jdd"]), PRESETS["tiny-jdd"])
    assert main(["process", str(tmp_path / "tagged.dng"), "-o", str(tmp_path / "e.png"), "--model", str(blind), "--noise-profile", "1e-4", "0"]) == 2
    assert "noise-aware" in capsys.readouterr().err and not (tmp_path / "e.png").exists()
    # a level beyond the training range is run, with a warning saying so
    assert main(["process", str(tmp_path / "tagged.dng"), "-o", str(tmp_path / "f.png"), *common, "--noise-profile", "4e-3", "1e-4"]) == 0
    assert "beyond the training range" in capsys.readouterr().err and (tmp_path / "f.png").exists()


def test_export_needs_a_noise_profile_and_records_it(tmp_path, capsys):
    ckpt = tmp_path / "aware.pt"
    save_checkpoint(ckpt, trained_like(TINY), TINY)
    assert export_run("onnx", ["--model", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    assert "--noise-profile" in capsys.readouterr().err and not (tmp_path / "out").exists()
    files = {"tile": "deepisp_tile_fp32.onnx"}
    meta = describe(PRESETS["tiny-jdd"], (64, 64), (128, 128), (32, 32), "onnx", "fp32", files, noise_profile=(1e-4, 2e-5))
    assert meta.graphs["tile"]["noise_profile"]["S"] == 1e-4
    again = ExportMetadata.from_json(meta.to_json(), "test")
    assert again.graphs["tile"]["noise_profile"]["O"] == 2e-5
    plain = describe(PRESETS["tiny-jdd"], (64, 64), (128, 128), (32, 32), "onnx", "fp32", files)
    assert "noise_profile" not in plain.graphs["tile"] and plain.noise_profile is None
    # the accuracy and latency benchmarks compare exports against the model folded at their baked level
    model = trained_like(TINY)
    rgb = torch.rand(1, 3, 16, 16)
    assert torch.allclose(reference_model(model, [meta, again])(rgb), model(rgb, noise_levels(2e-5**0.5, 1e-4)), atol=1e-6)
    with pytest.raises(DeepISPError, match="noise levels"):
        reference_model(model, [meta, plain])


def test_quality_benchmark_gives_noise_aware_models_sigma(tmp_path, photo_dir):
    ckpt = tmp_path / "aware.pt"
    model = trained_like(TINY)
    save_checkpoint(ckpt, model, TINY)
    method = jdd_model_method(ckpt, 256)
    assert method.noise_aware and "noise-aware" in method.name
    seen = []

    def spy(cfa, sigma):
        seen.append(sigma)
        return method.run(cfa, sigma)

    rows, _ = run_jdd(sorted(photo_dir.iterdir())[:1], [0.0, 5.0], [Method("spy", spy, "", noise_aware=True)])
    assert seen[1:] == [0.0, 5.0 / 255]  # after the warm-up call
    cfa = (np.random.default_rng(1).random((32, 32)) * 65535).astype(np.uint16)
    expected = run_tiled(fold_noise_level(model, noise_levels(5 / 255)), torch.from_numpy((cfa / 65535).astype(np.float32)), tile=256)
    assert np.allclose(method.run(cfa, 5 / 255), expected.double().numpy())
    assert len(rows) == 2


def test_shipped_noise_aware_models_run_at_a_level_and_the_level_matters():
    shipped = [p for p in sorted(DEFAULT_CHECKPOINT.parent.glob("*.pt")) if load_model(p)[0].cfg.noise_input]
    assert shipped, "no shipped model is noise-aware"
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(smooth_photo(64, 64, 3).astype(np.float32) / 255.0).permute(2, 0, 1)[None] ** 2.2
    noisy = (mosaic(clean)[0, 0] + torch.from_numpy(rng.normal(0, 8 / 255, (64, 64)).astype(np.float32))).clamp(0, 1)
    for path in shipped:
        model, _ = load_model(path)
        told = run_tiled(fold_noise_level(model, noise_levels(8 / 255)), noisy)
        blind = run_tiled(fold_noise_level(model, noise_levels(0.0)), noisy)
        assert torch.isfinite(told).all()
        # told the true noise, it denoises better than when told there is none
        assert float(((told - clean[0]) ** 2).mean()) < float(((blind - clean[0]) ** 2).mean()), path.name


def test_noise_profile_tags_of_every_form():
    from deepisp.raw import _noise_profile

    assert _noise_profile({51041: (1e-4, 2e-5, 3e-4, 4e-5, 2e-4, 3e-5)}) == pytest.approx((2e-4, 3e-5))  # one pair per plane
    for bad in ((1e-4,), (1e-4, 2e-5, 3e-4), (-1e-4, 2e-5), (float("nan"), 0.0), b"garbage", "text"):
        assert _noise_profile({51041: bad}) is None, bad
    assert _noise_profile(None) is None and _noise_profile({}) is None


def test_fold_and_init_refusals_are_clear(photo_dir, tmp_path):
    model = trained_like(TINY)
    with pytest.raises(ValueError, match=r"\[1,2\]"):
        fold_noise_level(model, torch.zeros(2, 2))
    assert model(torch.rand(1, 3, 16, 16), torch.zeros(1, 2, dtype=torch.float64)).isfinite().all()  # a float64 level is fine
    full = tmp_path / "full.pt"
    save_checkpoint(full, DeepISP(PRESETS["tiny-full"]), PRESETS["tiny-full"])
    cfg = TrainConfig(photos=(str(photo_dir),), preset="tiny-jdd", steps=1, crop=32, noise_aware=True, init_from=str(full), out=str(tmp_path / "run"))
    with pytest.raises(DeepISPError, match="init-from"):
        train(cfg, progress=False)


def test_exported_graphs_warn_when_the_files_noise_is_not_their_baked_level(tmp_path, s7_root, capsys):
    ckpt = tmp_path / "aware.pt"
    save_checkpoint(ckpt, trained_like(TINY), TINY)
    common = ["--frame", "64", "80", "--tile", "32", "--data", str(s7_root), "--eval-images", "1"]
    assert export_run("onnx", ["--model", str(ckpt), "--out", str(tmp_path / "out"), "--noise-profile", "1e-4", "2e-5", *common]) == 0
    sidecar = tmp_path / "out" / "deepisp_onnx_fp32.json"
    cfa = (np.random.default_rng(0).random((64, 80)) * 900 + 64).astype(np.uint16)
    dng_args = dict(color_matrix=np.eye(3), as_shot_neutral=(1, 1, 1))
    write_dng(tmp_path / "same.dng", cfa, noise_profile=(1.1e-4, 2e-5), **dng_args)
    write_dng(tmp_path / "other.dng", cfa, noise_profile=(4e-4, 1e-4), **dng_args)
    run = ["--backend", "onnx", "--model", str(sidecar), "--bits", "16"]
    capsys.readouterr()
    assert main(["process", str(tmp_path / "same.dng"), "-o", str(tmp_path / "a.png"), *run]) == 0
    assert "warning" not in capsys.readouterr().err  # within a quarter of the baked level
    assert main(["process", str(tmp_path / "other.dng"), "-o", str(tmp_path / "b.png"), *run]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "--noise-profile 0.0004 0.0001" in err and (tmp_path / "b.png").exists()
    write_dng(tmp_path / "untagged.dng", cfa, **dng_args)
    assert main(["process", str(tmp_path / "untagged.dng"), "-o", str(tmp_path / "c.png"), *run]) == 0
    assert "no NoiseProfile" in capsys.readouterr().err and (tmp_path / "c.png").exists()


def test_noise_is_estimated_from_a_raw_without_noise_profile(tmp_path, capsys):
    """The estimator recovers a known sensor noise on smooth scenes, and `deepisp process` uses it (with a
    warning) for a noise-aware model when the file has no NoiseProfile."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:256, 0:384] / 384
    clean = 0.05 + 0.6 * x * (0.6 + 0.4 * np.sin(3 * y))  # smooth, levels 0.05..0.65
    for shot, read_var in ((2e-4, 4e-6), (8e-4, 1e-5)):
        noisy = np.clip(clean + np.sqrt(shot * clean + read_var) * rng.standard_normal(clean.shape), 0, 1)
        s, o = estimate_noise_profile(noisy)
        for level in (0.05, 0.3):  # the noise sigma it implies, within 10%
            assert np.sqrt(s * level + o) == pytest.approx(np.sqrt(shot * level + read_var), rel=0.1)
    model = trained_like(TINY)
    ckpt = tmp_path / "aware.pt"
    save_checkpoint(ckpt, model, TINY)
    dn = np.round(64 + noisy * (1023 - 64)).astype(np.uint16)
    write_dng(tmp_path / "plain.dng", dn, color_matrix=np.eye(3), as_shot_neutral=(1, 1, 1))
    assert main(["process", str(tmp_path / "plain.dng"), "-o", str(tmp_path / "a.png"), "--model", str(ckpt)]) == 0
    assert "noise estimated from the image" in capsys.readouterr().err
