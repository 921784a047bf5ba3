"""deepisp.data.synthetic: photos -> scenes in the real S7-ISP layout, read back through raw.py/LibRaw."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rawpy
import torch
from PIL import Image

from deepisp.cfa import CFA_PATTERNS
from deepisp.data.synthetic import (
    BLACK_LEVEL,
    MANIFEST_NAME,
    WHITE_LEVEL,
    find_photos,
    make_synthetic,
    scene_name,
)
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.raw import read_raw

S7_FILES = {"short_exposure.dng", "short_exposure.jpg", "medium_exposure.dng", "medium_exposure.jpg"}


def textured_photo(h: int, w: int, seed: int) -> np.ndarray:
    """[H,W,3] uint8: R ramps left-right, B top-bottom, G is texture, so each channel is identifiable."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    g = 0.5 + 0.3 * np.sin(12 * x + 7 * y + seed) * np.cos(9 * y)
    rgb = np.stack([0.1 + 0.8 * x, g, 0.1 + 0.8 * y], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(textured_photo(96, 128, 0)).save(folder / "a.png")
    Image.fromarray(textured_photo(97, 129, 1)).save(folder / "b.PNG")  # odd size: cropped to even
    (folder / "notes.txt").write_text("not a photo")
    return find_photos([folder])


def dng_pixels(path: Path) -> np.ndarray:
    with rawpy.imread(str(path)) as raw:
        return raw.raw_image_visible.copy()


def test_find_photos(tmp_path: Path, photos: list[Path]) -> None:
    assert [p.name for p in photos] == ["a.png", "b.PNG"]
    assert find_photos([photos[1], photos[0].parent]) == photos  # files accepted, duplicates dropped
    with pytest.raises(DeepISPError, match="no photos"):
        find_photos([tmp_path / "photos" / "notes.txt"])
    with pytest.raises(DeepISPError, match="not found"):
        find_photos([tmp_path / "missing"])


def test_exact_s7_layout_and_manifest(tmp_path: Path, photos: list[Path]) -> None:
    out = tmp_path / "S7"
    scenes = make_synthetic(photos, out, seed=0, progress=False)

    assert [s.name for s in scenes] == ["20260101_000000", "20260101_000100"] == [scene_name(0), scene_name(1)]
    assert {p.name for p in out.iterdir()} == {*(s.name for s in scenes), MANIFEST_NAME}
    for s in scenes:
        assert {p.name for p in s.iterdir()} == S7_FILES  # no temporary files left either
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert {k: v["source"] for k, v in manifest["scenes"].items()} == {s.name: str(p.resolve()) for s, p in zip(scenes, photos)}
    params = manifest["scenes"]["20260101_000000"]
    assert 1.6 <= params["wb_gains"][0] <= 2.4 and params["wb_gains"][1] == 1.0 and 1.3 <= params["wb_gains"][2] <= 2.0
    assert 1e-4 <= params["noise_shot_a"] <= 1e-3 and 1e-6 <= params["noise_read_b"] <= 1e-5
    assert manifest["scenes"]["20260101_000100"]["size"] == [96, 128]


def test_dngs_read_back_with_levels_and_quarter_exposure(tmp_path: Path, photos: list[Path]) -> None:
    scene = make_synthetic(photos[:1], tmp_path / "S7", seed=0, progress=False)[0]
    params = json.loads((tmp_path / "S7" / MANIFEST_NAME).read_text())["scenes"][scene.name]
    for name in ("short_exposure", "medium_exposure"):
        raw = read_raw(scene / f"{name}.dng")
        assert raw.mosaic.shape == (96, 128) and raw.pattern == "RGGB"
        assert raw.black_level == (BLACK_LEVEL,) * 4 and raw.white_level == WHITE_LEVEL
        np.testing.assert_allclose(raw.camera_wb, params["wb_gains"], rtol=1e-5)  # AsShotNeutral = 1/gains

    medium = dng_pixels(scene / "medium_exposure.dng").astype(np.float64) - BLACK_LEVEL
    short = dng_pixels(scene / "short_exposure.dng").astype(np.float64) - BLACK_LEVEL
    unclipped = medium < WHITE_LEVEL - BLACK_LEVEL
    assert unclipped.mean() > 0.95
    assert short[unclipped].mean() / medium[unclipped].mean() == pytest.approx(0.25, abs=0.01)
    # Auto exposure: the medium frame's 99th percentile near 0.8 of full scale.
    assert np.percentile(medium, 99) / (WHITE_LEVEL - BLACK_LEVEL) == pytest.approx(0.8, abs=0.03)


def test_jpegs(tmp_path: Path, photos: list[Path]) -> None:
    scene = make_synthetic(photos[1:], tmp_path / "S7", seed=0, progress=False)[0]
    medium = np.asarray(Image.open(scene / "medium_exposure.jpg")).astype(np.float64)
    short = np.asarray(Image.open(scene / "short_exposure.jpg")).astype(np.float64)
    original = textured_photo(97, 129, 1)[:96, :128]
    assert medium.shape == short.shape == original.shape
    assert np.abs(medium - original).mean() < 1.5  # the photo itself, only JPEG-coded
    assert short.mean() < 0.8 * medium.mean()  # 1/4 exposure renders visibly darker
    # The camera rendering keeps the scene's colours: per-channel structure matches the photo.
    for c in range(3):
        assert np.corrcoef(short[..., c].ravel(), original[..., c].ravel())[0, 1] > 0.9


def test_noise_follows_heteroscedastic_model(tmp_path: Path) -> None:
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((128, 128, 3), 150, np.uint8)).save(flat)
    scene = make_synthetic([flat], tmp_path / "S7", seed=3, progress=False)[0]
    params = json.loads((tmp_path / "S7" / MANIFEST_NAME).read_text())["scenes"][scene.name]
    a, b = params["noise_shot_a"], params["noise_read_b"]
    for name in ("medium_exposure", "short_exposure"):
        x = (dng_pixels(scene / f"{name}.dng").astype(np.float64) - BLACK_LEVEL) / (WHITE_LEVEL - BLACK_LEVEL)
        for dy, dx in ((0, 0), (0, 1), (1, 1)):  # R, G, B sites of a flat grey: each its own level
            site = x[dy::2, dx::2]
            assert site.std() == pytest.approx(np.sqrt(a * site.mean() + b), rel=0.1)


