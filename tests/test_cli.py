"""The `deepisp` command end to end, and its behaviour on bad input: one-line errors, no partial outputs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from deepisp.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint
from deepisp.cli import main
from deepisp.model import DeepISP, ModelConfig
from tests.conftest import REPO, shared_data

TINY = ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, DeepISP(TINY), TINY)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_process_real_dng_all_formats(tiny_ckpt, tmp_path):
    dng = shared_data("raw", "colorchart.dng")
    for name in ("out.jpg", "out.png", "out.tif"):
        extra = ["--bits", "16"] if name == "out.png" else []
        assert main(["process", str(dng), "-o", str(tmp_path / name), "--model", str(tiny_ckpt), "--tile", "256", *extra]) == 0
    assert Image.open(tmp_path / "out.jpg").size == (1734, 1156)
    import cv2
    import tifffile

    png = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    tif = tifffile.imread(tmp_path / "out.tif")
    assert png.dtype == tif.dtype == np.uint16 and tif.shape == (1156, 1734, 3)
    assert np.array_equal(png[..., ::-1], tif)  # same pixels, OpenCV is BGR
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg", "out.png", "out.tif"]  # no temp files


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "not found"),
        (b"\x00garbage" * 100, "raw"),
        ("half", "raw"),
        ("png", "raw"),
    ],
)
def test_process_bad_raw_gives_one_line_and_no_output(content, match, tiny_ckpt, tmp_path, capsys):
    bad = tmp_path / "in.dng"
    if content == "half":
        data = shared_data("raw", "colorchart.dng").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif content == "png":
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "x.png")
        (tmp_path / "x.png").rename(bad)
    elif content is not None:
        bad.write_bytes(content)
    out = tmp_path / "out.jpg"
    assert main(["process", str(bad), "-o", str(out), "--model", str(tiny_ckpt)]) == 2
    assert match in one_line_error(capsys).lower()
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_process_bad_output_and_model(tiny_ckpt, tmp_path, capsys):
    dng = shared_data("raw", "colorchart.dng")
    assert main(["process", str(dng), "-o", str(tmp_path / "out.bmp"), "--model", str(tiny_ckpt)]) == 2
    assert "use an output ending in" in one_line_error(capsys)
    assert main(["process", str(dng), "-o", str(tmp_path / "no" / "out.jpg"), "--model", str(tiny_ckpt)]) == 2
    assert "does not exist" in one_line_error(capsys)
    assert main(["process", str(dng), "-o", str(tmp_path / "o.jpg"), "--bits", "16", "--model", str(tiny_ckpt)]) == 2
    assert "8-bit only" in one_line_error(capsys)
    assert main(["process", str(dng), "-o", str(tmp_path / "o.jpg"), "--model", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_process_several_files_pipelined_in_order(tiny_ckpt, tmp_path, capsys):
    """Decode/encode overlap changes nothing: each output equals the one-file run, lines come in input order;
    a bad file in the middle stops the run after the file before it is written and reported."""
    dng = shared_data("raw", "colorchart.dng")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b", "c"):
        (inputs / f"{name}.dng").write_bytes(dng.read_bytes())
    single, batch = tmp_path / "single.png", tmp_path / "batch"
    batch.mkdir()
    assert main(["process", str(dng), "-o", str(single), "--model", str(tiny_ckpt)]) == 0
    capsys.readouterr()
    assert main(["process", *(str(inputs / f"{n}.dng") for n in "abc"), "-o", str(batch), "--model", str(tiny_ckpt)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(" -> ")[0] for line in lines] == [str(inputs / f"{n}.dng") for n in "abc"]
    import cv2

    reference = cv2.imread(str(single))
    for n in "abc":  # JPEG by default in a folder: compare to a JPEG of the same image
        assert np.abs(cv2.imread(str(batch / f"{n}.jpg")).astype(int) - reference.astype(int)).mean() < 1.5

    (inputs / "b.dng").write_bytes(b"\x00garbage" * 100)
    failed = tmp_path / "failed"
    failed.mkdir()
    assert main(["process", *(str(inputs / f"{n}.dng") for n in "abc"), "-o", str(failed), "--model", str(tiny_ckpt)]) == 2
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[0].startswith(str(inputs / "a.dng")) and err.splitlines()[-1].startswith("error: ")
    assert sorted(p.name for p in failed.iterdir()) == ["a.jpg"]

    twins = tmp_path / "twins"
    twins.mkdir()
    (twins / "a.dng").write_bytes(dng.read_bytes())
    assert main(["process", str(inputs / "a.dng"), str(twins / "a.dng"), "-o", str(failed), "--model", str(tiny_ckpt)]) == 2
    assert "both write" in one_line_error(capsys)


def test_eval_writes_metrics_and_figures(s7_root, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--data", str(s7_root), "--model", str(tiny_ckpt), "--split", "all", "--out", str(out), "--figures", "2", "--tile", "64"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 4 and len(metrics["per_image"]) == 4
    for key in ("psnr", "ssim", "ciede2000", "ciede2000_p99"):
        assert np.isfinite(metrics["model"][key]) and np.isfinite(metrics["baseline"][key])
    assert len(list(out.glob("*_input_output_target.png"))) == 2


def test_make_synthetic_cli(tmp_path):
    photo = tmp_path / "photos"
    photo.mkdir()
    Image.fromarray(np.full((64, 80, 3), 128, np.uint8)).save(photo / "a.png")
    assert main(["make-synthetic", "--photos", str(photo), "--out", str(tmp_path / "s7")]) == 0
    scene = next((tmp_path / "s7").iterdir())
    assert {p.name for p in scene.iterdir()} == {"short_exposure.dng", "short_exposure.jpg", "medium_exposure.dng", "medium_exposure.jpg"}


def test_help_and_console_script():
    for cmd in ([], ["train"], ["eval"], ["process"], ["make-synthetic"]):
        r = subprocess.run([sys.executable, "-m", "deepisp.cli", *cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: deepisp" in r.stdout


def test_shipped_default_model_is_used_without_model_flag(tmp_path):
    if not DEFAULT_CHECKPOINT.exists():
        pytest.fail(f"the shipped default checkpoint {DEFAULT_CHECKPOINT} is missing from the package")
    dng = shared_data("raw", "colorchart.dng")
    out = tmp_path / "cc.jpg"
    assert main(["process", str(dng), "-o", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (1156, 1734, 3) and 20 < img.mean() < 235


def test_the_command_starts_without_the_ml_stack():
    """`deepisp --help`, `--version` and argument errors import no torch, numpy or rawpy (start-up in ~50 ms, and
    Ctrl-C while a command starts is the usual `interrupted`, not a traceback from inside an import)."""
    code = "import sys, deepisp.cli; print(sorted(m for m in ('torch', 'numpy', 'rawpy', 'tensorflow') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
    version = subprocess.run([sys.executable, "-m", "deepisp.cli", "--version"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("deepisp ")


def test_export_is_an_installed_command(tmp_path, capsys):
    """`deepisp export --format onnx ...` runs export/to_onnx.py's exporter: same options, same files."""
    assert main(["export", "--format", "onnx", "--frame", "64", "64", "--eval-images", "1", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "deepisp_onnx_fp32.json").is_file()
    assert main(["export", "--frame", "64", "64"]) == 2  # no --format
    assert "--format" in capsys.readouterr().err
