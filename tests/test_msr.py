"""MSR loader on tiny datasets written in the real layout: 16-bit precision, phase, registration, splits, errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepisp.cfa import mosaic
from deepisp.data import SHARED_DATA
from deepisp.data.msr import (
    MSRDataset,
    load_msr_sample,
    make_msr_layout,
    msr_camera_dir,
    msr_split,
    read_id_list,
)
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.pngio import read_png


def _synthetic_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Smooth random-colour 8-bit photos (the content does not matter, colour variety does)."""
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        coarse = rng.integers(0, 256, (6, 9, 3)).astype(np.uint8)
        path = folder / f"photo{k}.png"
        Image.fromarray(coarse).resize((270, 180), Image.BICUBIC).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def msr_root(tmp_path_factory) -> Path:
    """Panasonic: 6 images, GRBG, 3-channel inputs, images 1 and 4 portrait, lists 3/1/2.
    Canon: 3 images, BGGR, 1-channel inputs, image 103 portrait, all test."""
    tmp = tmp_path_factory.mktemp("msr")
    photos = _synthetic_photos(tmp, 6)
    root = tmp / "MSR-Demosaicing"
    make_msr_layout(root, photos, pattern="GRBG", input_channels=3, portrait=[0, 3], counts=(3, 1, 2))
    make_msr_layout(root, photos[3:], camera="canon", pattern="BGGR", input_channels=1, portrait=[2], first_id=101)
    return root


def _cam(root: Path, camera: str = "panasonic", noise: bool = False) -> Path:
    return root / ("Dataset_LINEAR_with_noise" if noise else "Dataset_LINEAR_without_noise") / f"bayer_{camera}"


def test_layout_on_disk(msr_root):
    for noise in (True, False):
        for camera, n in (("panasonic", 6), ("canon", 3)):
            folder = _cam(msr_root, camera, noise)
            assert len(list((folder / "input").glob("*.png"))) == n
            assert len(list((folder / "groundtruth").glob("*.png"))) == n
            assert all((folder / f).is_file() for f in ("train.txt", "validation.txt", "test.txt"))
    assert read_id_list(_cam(msr_root, "canon") / "test.txt") == ["101", "102", "103"]


# ------------------------------------------------------------------------------------------- precision


def test_ground_truth_keeps_16_bit_precision(msr_root):
    stored = read_png(_cam(msr_root) / "groundtruth" / "2.png")
    assert stored.dtype == np.uint16 and stored.max() > 255
    assert np.mean(stored % 257 != 0) > 0.9  # not 8-bit values scaled up
    s = load_msr_sample(_cam(msr_root), "2")
    values = s.target * 65535
    assert np.allclose(values, np.round(values), atol=1e-2) and np.mean(np.round(values) % 257 != 0) > 0.9


# ---------------------------------------------------------------------------------------------- phase


def test_phase_and_rotation_per_image(msr_root):
    # Landscape images keep the written phase. Portrait ones are rotated 90 degrees counter-clockwise
    # (new(i,j) = old(j, W-1-i), W even), which turns a stored GRBG into RGGB and BGGR into GRBG.
    expected = {
        ("panasonic", "1"): ("RGGB", True),
        ("panasonic", "2"): ("GRBG", False),
        ("panasonic", "4"): ("RGGB", True),
        ("canon", "101"): ("BGGR", False),
        ("canon", "103"): ("GRBG", True),
    }
    for noise in (False, True):
        for (camera, name), (pattern, rotated) in expected.items():
            s = load_msr_sample(_cam(msr_root, camera, noise), name)
            assert (s.pattern, s.rotated) == (pattern, rotated)
            assert s.mosaic.shape == (132, 220) and s.target.shape == (3, 132, 220)
            assert s.mosaic.dtype == np.float32 and s.target.dtype == np.float32
            assert 0 <= s.mosaic.min() and s.mosaic.max() <= 1 and 0 <= s.target.min() and s.target.max() <= 1


@pytest.mark.parametrize("camera", ["panasonic", "canon"])
def test_canonical_mosaic_is_exactly_the_sampled_target(msr_root, camera):
    for name in [p.stem for p in (_cam(msr_root, camera) / "input").glob("*.png")]:
        clean = load_msr_sample(_cam(msr_root, camera, noise=False), name)
        resampled = mosaic(torch.from_numpy(clean.target)[None])[0, 0].numpy()
        assert np.array_equal(clean.mosaic, resampled), name
        noisy = load_msr_sample(_cam(msr_root, camera, noise=True), name)
        assert np.array_equal(noisy.target, clean.target)
        diff = np.abs(noisy.mosaic - clean.mosaic)
        assert 0 < diff.mean() < 0.03


def test_target_is_the_stored_ground_truth_flipped(msr_root):
    # Panasonic image 2 is landscape GRBG: canonicalising mirrors it left-right, target included.
    stored = read_png(_cam(msr_root) / "groundtruth" / "2.png").astype(np.float32) / 65535
    s = load_msr_sample(_cam(msr_root), "2")
    assert np.array_equal(s.target, stored[:, ::-1].transpose(2, 0, 1))


# ---------------------------------------------------------------------------------------- lists, splits