def test_deterministic_and_seed_dependent(tmp_path: Path, photos: list[Path]) -> None:
    first = make_synthetic(photos, tmp_path / "one", seed=7, progress=False)
    again = make_synthetic(photos, tmp_path / "two", seed=7, progress=False)
    other = make_synthetic(photos, tmp_path / "three", seed=8, progress=False)
    for s1, s2, s3 in zip(first, again, other):
        for name in S7_FILES:
            assert (s1 / name).read_bytes() == (s2 / name).read_bytes()
        assert np.array_equal(dng_pixels(s1 / "short_exposure.dng"), dng_pixels(s2 / "short_exposure.dng"))
        assert not np.array_equal(dng_pixels(s1 / "short_exposure.dng"), dng_pixels(s3 / "short_exposure.dng"))
    # Re-running into an existing dataset overwrites the same scenes with the same bytes.
    before = (first[0] / "medium_exposure.dng").read_bytes()
    (first[0] / "medium_exposure.dng").write_bytes(b"stale")
    make_synthetic(photos, tmp_path / "one", seed=7, progress=False)
    assert (first[0] / "medium_exposure.dng").read_bytes() == before


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_sensor_pattern_option(tmp_path: Path, photos: list[Path], pattern: str) -> None:
    scene = make_synthetic(photos[:1], tmp_path / "S7", pattern=pattern, progress=False)[0]
    raw = read_raw(scene / "medium_exposure.dng")
    assert raw.pattern == pattern
    rgb = bilinear_demosaic(torch.from_numpy(raw.mosaic)[None, None])[0].numpy()
    rgb = raw.to_sensor_frame(rgb, channel_axis=0)
    photo = textured_photo(96, 128, 0).astype(np.float64)
    for c in range(3):  # each channel landed on its own sites: R ramps left-right, B top-bottom
        assert np.corrcoef(rgb[c, 2:-2, 2:-2].ravel(), photo[2:-2, 2:-2, c].ravel())[0, 1] > 0.9


def test_user_errors(tmp_path: Path, photos: list[Path]) -> None:
    with pytest.raises(DeepISPError, match="unknown CFA pattern"):
        make_synthetic(photos, tmp_path / "S7", pattern="RGBG", progress=False)
    with pytest.raises(DeepISPError, match="seed"):
        make_synthetic(photos, tmp_path / "S7", seed=-1, progress=False)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(DeepISPError, match="cannot read photo"):
        make_synthetic([broken], tmp_path / "S7", progress=False)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((16, 40, 3), np.uint8)).save(tiny)
    with pytest.raises(DeepISPError, match="at least 22"):
        make_synthetic([tiny], tmp_path / "S7", progress=False)
    (tmp_path / "S7" / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(DeepISPError, match="not a synthetic-data manifest"):
        make_synthetic(photos, tmp_path / "S7", progress=False)


def test_variants_are_independent_draws_of_one_photo(tmp_path: Path) -> None:
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(photo)
    scenes = make_synthetic([photo, photo], tmp_path / "s7", variants=3, progress=False)
    assert len(scenes) == 6 and len({s.name for s in scenes}) == 6
    manifest = json.loads((tmp_path / "s7" / "synthetic_manifest.json").read_text())["scenes"]
    assert [manifest[s.name]["variant"] for s in scenes] == [0, 1, 2, 0, 1, 2]
    gains = {tuple(manifest[s.name]["wb_gains"]) for s in scenes}
    assert len(gains) == 6  # every scene draws its own white balance
    with pytest.raises(DeepISPError, match="variants"):
        make_synthetic([photo], tmp_path / "x", variants=0, progress=False)
