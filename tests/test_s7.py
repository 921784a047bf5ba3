"""The S7-ISP loader on folders in the real layout: file variants, pairs, registration, splits, crops."""

import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from deepisp.data.s7 import PAIRS, S7Dataset, load_pair, register, scan_s7
from deepisp.data.splits import split_names
from deepisp.errors import DeepISPError


def test_scan_finds_every_scene_and_both_pairs(s7_root):
    for pair in PAIRS:
        scenes, problems = scan_s7(s7_root, pair)
        assert len(scenes) == 4 and problems == []


def test_numbered_variants_and_incomplete_scenes(s7_root, tmp_path):
    root = tmp_path / "S7-ISP-Dataset"
    shutil.copytree(s7_root, root)
    scenes = sorted(p for p in root.iterdir() if p.is_dir())
    # Variant names some distributions carry, upper-case extension included.
    (scenes[0] / "short_exposure.dng").rename(scenes[0] / "short_exposure1.DNG")
    (scenes[0] / "medium_exposure.jpg").rename(scenes[0] / "medium_exposure_2.jpg")
    (scenes[1] / "short_exposure.dng").unlink()
    found, problems = scan_s7(root, "low_light")
    assert [s.name for s in found] == [scenes[0].name] + [s.name for s in scenes[2:]]
    assert found[0].files[("short_exposure", "raw")].name == "short_exposure1.DNG"
    assert len(problems) == 1 and scenes[1].name in problems[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        S7Dataset(root, split="all")
    assert any(scenes[1].name in str(w.message) for w in caught)


def test_pair_is_registered_in_the_canonical_frame(s7_root):
    scene = scan_s7(s7_root)[0][0]
    mosaic, target = load_pair(scene, "mimic")
    assert mosaic.shape == target.shape[:2] == (100, 132)
    assert mosaic.dtype == np.float32 and 0 <= mosaic.min() and mosaic.max() <= 1
    # The medium JPEG is the source photo and the medium raw is rendered from it: brighter raw where the
    # JPEG is brighter, pixel for pixel (green site vs JPEG green), if the two are in the same frame.
    green = mosaic[0::2, 1::2].ravel()
    jpeg_green = target[0::2, 1::2, 1].ravel().astype(np.float64)
    assert np.corrcoef(green, jpeg_green)[0, 1] > 0.9
    # Mirroring the JPEG breaks that correspondence, so the check above has teeth.
    assert np.corrcoef(green, target[0::2, ::-1][:, 0::2, 1].ravel())[0, 1] < 0.9


def test_register_crops_small_border_and_refuses_big_mismatch():
    mosaic = np.zeros((100, 200), np.float32)
    m, t = register(mosaic, np.zeros((98, 197, 3), np.uint8), "x")
    assert m.shape == t.shape[:2] == (98, 197)
    with pytest.raises(DeepISPError, match="cannot be registered"):
        register(mosaic, np.zeros((50, 100, 3), np.uint8), "scene x")


def test_exif_orientation_is_undone(s7_root, tmp_path):
    root = tmp_path / "s7"
    shutil.copytree(s7_root, root)
    scene = scan_s7(root)[0][0]
    before = load_pair(scene, "low_light")[1]
    # Store the JPEG rotated with an EXIF tag saying so (Orientation 6: rotate 90 CW to display).
    jpg = scene.files[("medium_exposure", "jpeg")]
    im = Image.fromarray(np.rot90(before, 1))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(jpg, quality=95, exif=exif)
    after = load_pair(scene, "low_light")[1]
    assert after.shape == before.shape
    assert np.abs(after.astype(int) - before.astype(int)).mean() < 3


def test_split_is_paper_90_10_10_and_deterministic():
    names = [f"2016{i:04d}" for i in range(110)]
    parts = {s: split_names(names, s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [90, 10, 10]
    assert set().union(*parts.values()) == set(names)
    assert split_names(list(reversed(names)), "test") == parts["test"]


def test_crops_are_deterministic_even_and_registered(s7_root):
    ds = S7Dataset(s7_root, split="all", crop=64)
    a = ds.crop_pair(1, np.random.default_rng(5))
    b = ds.crop_pair(1, np.random.default_rng(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == a[1].shape == (3, 64, 64)
    full_in, full_tgt = ds[1]
    assert full_in.shape[1:] == full_tgt.shape[1:] == (100, 132)
    with pytest.raises(DeepISPError, match="smaller than"):
        S7Dataset(s7_root, split="all", crop=512).crop_pair(0, np.random.default_rng(0))


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(DeepISPError, match="not found"):
        scan_s7(tmp_path / "nope")
    with pytest.raises(DeepISPError, match="no S7 scenes"):
        scan_s7(tmp_path)
