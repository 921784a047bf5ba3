"""android_harness: benchmark_model log parsing on real-format samples, ELF/ABI checks, and the whole
harness end to end against a fake phone (tests/fixtures/android/fake_adb.py + fake_benchmark_model.py,
which runs the model for real with the LiteRT interpreter and prints benchmark_model's format)."""

import csv
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from android_harness.adb import parse_devices, pick_device
from android_harness.bench import main
from android_harness.benchmark_output import parse, parse_stats
from android_harness.elf import binary_abi, check_runs_on
from android_harness.report import make_row, windows_per_frame
from android_harness.tflite_info import GraphInfo, TensorInfo, read_graph_info
from deepisp.errors import DeepISPError
from deepisp.export.metadata import ExportMetadata, describe
from deepisp.model import ModelConfig
from deepisp.tile_plan import window_size
from tests.conftest import shared_data

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "android"


def sample(name: str):
    return parse((FIXTURES / name).read_text())


def write_tile_sidecar(folder: Path, variant: str, frame: tuple[int, int]) -> ExportMetadata:
    """The export sidecar deepisp_<variant>.json of the tile graph deepisp_tile_<variant>.tflite in `folder`, as
    the export writes it for a tiny jdd model whose window is the 32x32 of the stand-in graphs."""
    cfg, tile = ModelConfig(mode="jdd", n_ll=1, width=8), (28, 28)
    window = (window_size(frame[0], tile[0], cfg), window_size(frame[1], tile[1], cfg))
    meta = describe(cfg, window, frame, tile, "tflite", variant, {"tile": f"deepisp_tile_{variant}.tflite"})
    meta.write(folder / f"deepisp_{variant}.json")
    return meta


def make_elf(path: Path, machine: int = 183, bits: int = 64, interp: str | None = "/system/bin/linker64") -> Path:
    """A minimal ELF file: header, and one PT_INTERP program header when `interp` is given."""
    blob = (interp.encode() + b"\0") if interp else b""
    ident = b"\x7fELF" + bytes([bits // 32, 1, 1, 0]) + bytes(8)
    if bits == 64:
        phoff, phsize = 64, 56
        header = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0, phoff, 0, 0, 64, phsize, int(bool(interp)), 64, 0, 0)
        phdr = struct.pack("<IIQQQQQQ", 3, 4, phoff + phsize, 0, 0, len(blob), len(blob), 1) if interp else b""
    else:
        phoff, phsize = 52, 32
        header = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, 0, phoff, 0, 0, 52, phsize, int(bool(interp)), 40, 0, 0)
        phdr = struct.pack("<IIIIIIII", 3, phoff + phsize, 0, 0, len(blob), len(blob), 4, 1) if interp else b""
    path.write_bytes(header + phdr + blob + bytes(64))
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------- parsing real-format samples


def test_gpu_partial_with_profile():
    out = sample("bm_gpu_partial_profile.txt")
    assert (out.init_ms, out.first_inference_us, out.warmup_avg_us, out.inference_avg_us) == (1187.45, 96218, 44985.2, 40521.6)
    s = out.inference
    assert (s.count, s.avg, s.std, s.min, s.max, s.first, s.median) == (50, 40521.6, 812, 39408, 43817, 40911, 40386)
    assert out.warmup.count == 13 and out.warmup.max == 96218
    assert (out.mem_init_mb, out.mem_overall_mb) == (151.277, 153.902)
    assert out.delegation == {"GPU": "partial"} and out.delegate_kernels == {"GPU": 1}
    assert out.unsupported_ops == ["MIRROR_PAD: Operation is not supported."] and out.gpu_split == (16, 1)
    assert out.replaced == {"TfLiteGpuDelegateV2": (16, 17)}
    # the regular-runs table, not the initialization one that precedes it
    assert [(o.node_type, o.avg_ms, o.executor, o.name) for o in out.ops] == [
        ("MIRROR_PAD", 1.874, "CPU", "[deepisp/pad/MirrorPad]:0"),
        ("TfLiteGpuDelegateV2", 38.517, "GPU", "[Identity, Identity_1]:17"),
    ]
    assert out.ops[0].percent == 4.64 and out.nodes_executed == 2
    assert out.fallback_ops("GPU") == ["MIRROR_PAD"] and out.errors == [] and not out.failed


