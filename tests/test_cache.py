"""The pre-decoded cache (`deepisp cache`, deepisp.data.cache): crops and frames read from it equal decoded ones
for every model contract, a stale source or a damaged cache file is refused in one line, rebuilding is
incremental, and datasets stay small and work in DataLoader worker processes (fork and spawn).

Tolerance of S7 crops: the raw mosaic is stored as round(65535 * x), within 0.5/65535 of the decoded value; the
conditioning multiplies that by at most its metering gain times the reference colour map's largest absolute row
sum (white balance gains are <= 1), and bilinear demosaicing averages. `_tolerance` is that bound plus 1e-6 of
float32 round-off. MSR samples and S7 targets are stored exactly and compared exactly.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepisp.cfa import sample
from deepisp.cli import main
from deepisp.conditioning import reference_matrix
from deepisp.data import cache as cache_module
from deepisp.data.cache import CACHE_DIRNAME, MANIFEST
from deepisp.data.dng import write_dng, write_jpeg
from deepisp.data.make_cache import cache_dataset
from deepisp.data.msr import MSRDataset, make_msr_layout
from deepisp.data.s7 import S7Dataset
from deepisp.data.synthetic import BLACK_LEVEL, WHITE_LEVEL
from deepisp.errors import DeepISPError
from deepisp.model import ModelConfig
from deepisp.reference_camera import camera_from_srgb
from deepisp.train import TrainConfig, make_dataset
from tests.conftest import smooth_photo

# Canon EOS 5D Mark IV's XYZ->camera matrix (LibRaw's colordata.cpp), far from the S7's: a real colour map.
CANON = np.array([[6446, -366, -864], [-4436, 12204, 2513], [-952, 2496, 6348]]) / 10000.0
CONTRACTS = {
    "raw": None,
    "jdd": ModelConfig(mode="jdd", n_ll=2, n_hl=0, width=8, hl_width=8),
    "full estimate": ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8),
    "full as_shot": ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8, white_balance="as_shot"),
    "full as_shot metered": ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8, white_balance="as_shot", exposure="metered"),
}
CROP = 48


def _write_canon_scene(folder: Path) -> None:
    """A dark low-light scene of another camera (Canon matrix), without as-shot white balance, whose JPEG is a
    few pixels smaller than the raw (an odd width): registered at an offset, conditioned with the estimated
    white balance, a real colour map and a large metering gain."""
    folder.mkdir()
    photo = smooth_photo(200, 264, seed=7)
    linear = (photo / 255.0) ** 2.2
    mosaic = sample((linear @ camera_from_srgb(CANON).T) / np.array([2.0, 1.0, 1.5]), "RGGB") * 0.03
    dn = np.round(BLACK_LEVEL + np.clip(mosaic, 0, 1) * (WHITE_LEVEL - BLACK_LEVEL)).astype(np.uint16)
    write_dng(folder / "short_exposure.dng", dn, black_level=BLACK_LEVEL, white_level=WHITE_LEVEL, color_matrix=CANON, as_shot_neutral=None)
    write_jpeg(folder / "medium_exposure.jpg", photo[:196, :259])


@pytest.fixture(scope="module")
def s7_data(s7_root, tmp_path_factory) -> Path:
    """The 4 synthetic S7 scenes (S7 matrix, as-shot white balance) plus the Canon scene; a copy, so no cache
    lands in the session's shared s7_root."""
    root = tmp_path_factory.mktemp("s7c") / "S7"
    shutil.copytree(s7_root, root)
    _write_canon_scene(root / "29990101_000000")
    return root


@pytest.fixture(scope="module")
def s7_cache(s7_data, tmp_path_factory) -> Path:
    """A cache of both pairs kept outside the data folder, so datasets without `cache=` still decode."""
    cache = tmp_path_factory.mktemp("s7cache") / "cache"
    report = cache_dataset(s7_data, cache, pairs=("low_light", "mimic"), progress=False)
    assert report.decoded == report.frames == 4 + 5  # mimic: the Canon scene has no medium raw
    return cache


def _tolerance(ds: S7Dataset, i: int, cfg: ModelConfig | None) -> float:
    facts = ds._cached.meta(i)
    if cfg is None or cfg.mode == "jdd":
        gain, matrix = 1.0, np.eye(3)
    else:
        gain = facts.gain if cfg.exposure == "metered" else 1.0
        matrix = reference_matrix(facts.camera_matrix) if cfg.white_balance == "as_shot" else np.eye(3)
    return 0.5 / 65535 * gain * max(1.0, np.abs(matrix).sum(axis=1).max()) + 1e-6


