"""deepisp.raw (rawpy reader, canonical RGGB frame) and deepisp.data.dng (DNG writer), through real LibRaw."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rawpy
import tifffile
import torch
from PIL import Image

from deepisp.cfa import CFA_PATTERNS, mosaic
from deepisp.data import SHARED_DATA, dng
from deepisp.data.dng import write_dng, write_jpeg
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.raw import RawMosaic, pattern_of, read_raw

COLORCHART = SHARED_DATA / "raw" / "colorchart.dng"

# Written out site by site (not via canonicalize) so the tests check raw.py against an independent layout.
SITE_CHANNEL = {p: ["RGB".index(c) for c in p] for p in CFA_PATTERNS}  # channel of each 2x2 site, raster order
EXPECTED_FLIPS = {"RGGB": (False, False), "GRBG": (True, False), "GBRG": (False, True), "BGGR": (True, True)}
NEUTRAL = (0.5, 1.0, 0.625)
COLOR_MATRIX = np.array([[0.9, -0.3, -0.1], [-0.4, 1.3, 0.1], [-0.05, 0.15, 0.5]])


def sensor_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """[H,W,3] -> [H,W] sampled on the sensor `pattern`."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            out[dy::2, dx::2] = rgb[dy::2, dx::2, SITE_CHANNEL[pattern][2 * dy + dx]]
    return out


def rawpy_pattern(raw: rawpy.RawPy) -> str:
    return "".join(raw.color_desc.decode()[i] for i in raw.raw_pattern.ravel())


