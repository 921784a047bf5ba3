"""Export metadata: `describe` builds it, its JSON keeps the format-1 keys in their order (the JSON is
embedded in every exported graph), the sidecar adds the measured keys after it, and `ExportMetadata.from_json`
reads both back exactly while refusing JSON of another tool, of another format version, or with keys missing
or malformed, in one line."""

import json
from dataclasses import asdict, replace

import pytest

from deepisp.errors import DeepISPError
from deepisp.export.metadata import FORMAT, ExportMetadata, Measured, describe
from deepisp.model import ModelConfig
from deepisp.tile_plan import window_size

CFG = ModelConfig(mode="full", n_ll=3, n_hl=2, width=8, hl_width=8)
FRAME, TILE = (150, 214), (32, 32)
FILES = {"tile": "deepisp_tile_fp32.tflite", "color": "deepisp_color_fp32.tflite"}
# The format-2 keys in the order every exported graph holds them: another order changes the exported files.
# (Format 2 added `input`, what an app does to the mosaic before pass 1, and so changed what `normalisation` says.)
KEYS = (
    "format name backend variant layout tile_graph graphs normalisation reference_wb input cfa frame window tile windows_per_frame plan "
    "monomial_order model_config"
).split()
MEASURED = Measured(
    bytes={"tile": 100, "color": 50},
    targets={"tile": "gpu", "color": "gpu"},
    accuracy={"psnr": 80.0, "psnr_min": 79.0, "floor_psnr": 60.0},
    delegates={},
    extra={"int8_points": [{"point": "b0_image", "psnr_alone": 50.0}]},
    accepted=False,
    problems=["too slow"],
)


def tiny() -> ExportMetadata:
    window = (window_size(FRAME[0], TILE[0], CFG), window_size(FRAME[1], TILE[1], CFG))
    return describe(CFG, window, FRAME, TILE, "tflite", "fp32", FILES)


def as_read(meta: ExportMetadata) -> dict:
    """The JSON as a reader gets it back from a file."""
    return json.loads(json.dumps(meta.to_json()))


def test_json_keeps_the_format_2_keys_and_round_trips():
    meta = tiny()
    data = as_read(meta)
    assert list(data) == KEYS and data["format"] == FORMAT == 2 and data["name"] == "DeepISP"
    assert meta.to_json() == data  # plain JSON values: lists, the config as a dict
    assert data["model_config"] == asdict(CFG) and data["frame"] == list(FRAME) and data["layout"] == "NHWC"
    assert data["tile_graph"] == FILES["tile"] and meta.files == FILES
    assert ExportMetadata.from_json(data, "x") == meta and meta.measured is None


def test_sidecar_adds_the_measured_keys_after_the_metadata(tmp_path):
    meta = replace(tiny(), measured=MEASURED)
    meta.write(tmp_path / "deepisp_fp32.json")
    data = json.loads((tmp_path / "deepisp_fp32.json").read_text())
    assert list(data) == [*KEYS, "bytes", "targets", "accuracy", "delegates", "int8_points", "accepted", "problems"]
    assert ExportMetadata.read(tmp_path / "deepisp_fp32.json") == meta
    assert as_read(tiny()) == {k: v for k, v in data.items() if k in KEYS}  # what the graphs embed
    refused(data | {"accepted": "yes"}, "deepisp_fp32.json: accepted is malformed; re-export")


def refused(data: object, match: str) -> None:
    with pytest.raises(DeepISPError, match=match) as error:
        ExportMetadata.from_json(data, "deepisp_fp32.json")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("foreign", [[1, 2], "DeepISP", {"format": "png", "width": 3}, {"name": "other", "format": 1}])
def test_json_of_another_tool_is_refused(foreign):
    refused(foreign, "deepisp_fp32.json is not deepisp export metadata: pass the deepisp_<variant>.json")


def test_another_format_version_is_refused():
    refused(as_read(tiny()) | {"format": 1}, "format 1, this deepisp reads format 2: re-export with this version")


def test_missing_keys_are_refused():
    data = as_read(tiny())
    del data["tile"], data["format"]
    refused(data, r"not complete deepisp export metadata \(no format, tile\); re-export")
    # Measured keys come all together or not at all.
    refused(as_read(tiny()) | {"bytes": {"tile": 1}}, r"\(no targets, accuracy, delegates, accepted, problems\)")


@pytest.mark.parametrize(
    "key, value",
    [
        ("frame", [150]),
        ("window", "48x64"),
        ("windows_per_frame", "many"),
        ("graphs", {"color": {"file": "c.tflite"}}),
        ("graphs", {"tile": {"inputs": {}}}),
        ("model_config", {"mode": "both"}),
        ("model_config", {"depth": 3}),
        ("plan", []),
    ],
)
def test_malformed_values_are_refused(key, value):
    refused(as_read(tiny()) | {key: value}, f"deepisp_fp32.json: {key} is malformed; re-export")


def test_read_says_what_to_pass(tmp_path):
    with pytest.raises(DeepISPError, match="is a folder: pass the deepisp_<variant>.json"):
        ExportMetadata.read(tmp_path)
    with pytest.raises(DeepISPError, match="not found: run export/to_tflite.py or export/to_onnx.py first"):
        ExportMetadata.read(tmp_path / "deepisp_fp32.json")
    (tmp_path / "notes.json").write_bytes(b"\xff not JSON")
    with pytest.raises(DeepISPError, match=r"is not an export sidecar \(JSON\)"):
        ExportMetadata.read(tmp_path / "notes.json")


@pytest.mark.parametrize(
    "field,value",
    [("noise_profile", -1.0), ("noise_profile", "x"), ("noise_profile", float("nan")), ("noise_profile", None)]
    + [("frame", [0, 0]), ("window", [-8, 64]), ("tile", [10**9, 8])],
)
def test_numbers_in_a_sidecar_are_validated(tmp_path, field, value):
    """A hand-edited sidecar: a negative, non-numeric, NaN or missing noise level, or impossible sizes, are malformed."""
    data = tiny().to_json()
    data["graphs"]["tile"]["noise_profile"] = {"S": 1e-4, "O": 2e-5}  # as a noise-aware export records it
    ExportMetadata.from_json(json.loads(json.dumps(data)), "valid")
    if field == "noise_profile":
        data["graphs"]["tile"]["noise_profile"] = {"S": value, "O": 0.0} if value is not None else {"O": 0.0}
    else:
        data[field] = value
    (tmp_path / "s.json").write_text(json.dumps(data))
    with pytest.raises(DeepISPError, match="malformed"):
        ExportMetadata.read(tmp_path / "s.json")