def test_gpu_full_nnapi_partial_xnnpack_profiled():
    ignored = parse("INFO: Though NNAPI delegate is explicitly applied, the model graph will not be executed by the delegate.")
    assert ignored.delegate_status("NNAPI") == "none" and ignored.delegate_status("GPU") == "not applied"
    full = sample("bm_gpu_full.txt")
    assert full.delegate_status("GPU") == "full" and full.fallback_ops("GPU") == [] and full.inference_avg_us == 72466.1
    nnapi = sample("bm_nnapi_partial_profile.txt")
    assert nnapi.delegation == {"NNAPI": "partial"} and nnapi.delegate_kernels == {"NNAPI": 2}
    # MEAN went to the default XNNPACK delegate: on the CPU as far as NNAPI is concerned
    assert nnapi.fallback_ops("NNAPI") == ["MIRROR_PAD", "TfLiteXNNPackDelegate"]
    assert [o.executor for o in nnapi.ops] == ["CPU", "NNAPI", "XNNPACK", "NNAPI"]
    xnn = sample("bm_xnnpack_profile.txt")
    assert xnn.delegate_status("XNNPACK") == "partial" and len(xnn.ops) == 7 and xnn.nodes_executed == 7
    assert xnn.ops[2].node_type == "Convolution (NHWC, F32) IGEMM" and xnn.ops[2].times_called == 8
    assert xnn.ops[2].executor == "delegate" and xnn.fallback_ops("XNNPACK") == ["MIRROR_PAD"]


def test_delegate_unavailable_and_failed_runs():
    windows = (48, "sidecar x.json", "3024x4032")
    unavailable = sample("bm_gpu_unavailable.txt")
    row = make_row("v", "gpu", "GPU", 4, unavailable, windows, "log")
    assert row["status"] == "ok" and row["delegated"] == "unavailable" and row["not_on_delegate"] == "all"
    assert row["mean_ms"] == 21.126
    assert row["frame_s"] == round(21.1259 * 48 / 1000, 3)
    failed = sample("bm_gpu_failed.txt")
    assert failed.failed and failed.errors[0] == "TfLiteGpuDelegate Init: MEAN: Unsupported data type for reduction: INT8"
    assert failed.errors[-1] == "Benchmarking failed."
    row = make_row("v", "gpu", "GPU", 4, failed, windows, "log")
    assert row["status"] == "failed" and "Unsupported data type" in row["error"] and row["frame_s"] is None


def test_single_run_scientific_notation_and_legacy_format():
    slow = sample("bm_cpu_single_run.txt")
    assert slow.inference_avg_us == 1834560.0 and slow.warmup_avg_us == 1902380.0  # "1.83456e+06"
    assert (slow.inference.count, slow.inference.avg, slow.inference.std) == (1, 1834562, 0)  # "count=1 curr=..."
    assert slow.first_inference_us == 1902377 and slow.fallback_ops(None) == []
    old = sample("bm_legacy.txt")
    assert (old.init_ms, old.warmup_avg_us, old.inference_avg_us) == (6.448, 30517.6, 30488.2)
    assert old.inference.std == 268 and len(old.ops) == 6 and (old.ops[1].node_type, old.ops[1].avg_ms) == ("CONV_2D", 9.731)
    same = parse_stats("count=5 curr=100(all same) p5=100 median=100 p95=100")
    assert (same.count, same.avg, same.std, same.min, same.max) == (5, 100, 0, 100, 100)