@pytest.mark.parametrize("contract", CONTRACTS)
def test_s7_crops_and_frames_from_the_cache_equal_decoded_ones(contract, s7_data, s7_cache):
    cfg = CONTRACTS[contract]
    decoded = S7Dataset(s7_data, split="all", crop=CROP, model_config=cfg)
    cached = S7Dataset(s7_data, split="all", crop=CROP, model_config=cfg, cache=s7_cache)
    assert decoded._cached is None and cached._cached is not None
    canon = len(cached) - 1
    assert cached._size(canon) == (196, 259)  # registered at a (2, 2) offset of the 200x264 raw
    for i in range(len(cached)):
        tol = _tolerance(cached, i, cfg)
        for seed in range(3):
            (a_in, a_t), (b_in, b_t) = (ds.crop_pair(i, np.random.default_rng([seed, i])) for ds in (decoded, cached))
            assert torch.equal(a_t, b_t)
            assert (a_in - b_in).abs().max().item() <= tol, (contract, i, seed)
        (a_mosaic, a_t), (b_mosaic, b_t) = decoded.frame(i), cached.frame(i)
        assert a_mosaic.shape == b_mosaic.shape and torch.equal(a_t, b_t)
        assert np.abs(a_mosaic - b_mosaic).max() <= tol
        assert (decoded[i][0] - cached[i][0]).abs().max().item() <= tol
    assert not cached._cache  # memory maps only, no decoded frames kept


def test_the_cache_stores_what_conditioning_needs(s7_data, s7_cache):
    """The Canon scene exercises what the S7 scenes cannot: estimated white balance, a colour map, metering."""
    ds = S7Dataset(s7_data, split="all", cache=s7_cache)
    canon = ds._cached.meta(len(ds) - 1)
    assert canon.camera_wb is None and canon.gain > 4
    assert np.abs(reference_matrix(canon.camera_matrix) - np.eye(3)).max() > 0.1
    s7 = ds._cached.meta(0)
    assert s7.camera_wb is not None and np.abs(reference_matrix(s7.camera_matrix) - np.eye(3)).max() < 1e-3


def test_msr_samples_from_the_cache_are_bit_exact(tmp_path):
    photos = []
    for k in range(4):
        photos.append(tmp_path / f"p{k}.png")
        Image.fromarray(smooth_photo(90, 120, k)).save(photos[-1])
    root = tmp_path / "MSR-Demosaicing"
    make_msr_layout(root, photos, pattern="GBRG", portrait=[1], counts=(2, 1, 1))
    make_msr_layout(root, photos[:2], camera="canon", pattern="BGGR", input_channels=1, first_id=101)
    report = cache_dataset(root, progress=False)
    assert report.frames == report.decoded == 2 * (4 + 2)  # both cameras, both noise variants
    # The default cache is found by itself; a dataset of a copy of the root without it decodes.
    plain_root = tmp_path / "plain" / "MSR-Demosaicing"
    shutil.copytree(root, plain_root, ignore=shutil.ignore_patterns(CACHE_DIRNAME))
    for camera, split, noise in (("panasonic", "train", True), ("panasonic", "test", False), ("canon", "test", True)):
        cached = MSRDataset(root, camera, split, noise, crop=32, flips=True)
        decoded = MSRDataset(plain_root, camera, split, noise, crop=32, flips=True)
        assert cached._cached is not None and decoded._cached is None
        for i in range(len(cached)):
            a, b = cached.sample(i), decoded.sample(i)
            assert (a.pattern, a.rotated) == (b.pattern, b.rotated)
            assert np.array_equal(a.mosaic, b.mosaic) and np.array_equal(a.target, b.target)
            for seed in range(3):
                x, y = (ds.crop_pair(i, np.random.default_rng(seed)) for ds in (cached, decoded))
                assert all(torch.equal(u, v) for u, v in zip(x, y))
        assert not cached._cache


def test_a_changed_source_is_refused_until_the_cache_is_rebuilt(s7_data, tmp_path):
    root = tmp_path / "S7"
    shutil.copytree(s7_data, root)
    assert cache_dataset(root, progress=False).decoded == 5
    ds = S7Dataset(root, split="all")  # the default cache is found by itself
    assert ds._cached is not None
    jpg = ds.scenes[1].files[("medium_exposure", "jpeg")]
    st = jpg.stat()
    os.utime(jpg, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DeepISPError, match=r"changed since it was cached.*rerun `deepisp cache --data .* --pair low_light`") as e:
        S7Dataset(root, split="all")
    assert "\n" not in str(e.value)
    report = cache_dataset(root, progress=False)
    assert (report.frames, report.decoded) == (5, 1)  # incremental: only the changed scene
    assert cache_dataset(root, progress=False).decoded == 0
    S7Dataset(root, split="all")
    with pytest.raises(DeepISPError, match=r"s7/mimic/.* is not in the cache .*--pair mimic"), pytest.warns(UserWarning, match="skipping"):
        S7Dataset(root, split="all", pair="mimic")


