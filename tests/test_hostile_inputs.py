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
from PIL import Image

from deepisp import image_io
from deepisp.atomic import atomic_path, temp_name
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
    target = {"PIL.Image.Image": image_io.Image.Image, "tifffile": image_io.tifffile}[module]
    monkeypatch.setattr(target, attr, disk_full)
    with pytest.raises(DeepISPError, match="No space left"):
        image_io.save_image(np.zeros((4, 4, 3)), tmp_path / f"out{ext}", 16 if ext == ".tif" else 8)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_output_is_refused(tmp_path):
    img = np.zeros((4, 4, 3))
    img[1, 2, 0] = np.nan
    with pytest.raises(DeepISPError, match="non-finite"):
        image_io.save_image(img, tmp_path / "o.png", 8)
    assert list(tmp_path.iterdir()) == []


def test_bad_thread_count():
    assert_clean_error(deepisp("process", "x.dng", "--threads", "-1"), "--threads")


def test_stale_temp_files_of_dead_writers_are_swept_and_nothing_else(tmp_path):
    out = tmp_path / "last.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    nonce = "0123456789abcdef"
    stale = tmp_path / temp_name("last", dead.pid, nonce, ".pt")
    live = tmp_path / temp_name("last", os.getpid(), nonce, ".pt")
    # Files that only look like temp names: a user's, an older pattern, a forged check, a link to an input.
    lookalikes = [
        tmp_path / f".last.{dead.pid}-a.tmp.pt",
        tmp_path / f".last.{dead.pid}-{nonce}.tmp.pt",
        tmp_path / f".last.{dead.pid}-{nonce}-{'0' * 16}.deepisp-tmp.pt",
        tmp_path / ".notes.1-x.tmp.txt",
    ]
    for f in (stale, live, *lookalikes):
        f.write_bytes(b"x")
    precious = tmp_path / "input.dng"
    precious.write_bytes(b"raw")
    linked = tmp_path / temp_name("last", dead.pid, "fedcba9876543210", ".pt")
    linked.symlink_to(precious)
    with atomic_path(out) as tmp:
        tmp.write_bytes(b"ok")
    assert out.read_bytes() == b"ok"
    assert not stale.exists() and live.exists() and all(f.exists() for f in lookalikes)
    assert linked.is_symlink() and precious.read_bytes() == b"raw"


def test_process_never_deletes_an_input_named_like_a_temp_file(tmp_path, dng):
    """`deepisp process .out.999999-a.tmp.jpg -o out.jpg`: the input survives, whatever its name."""
    raw = tmp_path / ".out.999999-a.tmp.jpg"
    shutil.copy(dng, raw)
    assert deepisp("process", raw, "-o", tmp_path / "out.jpg").returncode == 0
    assert raw.read_bytes() == dng.read_bytes() and (tmp_path / "out.jpg").is_file()


def test_every_file_a_command_reads_is_an_input(tmp_path, dng):
    """The model (checkpoint, sidecar, graphs) is never an output: `--model m.jpg -o m.jpg` is refused unchanged."""
    model = tmp_path / "m.jpg"
    shutil.copy(DEFAULT_CHECKPOINT, model)
    assert_clean_error(deepisp("process", dng, "--model", model, "-o", model), "input")
    assert model.read_bytes() == DEFAULT_CHECKPOINT.read_bytes()


