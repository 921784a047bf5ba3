"""Training pairs simulated from photo folders: held-out validation photos, honest CFA phase under flips,
the same raw statistics as make-synthetic, training and exact resume from --photos."""

import csv
import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from deepisp.cfa import mosaic
from deepisp.checkpoint import load_checkpoint
from deepisp.data import photos as photos_module
from deepisp.data.photos import PhotoDataset, holdout
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.model import DeepISP, ModelConfig
from deepisp.reference_camera import AUTO_EXPOSURE_TARGET, SHORT_EXPOSURE_RATIO
from deepisp.train import TrainConfig, autocast_dtype, train
from tests.conftest import smooth_photo


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(13):
        img = smooth_photo(96 + 2 * i, 120, i).astype(np.int16) + rng.integers(-20, 21, (96 + 2 * i, 120, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"p{i:02d}.png")
    return folder


def test_holdout_is_a_fixed_disjoint_split(photo_dir):
    paths = sorted(photo_dir.iterdir())
    train_set, val = holdout(paths, "train"), holdout(list(reversed(paths)), "val")
    assert val and not set(train_set) & set(val)
    assert sorted(train_set + val) == paths
    assert holdout(paths, "val") == val  # independent of the order given
    with pytest.raises(DeepISPError):
        holdout(paths, "test")


@pytest.mark.parametrize("color_augment, smooth_fields", [(False, 0.0), (True, 0.0), (True, 0.5)])
def test_jdd_input_is_the_bilinear_demosaic_of_the_target_in_the_true_phase(photo_dir, monkeypatch, color_augment, smooth_fields):
    # No noise: the input must be exactly the bilinear demosaic of the target's RGGB samples, whatever
    # flips, transposes and colour changes the crop got (they are applied before mosaicing).
    monkeypatch.setattr(photos_module, "JDD_MAX_SIGMA", 0.0)
    monkeypatch.setattr(photos_module, "JDD_SHOT_RANGE", (1e-30, 1e-30))
    ds = PhotoDataset([photo_dir], "jdd", crop=64, color_augment=color_augment, smooth_fields=smooth_fields)
    for k in range(8):
        rgb, target = ds.crop_pair(k % len(ds), np.random.default_rng([1, k]))
        assert rgb.shape == target.shape == (3, 64, 64)
        expected = bilinear_demosaic(mosaic(target[None]))[0]
        assert (rgb - expected).abs().max() < 1e-4  # 16-bit quantisation only


def test_color_augmentation_changes_colours_only(photo_dir):
    # Mid tones (96..159), so doubled saturation never clips.
    photo = (96 + np.asarray(Image.open(sorted(photo_dir.iterdir())[0]).convert("RGB")) // 4).astype(np.uint8)
    saturated = permuted = 0
    for k in range(64):
        out = photos_module.augment_colors(photo, np.random.default_rng([3, k]))
        assert out.dtype == np.uint8 and out.shape == photo.shape
        assert np.array_equal(out, photos_module.augment_colors(photo, np.random.default_rng([3, k])))  # a function of the rng
        orders = [p for p in itertools.permutations(range(3)) if np.array_equal(out, photo[:, :, list(p)])]
        if not orders:
            # Saturation scaled around each pixel's mean (then maybe permuted): the means stay, up to the rounding;
            # the spread around them grows.
            saturated += 1
            assert np.abs(out.astype(float).mean(2) - photo.astype(float).mean(2)).max() <= 0.5
            assert out.astype(float).std(2).mean() > photo.astype(float).std(2).mean()
        elif orders != [(0, 1, 2)]:
            permuted += 1
    # Each change has probability 0.5 (a permutation can be the identity: 1 in 6).
    assert 16 <= saturated <= 48 and 8 <= permuted <= 40


def test_smooth_fields_are_bilinear_colour_fields_a_bilinear_demosaic_reproduces(photo_dir, monkeypatch):
    for k in range(16):
        field = photos_module.smooth_field(32, np.random.default_rng([4, k]))
        assert field.shape == (32, 32, 3) and field.dtype == np.float32 and 0.0 <= field.min() and field.max() <= 1.0
        assert np.array_equal(field, photos_module.smooth_field(32, np.random.default_rng([4, k])))
        target = torch.from_numpy(field).permute(2, 0, 1)[None]
        # Away from the one-pixel border every bilinear stencil is exact on a field bilinear in x and y.
        assert (bilinear_demosaic(mosaic(target)) - target)[..., 2:-2, 2:-2].abs().max() < 1e-6
    # The share of crops that are fields, and no photo pixels in them: without noise a field's target is
    # bilinear (zero second differences along x and along y), a photo crop's never is here (its noise of +-20 levels).
    monkeypatch.setattr(photos_module, "JDD_MAX_SIGMA", 0.0)
    monkeypatch.setattr(photos_module, "JDD_SHOT_RANGE", (1e-30, 1e-30))
    ds = PhotoDataset([photo_dir], "jdd", crop=32, smooth_fields=0.25)
    targets = [ds.crop_pair(0, np.random.default_rng([5, k]))[1] for k in range(80)]
    fields = sum(max(float(t.diff(n=2, dim=1).abs().max()), float(t.diff(n=2, dim=2).abs().max())) < 1e-5 for t in targets)
    assert 8 <= fields <= 35  # p = 0.25 of 80
    with pytest.raises(DeepISPError, match="smooth-fields"):
        PhotoDataset([photo_dir], "full", crop=32, smooth_fields=0.25)


@pytest.mark.parametrize(
    "option, value, flag", [("color_augment", True, "--color-augment"), ("smooth_fields", 0.5, "--smooth-fields"), ("clean_share", 0.5, "--clean-share")]
)
def test_crop_changes_are_recorded_and_need_photos(photo_dir, s7_root, tmp_path, option, value, flag):
    tc = TrainConfig(photos=(str(photo_dir),), preset="tiny-jdd", out=str(tmp_path / "run"), steps=2, batch=2, crop=32, **{option: value})
    train(tc, progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_config"][option] == value
    with pytest.raises(DeepISPError, match=f"{flag} .* needs --photos"):
        train(TrainConfig(data=str(s7_root), preset="tiny-full", out=str(tmp_path / "s7"), steps=1, crop=72, **{option: value}), progress=False)


def test_int8_weights_training_ships_weights_on_the_int8_grid_and_resumes_from_its_float_weights(photo_dir, tmp_path):
    from deepisp.export.int8 import int8_weight_grid

    tc = TrainConfig(photos=(str(photo_dir),), preset="tiny-jdd", out=str(tmp_path / "run"), steps=3, batch=2, crop=32, int8_weights=True, lr=1e-2)
    train(tc, progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    model = DeepISP(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    grid = int8_weight_grid(model)
    assert grid and all(torch.equal(model.state_dict()[name], w) for name, w in grid.items())  # rounded, and rounding them again changes nothing
    moved = [name for name in grid if not torch.equal(state["float_weights"][name], state["model"][name])]
    assert moved  # the float weights Adam updates lie between the grid's steps
    train(replace(tc, steps=5), resume=True, progress=False)
    resumed = load_checkpoint(tmp_path / "run" / "last.pt")
    assert resumed["step"] == 5 and not torch.equal(resumed["float_weights"][moved[0]], state["float_weights"][moved[0]])


def test_jdd_noise_covers_the_documented_range(photo_dir):
    ds = PhotoDataset([photo_dir], "jdd", crop=64)
    sigmas = []
    for k in range(40):
        rgb, target = ds.crop_pair(0, np.random.default_rng([2, k]))
        sigmas.append(float((mosaic(rgb[None]) - mosaic(target[None])).std()) * 255)
    assert min(sigmas) < 2.0 and 7.0 < max(sigmas) < 20.0
    # About JDD_CLEAN_FRACTION of the crops are noise-free (16-bit quantisation only): 40 draws, p = 0.25.
    clean = sum(s < 0.01 for s in sigmas)
    assert 3 <= clean <= 20


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_clean_share_sets_how_many_jdd_crops_are_noise_free(photo_dir, share):
    ds = PhotoDataset([photo_dir], "jdd", crop=32, noise_levels=True, clean_share=share)
    noise = [ds.crop_pair(0, np.random.default_rng([3, k]))[2] for k in range(20)]
    assert sum(bool((n == 0).all()) for n in noise) == 20 * share
    with pytest.raises(DeepISPError, match="clean-share"):
        PhotoDataset([photo_dir], "full", crop=32, clean_share=share)


def test_full_pairs_follow_make_synthetic(photo_dir):
    ds = PhotoDataset([photo_dir], "full", crop=64)
    rgb, target = ds[0]
    photo = np.asarray(Image.open(ds.paths[0]))
    h, w = target.shape[1:]
    assert torch.equal(target, torch.from_numpy(photo[:h, :w].astype(np.float32)).permute(2, 0, 1) / 255)
    # Auto exposure puts the 99th percentile of the mosaic at the target level, short = 1/4 of it.
    p99 = float(np.percentile(mosaic(rgb[None]).numpy(), 99))
    assert abs(p99 - AUTO_EXPOSURE_TARGET * SHORT_EXPOSURE_RATIO) < 0.03
    crop_rgb, crop_target = ds.crop_pair(0, np.random.default_rng(0))
    assert crop_rgb.shape == crop_target.shape == (3, 64, 64)


def test_too_small_photos_and_empty_folders_are_clear_errors(photo_dir, tmp_path):
    with pytest.raises(DeepISPError, match="no photo of at least 200px"), pytest.warns(UserWarning, match="skipping"):
        PhotoDataset([photo_dir], "jdd", crop=200)
    with pytest.warns(UserWarning, match="skipping 4 photo"):  # heights 96..120: the four under 104 px
        assert len(PhotoDataset([photo_dir], "jdd", crop=104)) + len(PhotoDataset([photo_dir], "jdd", split="val", crop=104)) == 9
    with pytest.raises(DeepISPError, match="no photos"):
        PhotoDataset([tmp_path], "full")


@pytest.mark.parametrize("preset", ["tiny-jdd", "tiny-full"])
def test_train_from_photos_resumes_exactly(photo_dir, tmp_path, preset):
    torch.set_num_threads(1)
    base = TrainConfig(photos=(str(photo_dir),), preset=preset, batch=2, crop=72, ckpt_every=2, val_every=2, lr=2e-3)
    train(TrainConfig(**{**base.__dict__, "out": str(tmp_path / "a"), "steps": 4}), progress=False)
    train(TrainConfig(**{**base.__dict__, "out": str(tmp_path / "b"), "steps": 2}), progress=False)
    train(TrainConfig(**{**base.__dict__, "out": str(tmp_path / "b"), "steps": 4}), resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert b["step"] == 4 and tuple(b["train_config"]["photos"]) == (str(photo_dir),)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    with open(tmp_path / "a" / "log.csv") as f:
        assert [r["val_loss"] != "" for r in csv.DictReader(f)] == [False, True, False, True]


def test_photos_and_data_together_is_a_clear_error(photo_dir, tmp_path):
    with pytest.raises(DeepISPError, match="--photos replaces --data"):
        train(TrainConfig(photos=(str(photo_dir),), data=str(tmp_path), preset="tiny-jdd", out=str(tmp_path / "r"), steps=1), progress=False)


def test_autocast_choice():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    native = autocast_dtype("auto", cpu) is not None
    if native:
        assert autocast_dtype("bf16", cpu) is torch.bfloat16
    else:
        with pytest.raises(DeepISPError, match="no native bf16"):
            autocast_dtype("bf16", cpu)
    with pytest.raises(DeepISPError, match="unknown --precision"):
        autocast_dtype("fp8", cpu)