@pytest.mark.parametrize("damage", ["missing target", "truncated mosaic", "not npy", "manifest"])
def test_a_damaged_cache_is_a_one_line_error(damage, s7_data, tmp_path):
    root = tmp_path / "S7"
    shutil.copytree(s7_data, root, ignore=shutil.ignore_patterns("29990101_000000"))
    cache = tmp_path / "cache"
    cache_dataset(root, cache, progress=False)
    entry = next((cache / "s7" / "low_light").iterdir())
    if damage == "missing target":
        (entry / "target.npy").unlink()
    elif damage == "truncated mosaic":
        data = (entry / "mosaic.npy").read_bytes()
        (entry / "mosaic.npy").write_bytes(data[: len(data) // 2])
    elif damage == "not npy":
        (entry / "mosaic.npy").write_bytes(b"\x00garbage" * 100)
    else:
        (cache / MANIFEST).write_text('{"format": "deepisp-cache", "version": 1, "entries": {"s7/low_light/x": {}}}')
    with pytest.raises(DeepISPError, match=r"(missing or damaged|is damaged).*(rerun|rebuild the cache with) `deepisp cache --data") as e:
        S7Dataset(root, split="all", cache=cache)
    assert "\n" not in str(e.value)
    assert cache_dataset(root, cache, progress=False).decoded == (4 if damage == "manifest" else 1 if damage == "missing target" else 0)


def test_a_cache_of_other_decoding_code_is_refused_and_rebuilt(s7_data, tmp_path, monkeypatch):
    root = tmp_path / "S7"
    shutil.copytree(s7_data, root, ignore=shutil.ignore_patterns("29990101_000000"))
    cache = tmp_path / "cache"
    cache_dataset(root, cache, progress=False)
    monkeypatch.setattr(cache_module, "decoder_fingerprint", lambda: "another version")  # as if raw.py had changed
    with pytest.raises(DeepISPError, match=r"made by another version of deepisp's raw decoding .*rebuild the cache with `deepisp cache"):
        S7Dataset(root, split="all", cache=cache)
    assert cache_dataset(root, cache, progress=False).decoded == 4
    S7Dataset(root, split="all", cache=cache)


def test_no_cache_where_one_is_named(s7_data, tmp_path):
    with pytest.raises(DeepISPError, match=r"no deepisp cache at .*: build it with `deepisp cache --data .* --cache"):
        S7Dataset(s7_data, split="all", cache=tmp_path / "nothing")


def test_datasets_are_small_and_work_in_worker_processes(s7_data, s7_cache):
    cfg = CONTRACTS["full as_shot metered"]
    ds = S7Dataset(s7_data, split="all", crop=CROP, model_config=cfg, cache=s7_cache)
    expected = [ds[i] for i in range(len(ds))]
    assert len(pickle.dumps(ds)) < 20_000  # entries only: the memory maps are not pickled
    for context in ("fork", "spawn"):
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1, multiprocessing_context=context)
        for (x, t), (ex, et) in zip(loader, expected, strict=True):
            assert torch.equal(x, ex) and torch.equal(t, et)


def test_training_reads_the_named_cache(s7_data, s7_cache):
    cfg = CONTRACTS["full estimate"]
    ds = make_dataset(TrainConfig(data=str(s7_data), cache=str(s7_cache), crop=CROP), cfg, "train")
    assert ds._cached is not None and ds._cached.cache_dir == s7_cache


def test_cache_command_end_to_end(s7_data, tmp_path, capsys):
    root = tmp_path / "S7"
    shutil.copytree(s7_data, root)
    assert main(["cache", "--data", str(root), "--quiet"]) == 0
    assert "5 frames, 5 decoded now, 0 already cached" in capsys.readouterr().out
    assert (root / CACHE_DIRNAME / MANIFEST).is_file()
    assert main(["cache", "--data", str(root), "--pair", "low_light", "mimic", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "9 frames, 4 decoded now, 5 already cached" in out.out
    assert "warning: skipped 29990101_000000" in out.err  # the Canon scene has no medium raw for mimic
    (tmp_path / "empty").mkdir()
    for bad, match in ((tmp_path / "none", "not found"), (tmp_path / "empty", "neither an S7-ISP layout")):
        assert main(["cache", "--data", str(bad), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