def test_adb_devices_and_choice():
    devices = parse_devices((FIXTURES / "adb_devices_mixed.txt").read_text())
    assert [d.state.split()[0] for d in devices] == ["device", "unauthorized", "offline", "no"]
    assert pick_device(devices, "2A121FDH3004Z1") == "2A121FDH3004Z1"
    for serial, words in [
        (None, "4 devices attached"),
        ("R5CT20ABCDE", "is unauthorized: unlock the phone"),
        ("emulator-5554", "is offline"),
        ("0123456789ABCDEF", "no permissions"),
        ("nope", "not attached"),
    ]:
        with pytest.raises(DeepISPError, match=words):
            pick_device(devices, serial)
    with pytest.raises(DeepISPError, match="no Android device found"):
        pick_device([], None)


def test_elf_abi_checks(tmp_path):
    assert binary_abi(make_elf(tmp_path / "a64")) == "arm64-v8a"
    assert binary_abi(make_elf(tmp_path / "a32", 40, 32, "/system/bin/linker")) == "armeabi-v7a"
    assert binary_abi(make_elf(tmp_path / "x64static", 62, 64, None)) == "x86_64"
    # a 32-bit ARM build runs on a 64-bit phone that lists armeabi-v7a
    assert check_runs_on(tmp_path / "a32", ["arm64-v8a", "armeabi-v7a"], "phone") == "armeabi-v7a"
    with pytest.raises(DeepISPError, match=r"built for x86_64 but phone runs arm64-v8a.*android_aarch64_benchmark_model.*android_arm64"):
        check_runs_on(tmp_path / "x64static", ["arm64-v8a"], "phone")
    with pytest.raises(DeepISPError, match=r"desktop Linux build .*ld-linux-aarch64"):
        binary_abi(make_elf(tmp_path / "linux", 183, 64, "/lib/ld-linux-aarch64.so.1"))
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(DeepISPError, match="not an executable"):
        binary_abi(tmp_path / "script")


def test_windows_per_frame(tmp_path):
    tile = GraphInfo((TensorInfo("mosaic", (1, 512, 512, 1), np.dtype(np.float32)),), ())
    model = tmp_path / "deepisp_tile_fp16.tflite"
    assert windows_per_frame(model, tile, (3024, 4032)) == (6 * 8, "estimate ceil(3024/512)*ceil(4032/512)", "3024x4032")
    meta = write_tile_sidecar(tmp_path, "fp16", (3000, 4000))
    # Skipped: JSON that is not a sidecar, and a sidecar of another format version.
    (tmp_path / "notes.json").write_text("[1, 2]")
    (tmp_path / "deepisp_a.json").write_text(json.dumps(meta.to_json() | {"format": 0, "windows_per_frame": 1}))
    assert windows_per_frame(model, tile, (3024, 4032)) == (meta.windows_per_frame, "sidecar deepisp_fp16.json", "3000x4000")
    head = GraphInfo((TensorInfo("cells", (1, 8, 8, 24), np.dtype(np.float32)),), ())
    assert windows_per_frame(tmp_path / "deepisp_head_fp16.tflite", head, (3024, 4032)) == (None, "", "")


def test_tflite_info_rejects_non_models(tmp_path):
    (tmp_path / "x.tflite").write_bytes(b"not a model at all")
    with pytest.raises(DeepISPError, match="not a TFLite model"):
        read_graph_info(tmp_path / "x.tflite")
    with pytest.raises(DeepISPError, match="model not found"):
        read_graph_info(tmp_path / "missing.tflite")


def test_tiles_from_the_real_dng_keep_rggb_phase():
    from android_harness.device_accuracy import cut_tiles, load_source

    mosaic = load_source(shared_data("raw", "colorchart.dng"))
    tiles = cut_tiles(mosaic, 3, 64, 96)
    assert tiles.shape == (3, 64, 96) and tiles.dtype == np.float32 and tiles.min() >= 0 and tiles.max() <= 1
    h, w = mosaic.shape
    y, x = (h - 64) // 2 // 2 * 2, (w - 96) // 2 // 2 * 2  # the middle window, on even coordinates
    assert np.array_equal(tiles[1], mosaic[y : y + 64, x : x + 96])


