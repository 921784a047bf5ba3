"""The Python API (deepisp.api): `deepisp.develop` equals `deepisp process`, shipped models by name with their
sha256 checked, warnings as DeepISPWarning, and the README's example run as a doctest."""

from __future__ import annotations

import doctest
import hashlib
import io
import shutil
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

import deepisp
from deepisp import checkpoint
from deepisp.cli import main
from tests.conftest import REPO, shared_data


@pytest.fixture
def shot(s7_root, tmp_path):
    scene = sorted(p for p in s7_root.iterdir() if p.is_dir())[0]
    return shutil.copy(scene / "short_exposure.dng", tmp_path / "shot.dng")


def test_develop_is_what_process_writes(shot, tmp_path):
    assert main(["process", str(shot), "-o", str(tmp_path / "out.tif")]) == 0  # 16-bit TIFF
    written = tifffile.imread(tmp_path / "out.tif").astype(np.float64) / 65535
    img = deepisp.develop(shot)
    assert img.dtype == np.float32 and img.shape == written.shape
    assert np.abs(img - written).max() <= 0.5 / 65535 + 1e-6  # the file's rounding only


def test_shipped_models_by_name_are_checked_against_their_sha256(tmp_path, monkeypatch):
    for name, (file, digest) in checkpoint.SHIPPED.items():
        assert hashlib.sha256((checkpoint.WEIGHTS / file).read_bytes()).hexdigest() == digest, f"{name}: retrained? update SHIPPED"
    assert deepisp.load_model("phone-jdd").cfg.mode == "jdd"
    damaged = tmp_path / "weights"
    shutil.copytree(checkpoint.WEIGHTS, damaged)
    data = bytearray((damaged / "deepisp_micro_full.pt").read_bytes())
    data[-100] ^= 0xFF
    (damaged / "deepisp_micro_full.pt").write_bytes(bytes(data))
    monkeypatch.setattr(checkpoint, "WEIGHTS", damaged)
    with pytest.raises(deepisp.DeepISPError, match="sha256"):
        deepisp.load_model("micro-full")
    with pytest.raises(deepisp.DeepISPError, match="sha256"):
        deepisp.load_model()


def test_file_warnings_arrive_as_python_warnings(tmp_path):
    from deepisp.data.dng import write_dng

    cfa = (np.random.default_rng(0).random((96, 128)) * 900 + 64).astype(np.uint16)
    write_dng(tmp_path / "nowb.dng", cfa, color_matrix=np.eye(3), as_shot_neutral=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = deepisp.develop(tmp_path / "nowb.dng")
    assert img.shape == (96, 128, 3)
    assert any(issubclass(w.category, deepisp.DeepISPWarning) and "white balance" in str(w.message) for w in caught)
    with pytest.raises(deepisp.DeepISPError, match="not found"):
        deepisp.develop(tmp_path / "missing.dng")


def test_readme_example_runs(monkeypatch):
    if not shared_data("raw", "colorchart.dng").is_file():
        pytest.skip("../shared/data/raw/colorchart.dng is absent")
    monkeypatch.chdir(REPO)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deepisp.DeepISPWarning)
        result = doctest.testfile(str(REPO / "README.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif"])
def test_outputs_carry_the_shots_exif_and_an_srgb_profile(shot, tmp_path, ext):
    """Developed images keep the camera (Make, Model) with orientation reset and Software set, embed an sRGB ICC
    profile, and their pixels are what `develop` returns."""
    import io

    from PIL import ImageCms

    from deepisp.pngio import read_png

    out = tmp_path / f"out{ext}"
    bits = ["--bits", "16"] if ext == ".png" else []
    assert main(["process", str(shot), "-o", str(out), *bits]) == 0
    if ext == ".tif":
        with tifffile.TiffFile(out) as tif:
            tags = tif.pages[0].tags
            meta = {k: tags[k].value for k in ("Make", "Model", "Software")}
            icc = bytes(tags["InterColorProfile"].value)
            pixels = tif.pages[0].asarray()
    else:
        with Image.open(out) as im:
            exif, icc = im.getexif(), im.info["icc_profile"]
            meta = {"Make": exif[271], "Model": exif[272], "Software": exif[305]}
            assert exif[274] == 1
        pixels = read_png(out) if ext == ".png" else None
    assert meta == {"Make": "deepisp", "Model": "synthetic S7", "Software": f"deepisp {deepisp.__version__}"}
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() == "sRGB built-in"
    if pixels is not None:  # 16-bit: the chunks and tags changed nothing in the image data
        assert np.array_equal(pixels, np.round(deepisp.develop(shot) * 65535).astype(np.uint16))


def test_exif_of_the_exposure_round_trips():
    from deepisp.image_io import exif_bytes

    shot = (("Make", "Canon"), ("DateTimeOriginal", "2026:01:02 03:04:05"), ("ExposureTime", (1, 125)), ("FNumber", (28, 10)), ("ISOSpeedRatings", 800))
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="JPEG", exif=exif_bytes(shot))
    exif = Image.open(io.BytesIO(buf.getvalue())).getexif()
    sub = exif.get_ifd(0x8769)
    assert exif[271] == "Canon" and sub[36867] == "2026:01:02 03:04:05" and float(sub[33434]) == 1 / 125
    assert float(sub[33437]) == 2.8 and sub[34855] == 800
