"""Export: ONNX/TFLite graphs equal the PyTorch model, tiled runs equal the full frame, quantized variants
stay above their floors, metadata round-trips, delegate checks catch what the GPU delegate refuses, and
the export scripts fail cleanly on bad input."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow", reason="export tests need the export extras: pip install -e '.[export]'")

from deepisp.checkpoint import load_model, save_checkpoint  # noqa: E402
from deepisp.errors import DeepISPError  # noqa: E402
from deepisp.export.backends import BACKENDS  # noqa: E402
from deepisp.export.delegates import check  # noqa: E402
from deepisp.export.embedding import read_tflite  # noqa: E402
from deepisp.export.metadata import ExportMetadata  # noqa: E402
from deepisp.export.tf_graphs import tf_graphs  # noqa: E402
from deepisp.metrics import psnr  # noqa: E402
from deepisp.model import PRESETS, ModelConfig  # noqa: E402
from deepisp.runtime import ExportedModel  # noqa: E402
from deepisp.tile_plan import plan_axis, window_size  # noqa: E402
from deepisp.tiling import TorchRunner, run_full_frame  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.test_tiling import trained_like  # noqa: E402

TINY_FULL = ModelConfig(mode="full", n_ll=3, n_hl=2, width=8, hl_width=8)
FRAME, TILE = (150, 214), (32, 32)  # neither a multiple of the tile nor of the 16-pixel high-level stride


def export(
    tmp_path, backend: str, variants: list[str], ckpt, s7_root, *extra: str, frame: tuple[int, int] = FRAME, tile: tuple[int, int] = TILE
) -> subprocess.CompletedProcess:
    """Run export/to_<backend>.py as a user would; data and calibration from the tiny S7 fixture."""
    cmd = [
        sys.executable,
        str(REPO / "export" / f"to_{backend}.py"),
        "--model",
        str(ckpt),
        "--quant",
        *variants,
        "--frame",
        *map(str, frame),
        "--tile",
        *map(str, tile),
        "--data",
        str(s7_root),
        "--calib",
        str(s7_root),
        "--calib-windows",
        "8",
        "--out",
        str(tmp_path),
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    model = trained_like(TINY_FULL, seed=3)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, TINY_FULL)
    return path


def export_into(factory, backend: str, variants: list[str], ckpt, s7_root):
    out = factory.mktemp(backend)
    result = export(out, backend, variants, ckpt, s7_root)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def tflite_export_dir(tmp_path_factory, tiny_ckpt, s7_root):
    return export_into(tmp_path_factory, "tflite", ["all"], tiny_ckpt, s7_root)


@pytest.fixture(scope="module")
def onnx_export_dir(tmp_path_factory, tiny_ckpt, s7_root):
    return export_into(tmp_path_factory, "onnx", ["fp32"], tiny_ckpt, s7_root)


def frame_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return psnr(a.clamp(0, 1), b.clamp(0, 1))


@pytest.mark.parametrize(
    "cfg",
    [TINY_FULL, ModelConfig(mode="jdd", n_ll=4, width=8), ModelConfig(mode="full", n_ll=3, n_hl=2, width=8, hl_width=8, residual_scale=True)],
)
def test_tf_graph_equals_torch_window(cfg):
    model = trained_like(cfg, seed=1)
    window = (48, 64)
    graphs = tf_graphs(model)
    mosaic = torch.rand(window)
    out = graphs["tile"].serve(tf.constant(mosaic.numpy()[None, :, :, None]))
    image, cells = TorchRunner(model).low_level(mosaic)
    assert np.abs(out["image"].numpy()[0].transpose(2, 0, 1) - image.numpy()).max() < 1e-5
    if cfg.mode == "full":
        assert np.abs(out["cells"].numpy()[0].transpose(2, 0, 1) - cells.numpy()).max() < 1e-5
        mean = cells.mean(dim=(1, 2))
        color = graphs["color"].serve(tf.constant(image.permute(1, 2, 0).numpy()[None]), tf.constant(mean.numpy()[None]))
        ref = TorchRunner(model).color(image, mean)
        assert np.abs(color["output"].numpy()[0].transpose(2, 0, 1) - ref.numpy()).max() < 1e-5


@pytest.mark.parametrize("backend", ["tflite", "onnx"])
def test_exported_fp32_tiled_equals_torch_full_frame(backend, tflite_export_dir, onnx_export_dir, tiny_ckpt):
    folder, name = (tflite_export_dir, "deepisp_fp32.json") if backend == "tflite" else (onnx_export_dir, "deepisp_onnx_fp32.json")
    exported = ExportedModel(folder / name)
    model, _ = load_model(tiny_ckpt)
    assert exported.metadata.frame == FRAME
    assert len(plan_axis(FRAME[0], TILE[0], model.cfg).spans) > 2  # really tiled
    # The exported frame (static plan) and two other sizes (graphs resized to other windows).
    for size in (FRAME, (98, 130), (200, 66)):
        mosaic = torch.rand(size)
        ref = run_full_frame(model, mosaic)
        out = exported.run(mosaic)
        assert out.shape == ref.shape
        assert (out - ref).abs().max() < 1e-4
        assert frame_psnr(out, ref) >= 60


def measured(folder, variant: str):
    """What the export measured for a variant, from its sidecar."""
    return ExportMetadata.read(folder / f"deepisp_{variant}.json").measured


def test_quantized_variants_meet_their_floors(tflite_export_dir):
    acc = {v: measured(tflite_export_dir, v).accuracy for v in BACKENDS["tflite"].variants}
    assert acc["fp32"]["psnr_min"] >= 60
    assert acc["fp16"]["psnr_min"] >= 50
    for v in ("dynamic", "int8", "int16x8"):
        assert acc[v]["psnr_min"] >= acc[v]["floor_psnr"] > 0
    # int16 activations are more precise than int8 ones, and int8 is really quantized (not float).
    assert acc["int16x8"]["psnr"] > acc["int8"]["psnr"]
    assert acc["int8"]["psnr"] < acc["fp16"]["psnr"]
    points = measured(tflite_export_dir, "int8").extra["int8_points"]
    assert points and all(a["psnr_alone"] <= b["psnr_alone"] for a, b in zip(points, points[1:]))  # worst first
    from deepisp.export.int8 import QuantizedTile
    from deepisp.model import DeepISP

    names = set(QuantizedTile(DeepISP(ExportMetadata.read(tflite_export_dir / "deepisp_int8.json").model_config)).ranges)
    assert len(points) == min(10, len(names) + 2) and {r["point"] for r in points} <= names | {"weights", "tanh"}
    assert all(np.isfinite(r["psnr_alone"]) for r in points)
    assert all(r["step"] is None or r["step"] == pytest.approx((r["range"][1] - r["range"][0]) / 255) for r in points)
    assert (tflite_export_dir / "deepisp_int8_error.png").is_file()


def test_metadata_round_trip_and_sidecar(tflite_export_dir, onnx_export_dir):
    import onnx

    sidecar = ExportMetadata.read(tflite_export_dir / "deepisp_fp16.json")
    embedded = ExportMetadata.from_json(read_tflite((tflite_export_dir / "deepisp_tile_fp16.tflite").read_bytes()), "fp16 tile graph")
    assert sidecar.measured is not None and embedded == replace(sidecar, measured=None)
    assert embedded.window == (window_size(FRAME[0], TILE[0], TINY_FULL), window_size(FRAME[1], TILE[1], TINY_FULL))
    assert embedded.graphs["tile"]["inputs"]["mosaic"]["shape"] == [1, *embedded.window, 1]
    assert embedded.model_config == TINY_FULL and "RGGB" in embedded.cfa
    proto = onnx.load(str(onnx_export_dir / "deepisp_tile_fp32.onnx"))
    meta = ExportMetadata.from_json(json.loads({p.key: p.value for p in proto.metadata_props}["deepisp"]), "onnx tile graph")
    assert meta.layout == "NCHW" and meta.plan["rows"] == embedded.plan["rows"]
    blob = (onnx_export_dir / "deepisp_tile_fp32.onnx").read_bytes()  # no exporting checkout's paths in the file
    assert b"stack_trace" not in blob and str(REPO).encode() not in blob and len(proto.graph.node) > 10


def test_delegate_verdicts(tflite_export_dir):
    fp16 = measured(tflite_export_dir, "fp16").delegates
    assert fp16["tile"]["gpu"]["ok"] and fp16["color"]["gpu"]["ok"]
    assert "compatible with GPU delegate" in fp16["tile"]["analyzer"]
    assert measured(tflite_export_dir, "int8").delegates["tile"]["npu"]["ok"]  # full-integer, static, NNAPI ops
    # One CONCATENATION only, the residual sum's (of the TANH outputs, on TANH's grid: tests/test_int8.py): one
    # of features and image would force the running image onto the ReLU features' int8 scale (tf_graphs doc).
    ops = check((tflite_export_dir / "deepisp_tile_int8.tflite").read_bytes())["ops"]
    assert ops["CONV_2D"] > 0 and ops["TANH"] > 0 and ops["CONCATENATION"] == 1
    int16 = measured(tflite_export_dir, "int16x8").delegates
    assert not int16["tile"]["gpu"]["ok"]
    assert any("INT16" in f for f in int16["tile"]["gpu"]["fallback"])


def test_gpu_check_catches_symmetric_mirror_pad():
    """The rule check is not vacuous: SYMMETRIC mirror padding is refused by the GPU delegate."""
    fn = tf.function(lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC") * 2.0, input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
    blob = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()]).convert()
    verdict = check(blob)
    assert not verdict["gpu"]["ok"] and "REFLECT" in verdict["gpu"]["fallback"][0]


def test_process_with_exported_backends(tflite_export_dir, onnx_export_dir, tiny_ckpt, tmp_path):
    from deepisp.cli import main
    from tests.conftest import shared_data

    raw = shared_data("raw", "colorchart.dng")
    outs = {}
    for backend, sidecar in (("torch", tiny_ckpt), ("tflite", tflite_export_dir / "deepisp_fp32.json"), ("onnx", onnx_export_dir / "deepisp_onnx_fp32.json")):
        outs[backend] = tmp_path / f"{backend}.png"
        assert main(["process", str(raw), "-o", str(outs[backend]), "--backend", backend, "--model", str(sidecar), "--tile", "256"]) == 0
    from PIL import Image

    ref = np.asarray(Image.open(outs["torch"])).astype(int)
    for backend in ("tflite", "onnx"):
        assert np.abs(np.asarray(Image.open(outs[backend])).astype(int) - ref).max() <= 1  # 8-bit rounding only


def test_refused_variant_leaves_no_files(tmp_path, tiny_ckpt, s7_root):
    result = export(tmp_path, "tflite", ["int8"], tiny_ckpt, s7_root, "--min-psnr", "200")
    assert result.returncode == 1
    assert "REFUSED" in result.stdout and "floor 200" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_calibration_covers_the_datas_input_range():
    """The int8 input range is what the raws use (a ramp to a high percentile of their pixels), or a given
    top; inputs above it are clipped in the windows as the quantized graph will saturate them."""
    from deepisp.export.calibration import INPUT_MAX_PERCENTILE, calibration_windows

    rng = np.random.default_rng(0)
    dark = [rng.uniform(0, 0.2, (40, 60)).astype(np.float32), rng.uniform(0, 0.25, (30, 30)).astype(np.float32)]
    dark[0][5, 7] = 0.9  # one highlight pixel does not stretch the range
    windows = calibration_windows(dark, (32, 48), 5)
    top = windows[0].max()
    assert len(windows) == 5 and all(w.shape == (32, 48) and w.dtype == np.float32 for w in windows)
    assert windows[0].min() == 0 and 0.19 < top < 0.25
    assert top == pytest.approx(np.percentile(np.concatenate([m.ravel()[::7] for m in dark]), INPUT_MAX_PERCENTILE))
    assert max(w.max() for w in windows) == pytest.approx(top)
    full = calibration_windows(dark, (32, 48), 5, input_max=1.0)
    assert full[0].max() == 1.0 and max(w.max() for w in full[1:]) > top
    for bad in (0.0, 1.5):
        with pytest.raises(DeepISPError, match=r"in \(0, 1\]"):
            calibration_windows(dark, (32, 48), 5, input_max=bad)


def test_jdd_models_calibrate_on_raws_as_shot(s7_root):
    """A JDD model develops raws as shot, so int8 calibrates (and the accuracy check runs) on the S7 set's
    normal exposure, whose values span the whole range; a low-light full ISP on its 1/4-exposure inputs."""
    from deepisp.export.calibration import calibration_windows, load_mosaics, model_exposures, raw_paths

    configs = {"jdd": PRESETS["tiny-jdd"], "full": PRESETS["tiny-full"]}
    assert model_exposures(configs["full"], "mimic") == ("medium_exposure",)
    metered = ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8, white_balance="as_shot", exposure="metered")
    assert model_exposures(metered) == ("short_exposure", "medium_exposure")  # a metered model is checked on both
    jdd, full = (raw_paths(s7_root, ("train",), model_exposures(configs[mode])) for mode in ("jdd", "full"))
    assert len(jdd) == len(full) > 0
    assert all(p.stem == "medium_exposure" for p in jdd) and all(p.stem == "short_exposure" for p in full)
    top_jdd, top_full = (calibration_windows([m for _, m in load_mosaics(paths)], (32, 32), 2)[0].max() for paths in (jdd, full))
    assert top_jdd > 2 * top_full


@pytest.mark.parametrize("case", ["missing_model", "unknown_quant", "unwritable_out", "no_raw_files", "bad_tile", "bad_calib_max", "zero_calib_max"])
def test_bad_input_gives_one_clear_line(tmp_path, tiny_ckpt, s7_root, case):
    out = tmp_path / "out"
    args = {
        "missing_model": ["--model", str(tmp_path / "nope.pt")],
        "unknown_quant": ["--quant", "int4"],
        "unwritable_out": [],
        "no_raw_files": ["--quant", "int8"],
        "bad_tile": ["--tile", "30"],
        "bad_calib_max": ["--quant", "int8", "--calib", str(s7_root), "--calib-input-max", "2"],
        "zero_calib_max": ["--quant", "int8", "--calib", str(s7_root), "--calib-input-max", "0"],
    }[case]
    if case == "unwritable_out":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "sub"
    calib = tmp_path / "empty"
    calib.mkdir()
    (calib / "notes.txt").write_text("no raws here")
    cmd = [
        sys.executable,
        str(REPO / "export" / "to_tflite.py"),
        "--model",
        str(tiny_ckpt),
        "--data",
        str(s7_root),
        "--calib",
        str(calib),
        "--frame",
        *map(str, FRAME),
        "--tile",
        "32",
        "--out",
        str(out),
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "error:" in last and "Traceback" not in result.stderr
    expected = {
        "missing_model": "not found",
        "unknown_quant": "invalid choice",
        "unwritable_out": "not a writable folder",
        "no_raw_files": "no raw files",
        "bad_tile": "multiple of 16",
        "bad_calib_max": "--calib-input-max: must be at most 1",
        "zero_calib_max": "--calib-input-max: must be above 0",
    }[case]
    assert expected in last
    assert not out.exists() or not any(out.iterdir())


def test_full_12mp_frame_through_exported_tiles_equals_torch(tmp_path, tiny_ckpt, s7_root):
    """The S7's 3024x4032 frame, with the static plan exported for it, against the untiled PyTorch model."""
    cmd = [
        sys.executable,
        str(REPO / "export" / "to_tflite.py"),
        "--model",
        str(tiny_ckpt),
        "--quant",
        "fp32",
        "--frame",
        "3024",
        "4032",
        "--tile",
        "512",
        "--data",
        str(s7_root),
        "--eval-images",
        "1",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    exported = ExportedModel(tmp_path / "deepisp_fp32.json")
    assert exported.metadata.windows_per_frame > 40
    model, _ = load_model(tiny_ckpt)
    mosaic = torch.rand(3024, 4032)
    out, ref = exported.run(mosaic), run_full_frame(model, mosaic)
    assert frame_psnr(out, ref) >= 60 and (out - ref).abs().max() < 1e-4


@pytest.mark.parametrize("tamper", ["edited_config", "swapped_graphs", "renamed_graphs", "outside_folder", "missing_key", "other_format", "foreign_graph"])
@pytest.mark.parametrize("backend", ["tflite", "onnx"])
def test_tampered_sidecar_is_refused(tflite_export_dir, onnx_export_dir, tmp_path, backend, tamper):
    source, name = (tflite_export_dir, "deepisp_fp32.json") if backend == "tflite" else (onnx_export_dir, "deepisp_onnx_fp32.json")
    work = tmp_path / "export"
    shutil.copytree(source, work)
    meta = json.loads((work / name).read_text())
    if tamper == "edited_config":
        meta["model_config"]["n_hl"] = 1
    elif tamper == "swapped_graphs":
        meta["graphs"]["tile"]["file"], meta["graphs"]["color"]["file"] = meta["graphs"]["color"]["file"], meta["graphs"]["tile"]["file"]
    elif tamper == "renamed_graphs":  # the files renamed onto each other: names check out, roles do not
        tile, color = (work / meta["graphs"][g]["file"] for g in ("tile", "color"))
        tile.rename(work / "t"), color.rename(tile), (work / "t").rename(color)
    elif tamper == "outside_folder":
        meta["graphs"]["tile"]["file"] = "../" + meta["graphs"]["tile"]["file"]
    elif tamper == "missing_key":
        del meta["tile"]
    elif tamper == "other_format":
        meta["format"] = 1
    else:  # a graph file of another variant under this variant's name
        other = "deepisp_tile_fp16.tflite" if backend == "tflite" else None
        if other is None:
            pytest.skip("one ONNX variant is exported here")
        shutil.copy(work / other, work / meta["graphs"]["tile"]["file"])
    (work / name).write_text(json.dumps(meta))
    why = {"renamed_graphs": "graph its sidecar names", "outside_folder": "plain file name"}.get(tamper)
    with pytest.raises(DeepISPError, match=why):
        ExportedModel(work / name)