# ---------------------------------------------------------------- end to end against a fake phone

PIXEL = {
    "serial": "FAKE0001",
    "state": "device",
    "props": {
        "ro.product.manufacturer": "Google",
        "ro.product.model": "Pixel 7",
        "ro.soc.manufacturer": "Google",
        "ro.soc.model": "Tensor G2",
        "ro.build.version.release": "14",
        "ro.build.version.sdk": "34",
        "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
        "ro.product.cpu.abi": "arm64-v8a",
        "ro.hardware.egl": "mali",
    },
    "gles": "GLES: ARM, Mali-G710, OpenGL ES 3.2 v1.r40p0-01eac0.4f8ba1d19b5d14ee4e0f11ed5af8ca0d",
    "gpu_unsupported": ["MIRROR_PAD"],
    "xnnpack_unsupported": ["MIRROR_PAD"],
    "nnapi_unsupported": ["MEAN"],
}
QUICK = ["--runs", "3", "--warmup", "1", "--min-secs", "0"]


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory) -> Path:
    """A tiny stand-in for the export: tile graphs (fp32 with a sidecar, fp16 without) and a head graph."""
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    out = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(0, 0.5, (3, 3, 1, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 1], tf.float32, name="mosaic")])
    def tile(x):
        image = tf.tanh(tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT"), kernel, 1, "VALID"))
        cells = tf.reduce_mean(tf.reshape(image, [1, 2, 16, 2, 16, 3]), axis=[2, 4])
        return {"image": image, "cells": cells}

    weights = tf.constant(rng.normal(0, 0.5, (3, 30)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 2, 2, 3], tf.float32, name="cells")])
    def head(cells):
        return tf.matmul(tf.reduce_mean(cells, axis=[1, 2]), weights)

    for name, fn, fp16 in [("deepisp_tile_fp32", tile, False), ("deepisp_tile_fp16", tile, True), ("deepisp_head_fp32", head, False)]:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
        if fp16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        (out / f"{name}.tflite").write_bytes(converter.convert())
    write_tile_sidecar(out, "fp32", (3024, 4032))
    return out


class FakePhone:
    """The fake adb first on PATH, its state folder, and a benchmark_model 'binary' for arm64 Android."""

    def __init__(self, root: Path, monkeypatch):
        self.state = root / "adb_state"
        self.state.mkdir()
        bin_dir = root / "bin"
        bin_dir.mkdir()
        # A wrapper whose shebang is this interpreter, so the fakes run with the venv's numpy and LiteRT
        # (fake adb starts fake_benchmark_model.py with the same interpreter). PATH holds nothing else, so
        # a real adb on the machine can never be picked up.
        self.adb = bin_dir / "adb"
        self.adb.write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(FIXTURES / 'fake_adb.py')!r}, run_name='__main__')\n")
        self.adb.chmod(0o755)
        monkeypatch.setenv("PATH", str(bin_dir))
        monkeypatch.setenv("FAKE_ADB_STATE", str(self.state))
        monkeypatch.setenv("FAKE_BENCHMARK_MODEL", str(FIXTURES / "fake_benchmark_model.py"))
        monkeypatch.delenv("ANDROID_SERIAL", raising=False)
        self.binary = make_elf(root / "android_aarch64_benchmark_model")
        monkeypatch.setenv("TFLITE_BENCHMARK_MODEL", str(self.binary))
        self.attach(PIXEL)

    def attach(self, *devices: dict) -> None:
        (self.state / "devices.json").write_text(json.dumps({"devices": list(devices)}))

    def files(self, serial: str = "FAKE0001") -> list[str]:
        fs = self.state / "fs" / serial
        return sorted(str(p.relative_to(fs)) for p in fs.rglob("*")) if fs.exists() else []

    def calls(self) -> list[str]:
        return (self.state / "calls.log").read_text().splitlines()


