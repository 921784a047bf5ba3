"""What the benchmark scripts share (benchmarks/common.py), process_latency's measured child process, and the
presets benchmark's ONNX path through the shipped exporter."""

import json
import sys
import time
from dataclasses import replace

import pytest
import torch
from PIL import Image

import deepisp.tiling
from benchmarks import common, presets, process_latency
from benchmarks.process_latency_child import use_training_forward
from deepisp.checkpoint import save_checkpoint
from deepisp.model import PRESETS, DeepISP, ModelConfig

TINY_FULL = ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8)


def test_write_result_puts_json_and_markdown_side_by_side(tmp_path):
    out = tmp_path / "new" / "r.json"
    table = common.write_result(out, {"b": 1, "a": [1.5]}, "| t |\n", indent=1)
    assert table == tmp_path / "new" / "r.md" and table.read_text() == "| t |\n"
    assert out.read_text() == json.dumps({"b": 1, "a": [1.5]}, indent=1) + "\n"  # field order kept
    common.write_result(out, {"b": 1}, "")  # rewritten in place
    assert out.read_text() == '{\n  "b": 1\n}\n'
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.json", "r.md"]  # no temp files left


def test_timings_warm_up_once_and_stop_past_the_budget(monkeypatch):
    clock, calls = [0.0], []
    monkeypatch.setattr(common.time, "perf_counter", lambda: clock[0])

    def one_second() -> None:
        calls.append(1)
        clock[0] += 1.0

    assert common.timings(one_second, 10, budget_s=2.5) == [1.0, 1.0, 1.0]
    assert len(calls) == 4
    assert common.timings(one_second, 2) == [1.0, 1.0]


def test_means_group_rows_by_fields_in_order():
    rows = [{"m": "a", "s": 0.0, "v": 1.0}, {"m": "a", "s": 0.0, "v": 3.0}, {"m": "a", "s": 2.5, "v": 5.0}]
    assert common.means(rows, ["v"], ["m", "s"]) == {"a": {"0": {"v": 2.0}, "2.5": {"v": 5.0}}}


def test_the_eager_reference_computes_what_the_host_path_does(monkeypatch):
    """process_latency's reference path (two convs per block, whole windows) changes speed, not output."""
    monkeypatch.setattr(deepisp.tiling, "BAND_PIXELS", deepisp.tiling.BAND_PIXELS)  # restored after the test
    torch.manual_seed(0)
    model = DeepISP(TINY_FULL).eval()
    x = model.pack(torch.rand(1, 3, 32, 32))
    host = model.low_level.infer(x)
    use_training_forward(model)
    eager = model.low_level.infer(x)
    assert deepisp.tiling.BAND_PIXELS > 1 << 60
    for a, b in zip(host, eager):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("mode", ["eager", "pipelined", "full_frame"])
def test_process_latency_runs_each_path_in_a_child_process(mode, s7_root, tmp_path):
    save_checkpoint(tmp_path / "m.pt", DeepISP(TINY_FULL), TINY_FULL)
    raw = sorted(s7_root.rglob("short_exposure.dng"))[0]
    result = process_latency.run_case(raw, str(tmp_path / "m.pt"), 64, mode, tmp_path)
    assert set(result) == {"seconds", "peak_rss_mb"}, result
    assert result["seconds"] > 0 and result["peak_rss_mb"] > 50  # VmHWM of a process that imported torch


def test_process_latency_default_tile_is_the_commands_own(s7_root, tmp_path):
    save_checkpoint(tmp_path / "m.pt", DeepISP(TINY_FULL), TINY_FULL)
    raw = sorted(s7_root.rglob("short_exposure.dng"))[0]
    assert set(process_latency.run_case(raw, str(tmp_path / "m.pt"), None, "default", tmp_path)) == {"seconds", "peak_rss_mb"}


def test_the_libraw_reference_develops_a_raw_as_a_whole_process(s7_root, tmp_path):
    """The end-to-end comparison's other side: rawpy + the same JPEG write, timed as a process of its own."""
    raw = sorted(s7_root.rglob("short_exposure.dng"))[0]
    out = tmp_path / "libraw.jpg"
    seconds = process_latency.whole_process([sys.executable, "-m", "benchmarks.libraw_develop", str(raw), str(out)])
    assert seconds > 0 and Image.open(out).size[0] > 0
    started = time.perf_counter()
    imports = process_latency.import_seconds([sys.executable, "-m", "benchmarks.libraw_develop", str(raw), str(out)])
    # rawpy, Pillow and numpy, counted once each at the top level: less than that same process's wall time (not
    # the first run's: two processes' times differ with the machine's load)
    assert 0 < imports < time.perf_counter() - started


def test_process_latency_reports_a_failing_child_in_one_line(tmp_path):
    result = process_latency.run_case(tmp_path / "missing.dng", "default", 64, "default", tmp_path)
    assert set(result) == {"error"} and "\n" not in result["error"]


def test_presets_times_the_shipped_onnx_graph():
    pytest.importorskip("onnxruntime")
    run = presets.onnx_pass(DeepISP(PRESETS["tiny-jdd"]).eval(), 32)
    run()


def test_presets_quality_column_finds_a_shipped_model_whatever_its_input_contract():
    # The shipped micro-full meters its exposure and the preset does not: the same network, so its row counts;
    # a model of another shape under the same preset name does not.
    label = "DeepISP micro-full ({}, 8000 steps)"
    quality = {"full": {"mean": {label.format(f): {"psnr": 27.0, "ciede2000": 4.5} for f in ("m.pt", "other.pt")}}}
    metered = replace(PRESETS["micro-full"], exposure="metered", white_balance="as_shot")
    shipped = {"m.pt": metered, "other.pt": replace(metered, n_ll=metered.n_ll + 1)}
    assert presets.shipped_quality(quality, PRESETS["micro-full"], shipped) == "27.00 dB / ΔE 4.50 (m.pt)"