def smooth_image(h: int, w: int) -> np.ndarray:
    """[H,W,3] float64 in [0.1,0.9], smooth and different in every channel."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    return np.stack([0.1 + 0.8 * x, 0.1 + 0.8 * y, 0.5 + 0.3 * np.sin(2.0 * x + 3.0 * y)], axis=-1)


def write_test_dng(path: Path, cfa: np.ndarray, **kw) -> Path:
    write_dng(path, cfa, color_matrix=COLOR_MATRIX, as_shot_neutral=NEUTRAL, **kw)
    return path


def write_raw_tiff(path: Path, data: np.ndarray, photometric: int | str, extra: list) -> Path:
    """A TIFF with DNG tags but arbitrary photometric/CFA, for the non-Bayer cases write_dng refuses."""
    tags = [
        (271, 2, 0, "deepisp", True),
        (50706, 1, 4, bytes((1, 4, 0, 0)), True),
        (50708, 2, 0, "deepisp test", True),
        (50717, 4, 1, 1023, True),
        (50721, 10, 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),
        *extra,
    ]
    tifffile.imwrite(path, data, photometric=photometric, subfiletype=0, metadata=None, software=False, extratags=tags)
    return path


# --- write_dng --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_write_dng_round_trip_through_rawpy(tmp_path: Path, pattern: str) -> None:
    cfa = np.random.default_rng(1).integers(0, 4096, size=(26, 34), dtype=np.uint16)
    path = write_test_dng(tmp_path / "x.dng", cfa, pattern=pattern, black_level=200, white_level=4095)
    with rawpy.imread(str(path)) as raw:
        assert raw.raw_type == rawpy.RawType.Flat
        assert rawpy_pattern(raw) == pattern
        assert raw.black_level_per_channel == [200] * 4
        assert raw.white_level == 4095
        np.testing.assert_array_equal(raw.raw_image_visible, cfa)
        r, g, b = raw.camera_whitebalance[:3]  # LibRaw reads AsShotNeutral as 1/multiplier
        np.testing.assert_allclose([r / g, b / g], [1 / NEUTRAL[0], 1 / NEUTRAL[2]], rtol=1e-5)
        assert raw.postprocess().shape == (26, 34, 3)
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        assert tags["CFAPattern"].value == bytes("RGB".index(c) for c in pattern)
        stored = np.array(tags["ColorMatrix1"].value, dtype=float).reshape(9, 2)
        np.testing.assert_allclose(stored[:, 0] / stored[:, 1], COLOR_MATRIX.ravel(), atol=1e-6)
        assert tags["CalibrationIlluminant1"].value == 21
        assert tags["Make"].value == "deepisp"


def test_write_dng_rejects_bad_input(tmp_path: Path) -> None:
    ok = np.zeros((24, 24), np.uint16)
    with pytest.raises(ValueError, match="uint16"):
        write_test_dng(tmp_path / "a.dng", ok.astype(np.float32))
    with pytest.raises(ValueError, match="too small"):
        write_test_dng(tmp_path / "a.dng", ok[:20])
    with pytest.raises(ValueError, match="black_level"):
        write_test_dng(tmp_path / "a.dng", ok, black_level=1023, white_level=1023)
    assert list(tmp_path.iterdir()) == []


def test_writers_leave_nothing_behind_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_write(path, *args, **kwargs):
        Path(path).write_bytes(b"II*\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(dng.tifffile, "imwrite", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_test_dng(tmp_path / "x.dng", np.zeros((24, 24), np.uint16))
    assert list(tmp_path.iterdir()) == []


def test_write_jpeg(tmp_path: Path) -> None:
    img = (smooth_image(40, 50) * 255).astype(np.uint8)
    write_jpeg(tmp_path / "x.jpg", img)
    with Image.open(tmp_path / "x.jpg") as im:
        assert im.format == "JPEG"
        back = np.asarray(im)
    assert np.abs(back.astype(int) - img).mean() < 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["x.jpg"]


# --- read_raw: patterns and frames ----------------------------------------------------------------------


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_every_pattern_round_trips_to_canonical_rggb(tmp_path: Path, pattern: str) -> None:
    h, w, black, white = 40, 56, 64, 4095
    rgb = smooth_image(h, w)
    cfa = np.round(black + sensor_mosaic(rgb, pattern) * (white - black)).astype(np.uint16)
    raw = read_raw(write_test_dng(tmp_path / "x.dng", cfa, pattern=pattern, black_level=black, white_level=white))

    assert raw.pattern == pattern
    assert (raw.flip_h, raw.flip_v) == EXPECTED_FLIPS[pattern]
    assert raw.mosaic.dtype == np.float32 and raw.mosaic.shape == (h, w)

    # The canonical mosaic is the RGGB sampling of the identically flipped image.
    flipped = rgb[:: -1 if raw.flip_v else 1, :: -1 if raw.flip_h else 1]
    expected = mosaic(torch.from_numpy(flipped.copy()).permute(2, 0, 1)[None])[0, 0].numpy()
    np.testing.assert_allclose(raw.mosaic, expected, atol=0.5 / (white - black) + 1e-6)

    # Demosaicing in the canonical frame and undoing the flips gives back the sensor-frame image.
    rgb_canon = bilinear_demosaic(torch.from_numpy(raw.mosaic)[None, None])[0].numpy()  # [3,H,W]
    back = raw.to_sensor_frame(rgb_canon, channel_axis=0).transpose(1, 2, 0)
    np.testing.assert_allclose(back[2:-2, 2:-2], rgb[2:-2, 2:-2], atol=2e-3)
    np.testing.assert_array_equal(raw.to_sensor_frame(rgb_canon.transpose(1, 2, 0), channel_axis=-1), back)
    np.testing.assert_allclose(raw.to_sensor_frame(raw.mosaic), (cfa - black) / (white - black), atol=1e-6)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_to_display_matches_rawpy_postprocess(tmp_path: Path, orientation: int) -> None:
    cfa = np.full((40, 60), 100, np.uint16)
    cfa[2:10, 4:16] = 1000  # a bright block near the top-left of the sensor frame
    raw = read_raw(write_test_dng(tmp_path / "x.dng", cfa, pattern="GRBG", orientation=orientation))
    with rawpy.imread(str(tmp_path / "x.dng")) as rp:
        reference = rp.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16).mean(axis=-1)
    shown = raw.to_display(raw.mosaic)
    assert shown.shape == reference.shape

    def block_centre(img: np.ndarray) -> np.ndarray:
        return np.argwhere(img > 0.5 * img.max()).mean(axis=0)

    np.testing.assert_allclose(block_centre(shown), block_centre(reference), atol=1.0)
    colour = np.stack([raw.mosaic, 2 * raw.mosaic, 3 * raw.mosaic], axis=-1)
    assert raw.to_display(colour).shape == (*shown.shape, 3)
    # from_display is the exact inverse (it brings camera JPEGs into the canonical frame).
    np.testing.assert_array_equal(raw.from_display(shown), raw.mosaic)
    np.testing.assert_array_equal(raw.from_display(raw.to_display(colour)), colour)


def test_odd_active_area_phase(tmp_path: Path) -> None:
    """DNG's CFAPattern starts at the ActiveArea origin. LibRaw 0.22 moves an odd area start to the next even
    pixel (here (1,3) -> (2,4), giving a 33x35 visible area) and shifts the pattern to match, so an RGGB
    CFAPattern reads as BGGR; read_raw follows LibRaw and drops the odd last row/column."""
    full = np.random.default_rng(4).integers(64, 1024, size=(36, 40), dtype=np.uint16)
    tags = [
        (33421, 3, 2, (2, 2), True),
        (33422, 1, 4, bytes((0, 1, 1, 2)), True),  # RGGB
        (50714, 4, 1, 64, True),
        (50829, 4, 4, (1, 3, 35, 39), True),  # ActiveArea: top, left, bottom, right
    ]
    raw = read_raw(write_raw_tiff(tmp_path / "x.dng", full, 32803, tags))
    assert raw.pattern == "BGGR" and raw.mosaic.shape == (32, 34)
    expected = (full[2:34, 4:38] - 64.0) / (1023 - 64)
    np.testing.assert_allclose(raw.to_sensor_frame(raw.mosaic), expected, atol=1e-6)


def test_to_sensor_frame_validates_shapes() -> None:
    # canonicalize's own validation is tests/test_cfa.py::test_canonicalize_validates.
    raw = RawMosaic(np.zeros((4, 6), np.float32), "BGGR", True, True, (0.0,) * 4, 1.0, 0, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="channel_axis"):
        raw.to_sensor_frame(np.zeros((4, 6, 3)))
    chw = np.arange(3 * 4 * 6).reshape(3, 4, 6)
    np.testing.assert_array_equal(raw.to_sensor_frame(chw, channel_axis=0), chw[:, ::-1, ::-1])


def fake_raw(pattern, desc=b"RGBG", top=0, left=0, num_colors=3):
    return SimpleNamespace(
        raw_pattern=np.array(pattern, dtype=np.uint8),
        color_desc=desc,
        num_colors=num_colors,
        sizes=SimpleNamespace(top_margin=top, left_margin=left),
    )


def test_pattern_of_uses_visible_area_phase_and_color_desc() -> None:
    rggb = [[0, 1], [3, 2]]  # LibRaw's usual numbering: 3 is the second green
    assert pattern_of(fake_raw(rggb)) == "RGGB"
    assert pattern_of(fake_raw(rggb, top=26, left=152)) == "RGGB"
    assert pattern_of(fake_raw(rggb, left=1)) == "GRBG"  # an odd margin shifts the visible phase
    assert pattern_of(fake_raw(rggb, top=1)) == "GBRG"
    assert pattern_of(fake_raw(rggb, top=3, left=5)) == "BGGR"
    assert pattern_of(fake_raw([[1, 0], [2, 1]])) == "GRBG"  # both greens numbered 1
    with pytest.raises(DeepISPError, match="not an RGB Bayer"):
        pattern_of(fake_raw(rggb, desc=b"RGBE"))  # Sony's 4-colour "emerald" sensors
    with pytest.raises(DeepISPError, match="monochrome"):
        pattern_of(fake_raw([[6]], num_colors=1))


# --- read_raw: the real sensor file ---------------------------------------------------------------------


def test_read_raw_real_colorchart_dng() -> None:
    if not COLORCHART.exists():
        pytest.skip(f"shared test data absent: {COLORCHART} (see /work/shared/data/README.md)")
    raw = read_raw(COLORCHART)
    assert raw.mosaic.shape == (1156, 1734)  # visible area: margins top 26 / left 152 cut
    assert raw.mosaic.dtype == np.float32
    assert raw.pattern == "RGGB" and not raw.flip_h and not raw.flip_v
    assert raw.black_level == (2056.0,) * 4 and raw.white_level == 15000.0
    assert raw.orientation == 0
    assert 0.0 <= raw.mosaic.min() and raw.mosaic.max() <= 1.0
    assert 0.01 < raw.mosaic.mean() < 0.5 and raw.mosaic.max() > 0.5  # real signal, neither black nor clipped
    with rawpy.imread(str(COLORCHART)) as rp:
        expected = (rp.raw_image_visible.astype(np.float32) - 2056.0) / (15000.0 - 2056.0)
    np.testing.assert_allclose(raw.mosaic, np.clip(expected, 0, 1), atol=1e-6)


# --- read_raw: errors -----------------------------------------------------------------------------------


def assert_user_error(path: Path, match: str) -> None:
    with pytest.raises(DeepISPError, match=match) as info:
        read_raw(path)
    message = str(info.value)
    assert "\n" not in message and path.name in message
    err = info.value  # no LibRaw exception chained onto the user's traceback
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


@pytest.fixture
def valid_dng(tmp_path: Path) -> Path:
    cfa = np.random.default_rng(0).integers(64, 1024, size=(64, 96), dtype=np.uint16)
    return write_test_dng(tmp_path / "valid.dng", cfa)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    assert_user_error(tmp_path / "nope.dng", "not found")
    (tmp_path / "empty.dng").write_bytes(b"")
    assert_user_error(tmp_path / "empty.dng", "empty")
    (tmp_path / "folder.dng").mkdir()
    assert_user_error(tmp_path / "folder.dng", "not a file")


def test_corrupt_and_truncated_files(tmp_path: Path, valid_dng: Path) -> None:
    corrupt = tmp_path / "corrupt.dng"
    corrupt.write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert_user_error(corrupt, "not a camera raw file")
    data = valid_dng.read_bytes()
    truncated = tmp_path / "truncated.dng"
    truncated.write_bytes(data[: len(data) // 2])
    assert_user_error(truncated, "truncated or corrupt")


def test_ordinary_images_renamed_dng(tmp_path: Path) -> None:
    rgb8 = (smooth_image(64, 96) * 255).astype(np.uint8)
    Image.fromarray(rgb8).save(tmp_path / "png.dng", format="PNG")
    assert_user_error(tmp_path / "png.dng", "not a camera raw file")
    tifffile.imwrite(tmp_path / "rgb.dng", rgb8, photometric="rgb")
    assert_user_error(tmp_path / "rgb.dng", "plain TIFF")
    # LibRaw on its own would decode this one as an RGGB raw with black 0 / white 65535.
    tifffile.imwrite(tmp_path / "grey16.dng", (rgb8[..., 0].astype(np.uint16) * 257), photometric="minisblack")
    assert_user_error(tmp_path / "grey16.dng", "plain TIFF")


def test_non_bayer_raws(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    linear = write_raw_tiff(tmp_path / "linear.dng", rng.integers(0, 1023, (64, 96, 3), dtype=np.uint16), 34892, [])
    assert_user_error(linear, "already-demosaiced")

    xtrans = "GGRGGBGGBGGRBRGRBGGGBGGRGGRGGBRBGBRG"
    cfa_tags = [(33421, 3, 2, (6, 6), True), (33422, 1, 36, bytes("RGB".index(c) for c in xtrans), True)]
    xt = write_raw_tiff(tmp_path / "xtrans.dng", rng.integers(0, 1023, (66, 96), dtype=np.uint16), 32803, cfa_tags)
    assert_user_error(xt, "X-Trans")

    # DNG monochrome is LinearRaw with one sample, which tifffile refuses to write: patch the tag after.
    mono = write_raw_tiff(tmp_path / "mono.dng", rng.integers(0, 1023, (64, 96), dtype=np.uint16), "minisblack", [])
    with tifffile.TiffFile(mono, mode="r+b") as tif:
        tif.pages[0].tags["PhotometricInterpretation"].overwrite(34892)
    assert_user_error(mono, "monochrome")


def test_white_level_not_above_black(valid_dng: Path) -> None:
    with tifffile.TiffFile(valid_dng, mode="r+b") as tif:
        tif.pages[0].tags["WhiteLevel"].overwrite(64)
    assert_user_error(valid_dng, "white level 64 is not above the black level 64")