@pytest.fixture
def phone(tmp_path, monkeypatch) -> FakePhone:
    return FakePhone(tmp_path, monkeypatch)


def one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ") or "Traceback" in ln]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_tflite_info_matches_the_interpreter(export_dir):
    from ai_edge_litert.interpreter import Interpreter

    for model in export_dir.glob("*.tflite"):
        info, interp = read_graph_info(model), Interpreter(model_path=str(model))
        for mine, theirs in [(info.inputs, interp.get_input_details()), (info.outputs, interp.get_output_details())]:
            assert [(t.name, t.shape, t.dtype) for t in mine] == [(d["name"], tuple(d["shape"]), np.dtype(d["dtype"])) for d in theirs]


def test_one_model_on_the_gpu(phone, export_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["--model", str(export_dir / "deepisp_tile_fp32.tflite"), "--delegate", "gpu", *QUICK, "--out", str(out)]) == 0
    doc = results(out)
    assert doc["complete"] and doc["device"]["model"] == "Google Pixel 7" and doc["device"]["soc"] == "Google Tensor G2"
    assert doc["device"]["gpu"] == "ARM Mali-G710" and doc["device"]["abis"][0] == "arm64-v8a"
    (run,) = doc["runs"]
    row, parsed = run["row"], run["parsed"]
    assert (row["variant"], row["delegate"], row["threads"], row["status"]) == ("deepisp_tile_fp32", "gpu", 4, "ok")
    assert row["delegated"] == "partial" and row["not_on_delegate"] == "MIRROR_PAD" and row["runs"] == 3
    # the row holds exactly what the saved log says
    log = parse((out / row["log"]).read_text())
    assert row["mean_ms"] == round(log.inference_avg_us / 1000, 3) > 0 and row["init_ms"] == log.init_ms
    assert parsed["gpu_split"] == [4, 1] and [o["executor"] for o in parsed["ops"]] == ["CPU", "GPU"]
    windows = ExportMetadata.read(export_dir / "deepisp_fp32.json").windows_per_frame
    assert (row["windows_per_frame"], row["windows_source"]) == (windows, "sidecar deepisp_fp32.json")
    assert row["frame_s"] == round(row["mean_ms"] * windows / 1000, 3)
    with open(out / "results.csv") as f:
        assert [r["delegated"] for r in csv.DictReader(f)] == ["partial"]
    md = (out / "results.md").read_text()
    assert "| deepisp_tile_fp32 | gpu | 4 | partial |" in md and f"{windows} (sidecar)" in md
    assert "deepisp_tile_fp32 / gpu / threads=4: MIRROR_PAD" in md
    assert "| deepisp_tile_fp32 | gpu | 4 | partial |" in capsys.readouterr().out
    # pushed files removed, binary made executable before running, nothing half-written left behind
    assert phone.files() == ["data", "data/local", "data/local/tmp"]
    calls = phone.calls()
    assert any("chmod 755 /data/local/tmp/deepisp_bench/benchmark_model" in c for c in calls)
    assert sorted(p.name for p in out.iterdir()) == ["logs", "results.csv", "results.json", "results.md"]


