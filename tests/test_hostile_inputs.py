"""Hostile but realistic inputs: each is built here and must end cleanly (exit 2, one `error:` line, nothing
written, nothing run, memory bounded), and interrupted or moved training runs must recover."""

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deepisp import process as process_module
from deepisp.atomic import atomic_path
from deepisp.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from deepisp.errors import DeepISPError
from deepisp.raw import read_raw
from tests.conftest import REPO


def deepisp(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepisp.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_clean_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def dng(s7_root, tmp_path) -> Path:
    scene = sorted(p for p in s7_root.iterdir() if p.is_dir())[0]
    path = tmp_path / "shot.dng"
    shutil.copy(scene / "short_exposure.dng", path)
    return path


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_carrying_code_is_refused_and_the_code_never_runs(dng, tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    state = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    state["note"] = Payload(marker)
    torch.save(state, tmp_path / "evil.pt")
    result = deepisp("process", dng, "-o", tmp_path / "out.png", "--model", tmp_path / "evil.pt")
    assert_clean_error(result, "refused")
    assert not marker.exists() and not (tmp_path / "out.png").exists()


def test_non_finite_weight_is_refused(dng, tmp_path):
    state = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    key = next(k for k in state["model"] if k.endswith("weight"))
    weight = state["model"][key]
    weight[(0,) * weight.dim()] = float("nan")  # index, not view(-1): channels-last trained weights are not contiguous
    torch.save(state, tmp_path / "nan.pt")
    assert_clean_error(deepisp("process", dng, "-o", tmp_path / "out.png", "--model", tmp_path / "nan.pt"), "non-finite")
    assert not (tmp_path / "out.png").exists()


def test_bytes_flipped_inside_tensor_data_are_detected(tmp_path):
    damaged = tmp_path / "flipped.pt"
    shutil.copy(DEFAULT_CHECKPOINT, damaged)
    with zipfile.ZipFile(damaged) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(damaged, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
        start = info.header_offset + 30 + int(name_len) + int(extra_len) + info.file_size // 2
        f.seek(start)
        chunk = bytearray(f.read(8))
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in chunk))
    with pytest.raises(DeepISPError, match="damaged"):
        load_checkpoint(damaged)


def test_checkpoint_whose_weights_do_not_fit_its_config(dng, tmp_path):
    state = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    state["model_config"]["n_ll"] += 1
    torch.save(state, tmp_path / "shape.pt")
    assert_clean_error(deepisp("process", dng, "-o", tmp_path / "o.png", "--model", tmp_path / "shape.pt"), "do not fit")
    state["model_config"]["colour"] = "vivid"
    torch.save(state, tmp_path / "key.pt")
    assert_clean_error(deepisp("process", dng, "-o", tmp_path / "o.png", "--model", tmp_path / "key.pt"), "do not fit")


def inflate_dng(src: Path, dst: Path, side: int) -> None:
    """Copy a DNG, rewriting its IFD0 ImageWidth/ImageLength to `side`: a small file declaring a huge frame."""
    import tifffile

    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tif:
        tags = tif.pages[0].tags
        for name in ("ImageWidth", "ImageLength"):
            tag = tags[name]
            fmt = {3: "<u2", 4: "<u4"}[tag.dtype]
            data[tag.valueoffset : tag.valueoffset + np.dtype(fmt).itemsize] = np.array(side, dtype=fmt).tobytes()
    dst.write_bytes(bytes(data))


def test_decompression_bomb_is_refused_before_decoding(dng, tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.dng"
    inflate_dng(dng, bomb, 20480)
    assert bomb.stat().st_size < 100_000
    import rawpy

    class NoDecoding(rawpy.RawPy):
        def unpack(self):
            raise AssertionError("the frame was decoded before its size was checked")

    monkeypatch.setattr(rawpy, "RawPy", NoDecoding)
    with pytest.raises(DeepISPError, match="MP limit"):
        read_raw(bomb)
    monkeypatch.undo()
    t0 = time.perf_counter()
    result = deepisp("process", bomb, "-o", tmp_path / "o.png")
    assert_clean_error(result, "MP limit", "--max-megapixels")
    assert time.perf_counter() - t0 < 60 and not (tmp_path / "o.png").exists()


def test_input_is_never_overwritten(dng, tmp_path):
    before = dng.read_bytes()
    assert_clean_error(deepisp("process", dng, "-o", dng), "never writes over an input")
    disguised = tmp_path / "shot.jpg"  # a raw with a .jpg name: the default output name is the input itself
    shutil.copy(dng, disguised)
    assert_clean_error(deepisp("process", disguised), "never writes over an input")
    assert dng.read_bytes() == before and disguised.read_bytes() == before


@pytest.mark.parametrize("ext, writer", [(".jpg", "PIL.Image.Image.save"), (".tif", "tifffile.imwrite")])
def test_full_disk_is_one_clear_error_and_leaves_no_file(tmp_path, monkeypatch, ext, writer):
    def disk_full(*args, **kwargs):
        tmp = Path(args[1] if writer.startswith("PIL") else args[0])
        tmp.write_bytes(b"partial")  # a real full disk fails part-way through the file
        raise OSError(28, "No space left on device")

    module, _, attr = writer.rpartition(".")
    target = {"PIL.Image.Image": process_module.Image.Image, "tifffile": process_module.tifffile}[module]
    monkeypatch.setattr(target, attr, disk_full)
    with pytest.raises(DeepISPError, match="No space left"):
        process_module.save_image(np.zeros((4, 4, 3)), tmp_path / f"out{ext}", 16 if ext == ".tif" else 8)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_output_is_refused(tmp_path):
    img = np.zeros((4, 4, 3))
    img[1, 2, 0] = np.nan
    with pytest.raises(DeepISPError, match="non-finite"):
        process_module.save_image(img, tmp_path / "o.png", 8)
    assert list(tmp_path.iterdir()) == []


def test_bad_thread_count():
    assert_clean_error(deepisp("process", "x.dng", "--threads", "-1"), "--threads")


def test_stale_temp_files_of_dead_writers_are_swept(tmp_path):
    out = tmp_path / "last.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".last.{dead.pid}-0123456789ab.tmp.pt"
    live = tmp_path / f".last.{os.getpid()}-0123456789ab.tmp.pt"
    other = tmp_path / ".notes.1-x.tmp.txt"
    for f in (stale, live, other):
        f.write_bytes(b"x")
    with atomic_path(out) as tmp:
        tmp.write_bytes(b"ok")
    assert out.read_bytes() == b"ok"
    assert not stale.exists() and live.exists() and other.exists()


def test_sigterm_during_training_saves_the_run(s7_root, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepisp.cli",
            "train",
            "--data",
            str(s7_root),
            "--preset",
            "tiny-full",
            "--steps",
            "100000",
            "--crop",
            "72",
            "--batch",
            "1",
            "--ckpt-every",
            "100000",
            "--val-every",
            "100000",
            "--out",
            str(run),
            "--quiet",
            "--threads",
            "1",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "log.csv").exists():
        time.sleep(0.5)
    time.sleep(5)  # some steps past start-up
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert load_checkpoint(run / "last.pt")["step"] > 0
    assert [f.name for f in run.iterdir() if f.name.startswith(".")] == []


def test_resume_after_the_data_moved(s7_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(s7_root, data)
    args = ["--preset", "tiny-full", "--crop", "72", "--batch", "1", "--ckpt-every", "2", "--val-every", "2", "--quiet", "--threads", "1"]
    assert deepisp("train", "--data", "data", "--steps", "2", "--out", "run", *args, cwd=tmp_path).returncode == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_config"]["data"] == str(data)  # stored absolute
    (tmp_path / "elsewhere").mkdir()
    moved = tmp_path / "elsewhere" / "data"
    data.rename(moved)
    result = deepisp("train", "--out", str(tmp_path / "run"), "--resume", "--steps", "4", "--data", str(moved), "--quiet", cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 4 and state["train_config"]["data"] == str(moved)
    # Without --steps the run keeps its stored total (4): nothing more to train.
    assert deepisp("train", "--out", str(tmp_path / "run"), "--resume", "--quiet", cwd=tmp_path / "elsewhere").returncode == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 4