def test_split_is_deterministic_disjoint_and_complete(msr_root):
    listed = set(read_id_list(_cam(msr_root, noise=True) / "train.txt")) | set(read_id_list(_cam(msr_root, noise=True) / "validation.txt"))
    train = msr_split(msr_root, split="train", val_count=2)
    val = msr_split(msr_root, split="val", val_count=2)
    assert len(val) == 2 and not set(train) & set(val) and set(train) | set(val) == listed
    assert msr_split(msr_root, split="train", val_count=2) == train
    assert msr_split(msr_root, split="test") == ["5", "6"]
    # Default: 10% held out (30 of the paper's 300), at least one.
    assert len(msr_split(msr_root, split="val")) == 1
    with pytest.raises(DeepISPError, match="val_count"):
        msr_split(msr_root, split="val", val_count=4)
    with pytest.raises(DeepISPError, match="test-only"):
        msr_split(msr_root, camera="canon", split="train")
    with pytest.raises(DeepISPError, match="unknown split"):
        msr_split(msr_root, split="validation")


def test_list_file_variants(tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text("386\n\n  12.png \r\n7.PNG\n386\n   \n")
    assert read_id_list(lst) == ["386", "12", "7"]


def test_root_may_be_either_level(msr_root):
    folder = _cam(msr_root, noise=True)
    assert msr_camera_dir(msr_root) == folder
    assert msr_camera_dir(msr_root / "Dataset_LINEAR_with_noise") == folder
    assert msr_camera_dir(msr_root / "Dataset_LINEAR_without_noise", noise=False) == _cam(msr_root)
    with pytest.raises(DeepISPError, match="noise=False"):
        msr_camera_dir(msr_root / "Dataset_LINEAR_without_noise")
    assert len(MSRDataset(msr_root / "Dataset_LINEAR_with_noise", camera="canon", split="test")) == 3


def test_missing_pieces_are_named(msr_root, tmp_path):
    with pytest.raises(DeepISPError, match="not a folder"):
        MSRDataset(tmp_path / "nowhere")
    with pytest.raises(DeepISPError, match="bayer_panasonic"):
        MSRDataset(tmp_path)
    with pytest.raises(DeepISPError, match="unknown MSR camera"):
        MSRDataset(msr_root, camera="nikon")
    root = tmp_path / "MSR"
    shutil.copytree(msr_root, root)
    (_cam(root, noise=True) / "validation.txt").unlink()
    with pytest.raises(DeepISPError, match="validation.txt"):
        MSRDataset(root)
    (_cam(root, noise=True) / "input" / "5.png").unlink()
    with pytest.raises(DeepISPError, match=r"input[/\\]5\.png"):
        MSRDataset(root, split="test")


# --------------------------------------------------------------------------------------------- dataset


def _find_window(full: torch.Tensor, crop: torch.Tensor) -> tuple[int, int, bool, bool]:
    """(y, x, flip_h, flip_v) such that crop is that window of full, flipped; AssertionError if none."""
    c = crop.shape[-1]
    for fh in (False, True):
        for fv in (False, True):
            un = crop.flip(-1) if fh else crop
            un = un.flip(-2) if fv else un
            for y in range(full.shape[1] - c + 1):
                for x in range(full.shape[2] - c + 1):
                    if torch.equal(full[:, y : y + c, x : x + c], un):
                        return y, x, fh, fv
    raise AssertionError("crop is not a flipped window of the full frame")


def test_dataset_items(msr_root):
    full = MSRDataset(msr_root, split="test", noise=False)
    rgb, target = full[0]
    assert rgb.shape == target.shape == (3, 132, 220) and rgb.dtype == target.dtype == torch.float32
    s = full.sample(0)
    assert torch.equal(rgb, bilinear_demosaic(torch.from_numpy(s.mosaic)[None, None])[0])
    assert torch.equal(target, torch.from_numpy(s.target))

    ds = MSRDataset(msr_root, split="test", noise=False, crop=32, flips=True)
    seen = set()
    for seed in range(6):
        x, t = ds.crop_pair(0, np.random.default_rng(seed))
        assert x.shape == t.shape == (3, 32, 32)
        y0, x0, fh, fv = _find_window(target, t)
        # the frame's pixel that lands at the crop's (0,0) is a red site: the crop is in RGGB phase, flipped or not
        assert (y0 + 31 * fv) % 2 == 0 and (x0 + 31 * fh) % 2 == 0
        un = x.flip(-1) if fh else x
        un = un.flip(-2) if fv else un
        assert torch.equal(rgb[:, y0 : y0 + 32, x0 : x0 + 32], un)  # input got the same window and flips
        seen.add((y0, x0, fh, fv))
        again = ds.crop_pair(0, np.random.default_rng(seed))
        assert torch.equal(again[0], x) and torch.equal(again[1], t)
    assert len(seen) > 1
    a = ds.crop_pair(1, np.random.default_rng(7))
    b = ds.crop_pair(1, np.random.default_rng(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(DeepISPError, match="crop"):
        MSRDataset(msr_root, split="test", crop=200).crop_pair(0, np.random.default_rng(0))


def test_training_split_with_crops(msr_root):
    ds = MSRDataset(msr_root, split="train", crop=64, flips=True, val_count=2)
    assert len(ds) == 2
    rgb, target = ds.crop_pair(1, np.random.default_rng(0))
    assert rgb.shape == target.shape == (3, 64, 64)
    assert (rgb - target).abs().mean() < 0.05  # noisy bilinear input is close to the truth


def test_real_photos(tmp_path):
    kodak = SHARED_DATA / "photos" / "kodak24"
    if not kodak.is_dir():
        pytest.skip(f"shared photos not found at {kodak.resolve()}")
    photos = sorted(kodak.glob("*.png"))[:2]
    root = make_msr_layout(tmp_path, photos, pattern="GBRG", input_channels=1, portrait=[1], counts=(0, 0, 2))
    ds = MSRDataset(root, split="test", noise=True)
    assert [ds.sample(i).pattern for i in range(2)] == ["GBRG", "BGGR"]
    assert all(ds[i][0].shape == (3, 132, 220) for i in range(2))