def test_sweep_every_variant_delegate_and_thread_count(phone, export_dir, tmp_path):
    phone.attach(PIXEL | {"gpu": "unavailable"})
    out = tmp_path / "sweep"
    np.save(tmp_path / "tiles.npy", np.full((5, 32, 32), 0.25, np.float32))  # ready-cut [N,h,w] tiles
    args = [
        "--sweep",
        str(export_dir),
        "--delegate",
        "gpu",
        "nnapi",
        "--threads",
        "1",
        "2",
        *QUICK,
        "--tiles",
        str(tmp_path / "tiles.npy"),
        "--num-tiles",
        "1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    captures = {(a["variant"], a["delegate"]): a for a in results(out)["accuracy"]}
    assert "not a float32 [1,H,W,1] raw window" in captures["deepisp_head_fp32", "gpu"]["error"]
    assert captures["deepisp_tile_fp16", "nnapi"]["file"] == "accuracy/deepisp_tile_fp16__nnapi.npz"
    assert np.load(out / "accuracy" / "deepisp_tile_fp16__nnapi.npz")["output_1"].shape == (1, 32, 32, 3)
    rows = [r["row"] for r in results(out)["runs"]]
    assert [(r["variant"], r["delegate"], r["threads"]) for r in rows] == [
        (v, d, t) for v in ("deepisp_head_fp32", "deepisp_tile_fp16", "deepisp_tile_fp32") for d in ("gpu", "nnapi") for t in (1, 2)
    ]
    by = {(r["variant"], r["delegate"]): r for r in rows}
    assert by["deepisp_tile_fp32", "gpu"]["delegated"] == "unavailable" and by["deepisp_tile_fp32", "gpu"]["not_on_delegate"] == "all"
    assert by["deepisp_tile_fp32", "nnapi"]["delegated"] == "partial"
    assert by["deepisp_tile_fp32", "nnapi"]["not_on_delegate"] == "MEAN"
    assert by["deepisp_head_fp32", "nnapi"]["windows_per_frame"] is None  # not a tile graph
    fp16 = by["deepisp_tile_fp16", "nnapi"]
    assert fp16["windows_per_frame"] == 95 * 126 and fp16["windows_source"].startswith("estimate")
    assert len(list((out / "logs").glob("*.log"))) == 12 and phone.files() == ["data", "data/local", "data/local/tmp"]


def test_outputs_captured_on_the_device_match_the_model(phone, export_dir, tmp_path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    mosaic = np.random.default_rng(1).uniform(0, 1, (70, 90)).astype(np.float32)
    np.save(tmp_path / "mosaic.npy", mosaic)
    out = tmp_path / "acc"
    model = export_dir / "deepisp_tile_fp32.tflite"
    assert (
        main(
            [
                "--model",
                str(model),
                "--delegate",
                "cpu",
                "gpu",
                *QUICK,
                "--no-profile",
                "--tiles",
                str(tmp_path / "mosaic.npy"),
                "--num-tiles",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    interp = Interpreter(model_path=str(model), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    cpu, gpu = np.load(out / "accuracy" / "deepisp_tile_fp32__cpu.npz"), np.load(out / "accuracy" / "deepisp_tile_fp32__gpu.npz")
    corners = [(0, 0), (18, 28), (38, 58)]  # the diagonal, on even coordinates
    assert np.array_equal(cpu["inputs"][..., 0], np.stack([mosaic[y : y + 32, x : x + 32] for y, x in corners]))
    assert list(cpu["output_names"]) == [d["name"] for d in interp.get_output_details()]
    for i in range(3):
        interp.set_tensor(interp.get_input_details()[0]["index"], cpu["inputs"][i : i + 1])
        interp.invoke()
        for k, detail in enumerate(interp.get_output_details()):
            want = interp.get_tensor(detail["index"])[0]
            assert np.allclose(cpu[f"output_{k}"][i], want, atol=1e-6)
            assert np.allclose(gpu[f"output_{k}"][i], want, atol=2e-3)  # the fake GPU returns fp16-rounded outputs
    assert not np.array_equal(gpu["output_1"], cpu["output_1"])
    assert str(gpu["delegate"]) == "gpu" and [a["file"] != "" for a in results(out)["accuracy"]] == [True, True]
    assert phone.files() == ["data", "data/local", "data/local/tmp"]


def test_device_dies_mid_sweep_keeps_results(phone, export_dir, tmp_path, capsys):
    # shell calls: getprop, dumpsys, mkdir, chmod, then one per run: the third run finds the phone gone
    phone.attach(PIXEL | {"die_after_shell": 6})
    out = tmp_path / "partial"
    args = ["--model", str(export_dir / "deepisp_tile_fp32.tflite"), "--delegate", "gpu", "nnapi", "xnnpack", *QUICK, "--out", str(out)]
    assert main(args) == 2
    err = one_error_line(capsys)
    assert "device FAKE0001 went away" in err and "the 2 of 3 runs finished before are kept in" in err
    doc = results(out)
    assert not doc["complete"] and [r["row"]["delegate"] for r in doc["runs"]] == ["gpu", "nnapi"]
    assert "went away" in doc["note"] and "Incomplete" in (out / "results.md").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_failed_and_timed_out_runs_are_rows_not_crashes(phone, export_dir, tmp_path, capsys):
    model = str(export_dir / "deepisp_tile_fp32.tflite")
    out = tmp_path / "failed"
    # benchmark_model itself refuses the flags: the row carries its ERROR line, the sweep goes on
    assert main(["--model", model, "--delegate", "cpu", "xnnpack", *QUICK, "--benchmark-arg=--input_layer=a,b", "--out", str(out)]) == 1
    rows = [r["row"] for r in results(out)["runs"]]
    assert [r["status"] for r in rows] == ["failed", "failed"] and "must match the number of items" in rows[0]["error"]
    assert "2 of 2 runs failed" in capsys.readouterr().err
    phone.attach(PIXEL | {"run_sleep": 5})
    assert main(["--model", model, "--delegate", "cpu", *QUICK, "--run-timeout", "1", "--out", str(out)]) == 1
    (row,) = [r["row"] for r in results(out)["runs"]]
    assert row["status"] == "failed" and "timed out after 1 s" in row["error"]
    assert phone.files() == ["data", "data/local", "data/local/tmp"]


@pytest.mark.parametrize(
    "setup,extra,words",
    [
        ("none", [], "no Android device found"),
        ("two", [], "2 devices attached (FAKE0001 (device), FAKE0002 (device)); pick one with -s SERIAL"),
        ("two", ["-s", "FAKE0003"], "device FAKE0003 is not attached"),
        ("unauthorized", [], "device FAKE0001 is unauthorized: unlock the phone and accept"),
        ("x86_64", [], "is built for x86_64 but Google Pixel 7 (FAKE0001) runs arm64-v8a, armeabi-v7a, armeabi; download"),
        ("desktop", [], "is a desktop Linux build"),
        ("no_binary", [], "no benchmark_model binary: pass --benchmark-model PATH or set $TFLITE_BENCHMARK_MODEL"),
        ("no_adb", [], "adb not found on PATH"),
        ("missing_model", [], "model not found"),
    ],
)
def test_bad_setups_give_one_line_and_no_output(setup, extra, words, phone, export_dir, tmp_path, monkeypatch, capsys):
    model = export_dir / "deepisp_tile_fp32.tflite"
    if setup == "none":
        phone.attach()
    elif setup == "two":
        phone.attach(PIXEL, PIXEL | {"serial": "FAKE0002"})
    elif setup == "unauthorized":
        phone.attach(PIXEL | {"state": "unauthorized"})
    elif setup == "x86_64":
        monkeypatch.setenv("TFLITE_BENCHMARK_MODEL", str(make_elf(tmp_path / "bm", 62, 64, "/system/bin/linker64")))
    elif setup == "desktop":
        extra = ["--benchmark-model", str(make_elf(tmp_path / "bm", 183, 64, "/lib/ld-linux-aarch64.so.1"))]
    elif setup == "no_binary":
        monkeypatch.delenv("TFLITE_BENCHMARK_MODEL")
    elif setup == "no_adb":
        monkeypatch.setenv("PATH", str(tmp_path))
        monkeypatch.delenv("ANDROID_HOME", raising=False)
        monkeypatch.delenv("ANDROID_SDK_ROOT", raising=False)
    elif setup == "missing_model":
        model = tmp_path / "nope.tflite"
    out = tmp_path / "out"
    assert main(["--model", str(model), "--delegate", "cpu", *QUICK, "--out", str(out), *extra]) == 2
    assert words in one_error_line(capsys)
    assert not (out / "results.json").exists()
    assert phone.files() in ([], ["data", "data/local", "data/local/tmp"])  # nothing pushed, or all removed


def test_second_device_with_serial_and_adb_from_android_home(phone, export_dir, tmp_path, monkeypatch):
    phone.attach(PIXEL, PIXEL | {"serial": "FAKE0002"})
    sdk = tmp_path / "sdk" / "platform-tools"
    sdk.mkdir(parents=True)
    phone.adb.rename(sdk / "adb")
    monkeypatch.setenv("ANDROID_HOME", str(tmp_path / "sdk"))
    out = tmp_path / "second"
    assert (
        main(["--model", str(export_dir / "deepisp_tile_fp32.tflite"), "-s", "FAKE0002", "--delegate", "xnnpack", *QUICK, "--no-profile", "--out", str(out)])
        == 0
    )
    assert results(out)["device"]["serial"] == "FAKE0002" and results(out)["runs"][0]["row"]["delegated"] == "partial"
    assert all(c.startswith("-s FAKE0002") or c == "devices" for c in phone.calls())


def test_script_mode_help_and_error_without_traceback(tmp_path):
    help_text = subprocess.run([sys.executable, "android_harness/bench.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert help_text.returncode == 0 and "--sweep DIR" in help_text.stdout and "gpu-fp32" in help_text.stdout
    proc = subprocess.run([sys.executable, "android_harness/bench.py", "--model", str(tmp_path / "x.tflite")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"error: model not found: {tmp_path / 'x.tflite'}; pass an exported .tflite file"]


def test_hung_adb_is_killed_with_everything_it_started(tmp_path):
    """A hung adb that forked a child: the timeout must kill both, not leave the child holding the pipes."""
    import time

    from android_harness.adb import Adb

    pid_file = tmp_path / "child.pid"
    fake = tmp_path / "adb"
    fake.write_text(
        f"#!{sys.executable}\nimport subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\ntime.sleep(60)\n"
    )
    fake.chmod(0o755)
    t0 = time.perf_counter()
    with pytest.raises(subprocess.TimeoutExpired):
        Adb(fake, timeout=2)._run(["devices"], 2)
    assert time.perf_counter() - t0 < 30
    child = int(pid_file.read_text())
    time.sleep(0.5)
    stat = Path(f"/proc/{child}/stat")
    # Gone, or a zombie waiting for init to reap it (its parent was killed): either way no longer running.
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_an_adb_that_prints_without_end_is_stopped_with_bounded_memory(tmp_path, monkeypatch):
    from android_harness import adb as adb_module

    monkeypatch.setattr(adb_module, "MAX_OUTPUT_BYTES", 1 << 20)
    endless = tmp_path / "adb"
    endless.write_text("#!/bin/sh\nexec yes 'a line of output, again and again'\n")
    endless.chmod(0o755)
    with pytest.raises(DeepISPError, match="printed more than"):
        adb_module.Adb(endless, timeout=60)._run(["devices"], 60)
    chatty = tmp_path / "chatty"
    chatty.write_text("#!/bin/sh\nprintf 'ok\\033[31m\\n'; printf 'warn' >&2\n")
    chatty.chmod(0o755)
    done = adb_module.Adb(chatty, timeout=60)._run([], 60)
    assert done.returncode == 0 and done.stdout == "ok\x1b[31m\n" and done.stderr == "warn"


@pytest.mark.parametrize("values", [np.full((4, 8, 8), np.nan), np.full((4, 8, 8), 3.0), np.zeros((0, 8, 8))], ids=["NaN", "above 1", "empty"])
def test_tiles_that_are_not_normalised_raw_are_refused(tmp_path, values):
    from android_harness.device_accuracy import load_source

    np.save(tmp_path / "t.npy", values)
    with pytest.raises(DeepISPError, match="normalised raw"):
        load_source(tmp_path / "t.npy")
