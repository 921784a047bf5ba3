"""The CI accuracy gate: the shipped model's exported variants against the committed floors in
benchmarks/baselines.json, on the test split of the project's synthetic S7 set; and proof that the gate
fails on a deliberately bad variant, naming it and the metric."""

import json
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow", reason="the accuracy gate needs the export extras: pip install -e '.[export]'")

from tests.conftest import REPO, shared_data  # noqa: E402

BASELINES = REPO / "benchmarks" / "baselines.json"
# The gate's fixed configuration; benchmarks/baselines.json was measured with exactly this.
VARIANTS = ["fp32", "fp16", "int8", "int8-mixed"]
EXPORT_ARGS = ["--calib-windows", "16", "--eval-images", "2"]


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=REPO, timeout=900)


@pytest.fixture(scope="module")
def gate_export(tmp_path_factory):
    """The shipped model exported as CI's gate does it, plus the synthetic Kodak S7 set it is checked on."""
    from deepisp.export.calibration import default_s7_root

    shared_data("photos", "kodak24")
    root = tmp_path_factory.mktemp("gate")
    data = default_s7_root(root / "s7-kodak24", progress=False)
    out = root / "export"
    result = run("export/to_tflite.py", "--quant", *VARIANTS, "--data", str(data), "--calib", str(data), "--out", str(out), *EXPORT_ARGS)
    assert result.returncode == 0, result.stdout + result.stderr
    return data, out


def gate(data, exported, out_json) -> subprocess.CompletedProcess:
    return run("benchmarks/accuracy.py", "--exported", str(exported), "--data", str(data), "--split", "test", "--check", str(BASELINES), "--out", str(out_json))


def test_gate_passes_on_the_shipped_model(gate_export, tmp_path):
    data, exported = gate_export
    result = gate(data, exported, tmp_path / "accuracy.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accuracy gate passed" in result.stdout
    results = json.loads((tmp_path / "accuracy.json").read_text())
    assert set(results["variants"]) == set(json.loads(BASELINES.read_text())["variants"])
    assert (tmp_path / "accuracy.jpg").is_file()
    assert {line.split("|")[1].strip() for line in (tmp_path / "accuracy.md").read_text().splitlines() if line.startswith("| int")} == {
        v for v in VARIANTS if v.startswith("int")
    }


def test_gate_fails_on_a_deliberately_bad_variant(gate_export, tmp_path):
    """An export bug that ships int8 weights under the fp16 name (with fp16's metadata, as the exporter would
    embed it: a plain file swap is refused earlier, by the metadata check): the gate names fp16 and the metric."""
    from deepisp.export.embedding import embed_tflite, read_tflite

    data, exported = gate_export
    bad = tmp_path / "export"
    shutil.copytree(exported, bad)
    fp16_meta = read_tflite((exported / "deepisp_tile_fp16.tflite").read_bytes())
    (bad / "deepisp_tile_fp16.tflite").write_bytes(embed_tflite((exported / "deepisp_tile_int8.tflite").read_bytes(), fp16_meta))
    result = gate(data, bad, tmp_path / "accuracy.json")
    assert result.returncode == 1
    assert "regression: fp16: psnr_vs_float" in result.stderr
    assert "regression: int8" not in result.stderr  # the other variants still pass