def start_training(s7_root: Path, run: Path) -> subprocess.Popen:
    """A long tiny-full run, returned once it is some steps past start-up."""
    args = ["--preset", "tiny-full", "--steps", "100000", "--crop", "72", "--batch", "1", "--ckpt-every", "100000", "--val-every", "100000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepisp.cli", "train", "--data", str(s7_root), *args, "--out", str(run), "--quiet", "--threads", "1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "log.csv").exists():
        time.sleep(0.5)
    time.sleep(5)
    return proc


@pytest.mark.parametrize("burst", [False, True], ids=["one signal", "a burst every 5 ms"])
def test_sigterm_during_training_saves_the_run(s7_root, tmp_path, burst):
    run = tmp_path / "run"
    proc = start_training(s7_root, run)
    proc.send_signal(signal.SIGTERM)
    if burst:  # as some supervisors send: later signals must not abort the final save
        for _ in range(300):
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    # A signal of the burst may still end the process after the save, once training has given its handlers back.
    assert (proc.returncode == 130 and "interrupted" in err) or (burst and proc.returncode == -signal.SIGTERM), err
    assert load_checkpoint(run / "last.pt")["step"] > 0
    assert [f.name for f in run.iterdir() if f.name.startswith(".")] == []


def test_a_run_folder_has_one_owner(s7_root, tmp_path):
    run = tmp_path / "run"
    first = start_training(s7_root, run)
    try:
        second = deepisp("train", "--data", s7_root, "--preset", "tiny-full", "--steps", "3", "--crop", "72", "--out", run, "--quiet")
        assert_clean_error(second, "in use")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert load_checkpoint(run / "last.pt")["train_config"]["steps"] == 100000  # the first run's, untouched


@pytest.mark.parametrize(
    "flag,value",
    [("--steps", "0"), ("--steps", "-5"), ("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"), ("--lr", "1"), ("--color-head-lr-mult", "nan"), ("--batch", "0")]
    + [("--ckpt-every", "0"), ("--val-every", "0")],
)
def test_training_options_are_range_checked_before_anything_is_written(s7_root, tmp_path, flag, value):
    run = tmp_path / "run"
    assert_clean_error(deepisp("train", "--data", s7_root, "--preset", "tiny-full", "--crop", "72", "--out", run, "--quiet", flag, value), flag)
    assert not (run / "last.pt").exists()


def test_non_finite_weights_are_never_saved(s7_root, tmp_path, monkeypatch):
    """A run whose weights blow up (here: an optimizer step that writes Inf) keeps its last good checkpoint and says why."""
    from deepisp.train import TrainConfig, train

    run = tmp_path / "run"
    tc = TrainConfig(data=str(s7_root), preset="tiny-full", steps=2, crop=72, batch=1, ckpt_every=1, val_every=100, out=str(run))
    train(tc, progress=False)
    good = (run / "last.pt").read_bytes()
    real_step = torch.optim.Adam.step

    def blow_up(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", blow_up)
    with pytest.raises(DeepISPError, match="non-finite"):
        train(TrainConfig(**{**tc.__dict__, "steps": 4}), resume=True, progress=False)
    assert (run / "last.pt").read_bytes() == good


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


def test_a_raw_that_decodes_empty_is_refused(tmp_path):
    """A damaged compressed stream decodes to zeros without an error from LibRaw: refused, not an all-black image."""
    from deepisp.data.dng import write_dng

    dng = tmp_path / "empty.dng"
    write_dng(dng, np.zeros((64, 64), np.uint16), black_level=64, white_level=1023, color_matrix=np.eye(3), as_shot_neutral=None)
    assert_clean_error(deepisp("process", dng, "-o", tmp_path / "out.jpg"), "empty")
    assert not (tmp_path / "out.jpg").exists()


NUMERIC_OPTIONS = [
    ("process", "x.dng", "--max-megapixels"),
    ("process", "x.dng", "--tile"),
    ("process", "x.dng", "--threads"),
    ("make-synthetic", "--photos", "p", "--out", "o", "--limit"),
    ("eval", "--limit"),
    ("train", "--data", "d", "--lr"),
    ("train", "--data", "d", "--steps"),
]


@pytest.mark.parametrize("args", NUMERIC_OPTIONS, ids=lambda a: f"{a[0]} {a[-1]}")
@pytest.mark.parametrize("value", ["nan", "inf", "-5", "1e400", "x", "0", "20000000"])
def test_every_numeric_option_is_range_checked_with_one_error_line(args, value):
    """NaN, infinities, negatives and non-numbers are refused by the parser: one `error:` line naming the option.
    Zero and huge values are refused where out of range, and never give a traceback where they are not."""
    result = deepisp(*args, value)
    if value not in ("0", "20000000"):
        assert_clean_error(result, args[-1])
    else:
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr


def test_export_and_harness_options_are_range_checked():
    for script, flag, value in (
        ("export/to_tflite.py", "--min-psnr", "nan"),
        ("export/to_onnx.py", "--frame", "0"),
        ("export/to_onnx.py", "--threads", "20000"),
    ):
        result = subprocess.run(
            [sys.executable, script, flag, value, *(["1"] if flag == "--frame" else [])], capture_output=True, text=True, cwd=REPO, timeout=300
        )
        assert_clean_error(result, flag)
    result = subprocess.run([sys.executable, "-m", "android_harness.bench", "--adb-timeout", "nan"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert_clean_error(result, "--adb-timeout")


@pytest.mark.parametrize("field,value", [("n_ll", 1000000), ("width", 6000), ("hl_width", -3), ("n_hl", 10**9), ("n_ll", 2.5)])
def test_a_checkpoint_config_that_sizes_a_huge_network_is_refused_before_allocating(tmp_path, dng, field, value):
    state = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    state["model_config"][field] = value
    torch.save(state, tmp_path / "huge.pt")
    assert_clean_error(deepisp("process", dng, "-o", tmp_path / "out.png", "--model", tmp_path / "huge.pt"), "out of range")


def test_a_checkpoint_that_inflates_to_gigabytes_is_refused_before_reading(tmp_path, dng):
    """A small file whose zip entry declares (and inflates to) far more than any model: refused from the zip directory."""
    bomb = tmp_path / "bomb.pt"
    shutil.copy(DEFAULT_CHECKPOINT, bomb)
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("archive/data/extra", "w", force_zip64=True) as f:
            chunk = bytes(1 << 24)
            for _ in range(80):  # 1.25 GiB of zeros, ~1.3 MB on disk
                f.write(chunk)
    assert bomb.stat().st_size < 10 << 20
    assert_clean_error(deepisp("process", dng, "-o", tmp_path / "out.png", "--model", bomb), "refused")


def test_a_long_but_valid_output_name_is_written(tmp_path, dng):
    """A 250-byte output name is valid: its temp name is cut to fit, not refused after processing."""
    out = tmp_path / ("a" * 246 + ".jpg")
    result = deepisp("process", dng, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "sparse", "unreadable"])
def test_a_sidecar_that_is_not_a_small_regular_file_is_refused_at_once(tmp_path, dng, kind):
    """A FIFO (would block forever), /dev/zero (never ends), a 4 GiB sparse file or an unreadable file as the
    sidecar: one clear line, within the test's timeout, no output."""
    sidecar = tmp_path / "deepisp_fp32.json"
    if kind == "fifo":
        os.mkfifo(sidecar)
    elif kind == "dev_zero":
        sidecar.symlink_to("/dev/zero")
    elif kind == "sparse":
        with open(sidecar, "wb") as f:
            f.truncate(4 << 30)
    else:
        sidecar.write_text("{}")
        sidecar.chmod(0)
        if os.access(sidecar, os.R_OK):
            pytest.skip("running as root: permissions do not stop reads")
    result = deepisp("process", dng, "-o", tmp_path / "out.png", "--backend", "onnx", "--model", sidecar)
    assert_clean_error(result, {"fifo": "regular file", "dev_zero": "regular file", "sparse": "MiB", "unreadable": "permission"}[kind])
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("name", [b"shot\nnext\x1b[31m.dng", b"caf\xe9.dng"], ids=["control characters", "non-UTF-8 bytes"])
def test_odd_file_names_are_processed_and_echoed_escaped(tmp_path, dng, name):
    """A raw whose name holds control characters or bytes that are not UTF-8: processed (LibRaw takes UTF-8 paths
    only), and every line that names it shows them escaped, never raw on the terminal."""
    raw = Path(os.fsdecode(bytes(tmp_path) + b"/" + name))
    shutil.copy(dng, raw)
    result = subprocess.run([sys.executable, "-m", "deepisp.cli", "process", raw, "-o", tmp_path / "out.jpg"], capture_output=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.jpg").is_file()
    shown = result.stdout.decode()
    assert "\\x" in shown and "\x1b" not in shown and shown.count("\n") == 1
    missing = Path(os.fsdecode(bytes(tmp_path) + b"/gone" + name))
    result = subprocess.run([sys.executable, "-m", "deepisp.cli", "process", missing], capture_output=True, cwd=REPO, timeout=300)
    assert result.returncode == 2 and result.stderr.decode().count("\n") == 1 and "\x1b" not in result.stderr.decode()


@pytest.mark.parametrize("damage", ["sparse weight", "integer keys", "integer config keys", "config not a dict", "integer weight"])
def test_malformed_checkpoint_contents_are_refused_in_one_line(tmp_path, dng, damage):
    state = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    key = next(iter(state["model"]))
    if damage == "sparse weight":
        state["model"][key] = state["model"][key].to_sparse()
    elif damage == "integer keys":
        state["model"] = dict(enumerate(state["model"].values()))
    elif damage == "integer config keys":
        state["model_config"] = {1: 2}
    elif damage == "config not a dict":
        state["model_config"] = "full"
    else:
        state["model"][key] = state["model"][key].long()
    torch.save(state, tmp_path / "bad.pt")
    assert_clean_error(deepisp("process", dng, "-o", tmp_path / "out.png", "--model", tmp_path / "bad.pt"), "bad.pt")
    assert not (tmp_path / "out.png").exists()


def test_bad_device_and_an_output_folder_that_is_a_file_are_one_line_errors(s7_root, tmp_path):
    assert_clean_error(deepisp("train", "--data", s7_root, "--preset", "tiny-full", "--device", "bogus", "--out", tmp_path / "run"), "--device")
    (tmp_path / "file").write_text("x")
    assert_clean_error(deepisp("eval", "--data", s7_root, "--out", tmp_path / "file", "--limit", "1"), "not a folder")
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "photos" / "p.png")
    assert_clean_error(deepisp("make-synthetic", "--photos", tmp_path / "photos", "--out", tmp_path / "file" / "sub"), "not a folder")


def test_a_photo_that_decompresses_to_gigapixels_is_refused(tmp_path):
    """A ~1 MB PNG of 20000x20000 (and one just over the photo limit) in make-synthetic and train: one line, nothing decoded."""
    from deepisp.data.synthetic import MAX_PHOTO_PIXELS

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (20000, 20000)).save(photos / "bomb.png")
    assert_clean_error(deepisp("make-synthetic", "--photos", photos, "--out", tmp_path / "syn"), "MP")
    assert_clean_error(deepisp("train", "--photos", photos, "--preset", "tiny-full", "--steps", "1", "--out", tmp_path / "run"), "MP")
    (photos / "bomb.png").unlink()
    Image.new("RGB", (MAX_PHOTO_PIXELS // 8000 + 2, 8000)).save(photos / "big.png")
    assert_clean_error(deepisp("make-synthetic", "--photos", photos, "--out", tmp_path / "syn"), "MP")


@pytest.mark.parametrize("damage", ["step", "optimizer", "train_config", "train_config.bogus", "train_config.seed", "optimizer groups"])
def test_a_damaged_run_checkpoint_cannot_resume_and_says_which_field(s7_root, tmp_path, damage):
    run = tmp_path / "run"
    args = ["--preset", "tiny-full", "--crop", "72", "--batch", "1", "--quiet", "--threads", "1"]
    assert deepisp("train", "--data", s7_root, "--steps", "1", "--out", run, *args).returncode == 0
    state = torch.load(run / "last.pt", weights_only=True)
    if damage == "step":
        state["step"] = "1"
    elif damage in ("optimizer", "train_config"):
        del state[damage]
    elif damage == "train_config.bogus":
        state["train_config"]["bogus"] = 1
    elif damage == "train_config.seed":
        state["train_config"]["seed"] = "zero"
    else:
        state["optimizer"] = {"state": {}, "param_groups": [{"params": [0]}]}
    torch.save(state, run / "last.pt")
    result = deepisp("train", "--out", run, "--resume", "--steps", "2", "--quiet")
    assert_clean_error(result, "optimizer state" if damage == "optimizer groups" else damage)


def test_a_full_disk_while_training_keeps_the_last_checkpoint_and_says_so(s7_root, tmp_path, monkeypatch):
    """A checkpoint write that fails part-way (disk full): one clear error, no temp file, the previous last.pt intact."""
    from deepisp.train import TrainConfig, train

    run = tmp_path / "run"
    tc = TrainConfig(data=str(s7_root), preset="tiny-full", steps=1, crop=72, batch=1, ckpt_every=1, val_every=100, out=str(run))
    train(tc, progress=False)
    good = (run / "last.pt").read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(DeepISPError, match="No space left"):
        train(TrainConfig(**{**tc.__dict__, "steps": 3}), resume=True, progress=False)
    assert (run / "last.pt").read_bytes() == good
    assert [f.name for f in run.iterdir() if f.name.startswith(".")] == []


@pytest.mark.parametrize("frame", [("1", "1"), ("9", "9"), ("1001", "1003"), ("30", "64")])
def test_an_export_frame_that_is_no_sensor_frame_is_one_line(tmp_path, frame):
    """Odd sides or fewer pixels than one high-level cell: refused before any export, not a 41-line torch.export error."""
    result = subprocess.run([sys.executable, "export/to_onnx.py", "--frame", *frame, "--out", tmp_path], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert_clean_error(result, "--frame")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_a_truncated_raw_is_one_error_line_without_librarys_own(tmp_path, dng, keep):
    """LibRaw prints "<file>: Unexpected end of file" to stderr itself; the user sees deepisp's one line only."""
    data = dng.read_bytes()
    cut = tmp_path / "cut.dng"
    cut.write_bytes(data[: int(len(data) * keep)])
    assert_clean_error(deepisp("process", cut, "-o", tmp_path / "out.jpg"), "cut.dng")


def test_a_dng_whose_white_level_is_zero_is_refused(tmp_path):
    """WhiteLevel 0: LibRaw silently takes 65535 instead, which renders a 10-bit sensor nearly black."""
    import struct

    import tifffile

    from deepisp.data.dng import write_dng

    dng = tmp_path / "white0.dng"
    write_dng(dng, np.full((64, 64), 500, np.uint16), color_matrix=np.eye(3), as_shot_neutral=(0.5, 1.0, 0.6))
    with tifffile.TiffFile(dng) as tif:
        tag = next(t for page in tif.pages for t in page.tags.values() if t.code == 50717)
        offset, fmt = tag.valueoffset, {3: "<H", 4: "<I"}[int(tag.dtype)]
    data = bytearray(dng.read_bytes())
    struct.pack_into(fmt, data, offset, 0)
    dng.write_bytes(bytes(data))
    assert_clean_error(deepisp("process", dng, "-o", tmp_path / "out.jpg"), "WhiteLevel 0")


def test_a_weight_that_declares_more_elements_than_its_bytes_is_refused_without_allocating(tmp_path, dng):
    """The pickled element count of one weight edited to 5e8 (2 GB of float32) over its small record: refused in one
    line without allocating what it declares (torch checks the record first; this pins that down)."""
    import pickletools
    import struct

    source = zipfile.ZipFile(DEFAULT_CHECKPOINT)
    pkl_name = next(i.filename for i in source.infolist() if i.filename.endswith("data.pkl"))
    pkl = source.read(pkl_name)
    ops = list(pickletools.genops(pkl))
    # The element count of the first storage: the integer pushed just before the persistent id's TUPLE.
    persid = next(k for k, (op, _, _) in enumerate(ops) if op.name == "BINPERSID")
    count_at = max(k for k in range(persid) if ops[k][0].name.startswith("BININT"))
    start, end = ops[count_at][2], ops[count_at + 1][2]
    edited = pkl[:start] + b"J" + struct.pack("<i", 500_000_000) + pkl[end:]
    evil = tmp_path / "numel.pt"
    with zipfile.ZipFile(evil, "w", zipfile.ZIP_STORED) as out:
        for info in source.infolist():
            out.writestr(info, edited if info.filename == pkl_name else source.read(info))
    assert_clean_error(deepisp("process", dng, "-o", tmp_path / "out.png", "--model", evil), "numel.pt")
    # A process's peak memory (kB) loading the file, against the same for the intact checkpoint. (Linux carries a
    # forked child's peak over exec, so both start from this test process's own: only the difference counts.)
    peak = (
        "import resource, sys\nfrom deepisp.checkpoint import load_model\nfrom deepisp.errors import DeepISPError\n"
        "try:\n    load_model(sys.argv[1])\nexcept DeepISPError:\n    pass\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    evil_peak, good_peak = (
        int(subprocess.run([sys.executable, "-c", peak, str(f)], capture_output=True, text=True, cwd=REPO, timeout=300, check=True).stdout)
        for f in (evil, DEFAULT_CHECKPOINT)
    )
    assert evil_peak < good_peak + 500_000  # kB: nothing near the 2 GB declared
