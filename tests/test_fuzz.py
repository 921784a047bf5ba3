"""Fuzzing of the parsers that take untrusted bytes: raw headers, export sidecars and their metadata, checkpoint
configs and contents, and benchmark_model's ELF header. Every input either parses or is refused with a
DeepISPError (one line for the user); anything else (a traceback, a hang, a crash) is a bug, and what Hypothesis
finds becomes a regression test here.

Bounded to seconds in CI (the "ci" profile); run longer by hand:

    DEEPISP_FUZZ=long pytest tests/test_fuzz.py      # 20x the examples
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from android_harness.elf import binary_abi
from deepisp.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, load_model
from deepisp.data.dng import write_dng
from deepisp.errors import DeepISPError
from deepisp.export.metadata import ExportMetadata, describe
from deepisp.model import PRESETS, ModelConfig
from deepisp.raw import read_raw

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("DEEPISP_FUZZ", "ci"))


def mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Bytes near `seed`: truncated, with bytes overwritten, or with a run of bytes inserted."""
    n = len(seed)
    truncated = st.integers(0, n).map(lambda k: seed[:k])
    flipped = st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), min_size=1, max_size=8).map(lambda edits: bytes(_apply(bytearray(seed), edits)))
    inserted = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=64)).map(lambda t: seed[: t[0]] + t[1] + seed[t[0] :])
    return st.one_of(truncated, flipped, inserted, st.binary(max_size=256))


def _apply(buf: bytearray, edits: list[tuple[int, int]]) -> bytearray:
    for at, value in edits:
        buf[at] = value
    return buf


# ---------------------------------------------------------------------------------------------------- raw headers
def _small_dng() -> bytes:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-seed-{os.getpid()}.dng"
    cfa = (np.random.default_rng(0).random((32, 48)) * 900 + 64).astype(np.uint16)
    write_dng(path, cfa, color_matrix=np.eye(3), as_shot_neutral=(0.5, 1.0, 0.6), noise_profile=(1e-4, 1e-6))
    data = path.read_bytes()
    path.unlink()
    return data


DNG = _small_dng()


@given(data=mutations(DNG))
def test_raw_reader_parses_or_refuses_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("raw") / "fuzz.dng"
    path.write_bytes(data)
    try:
        raw = read_raw(path)
    except DeepISPError:
        return
    assert raw.mosaic.ndim == 2 and np.isfinite(raw.mosaic).all() and 0 <= raw.mosaic.min() and raw.mosaic.max() <= 1


# ------------------------------------------------------------------------------------------ sidecars and metadata
CFG = ModelConfig(mode="full", n_ll=3, n_hl=2, width=8, hl_width=8)
SIDECAR = describe(CFG, (150, 214), (150, 214), (32, 32), "onnx", "fp32", {"tile": "t.onnx", "color": "c.onnx"}).to_json()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(key=st.sampled_from(sorted(SIDECAR)), value=json_values, nested_key=st.text(max_size=12))
def test_sidecar_fields_parse_or_refuse_any_value(key, value, nested_key):
    """One field of a valid sidecar replaced by any JSON value (or given an extra key): parsed or refused."""
    data = json.loads(json.dumps(SIDECAR))
    data[key] = value
    if isinstance(SIDECAR[key], dict):
        data[key] = {**SIDECAR[key], nested_key: value}
    try:
        ExportMetadata.from_json(data, "fuzz")
    except DeepISPError:
        pass


@given(data=mutations(json.dumps(SIDECAR).encode()) | st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth))
def test_sidecar_file_parses_or_refuses_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("sidecar") / "deepisp_fp32.json"
    path.write_bytes(data)
    try:
        ExportMetadata.read(path)
    except DeepISPError:
        pass


# --------------------------------------------------------------------------------------------- checkpoint configs
config_values = st.one_of(
    st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.text(max_size=8), st.booleans(), st.none(), st.lists(st.integers(), max_size=3)
)


@given(field=st.sampled_from(sorted(vars(PRESETS["tiny-full"]))), value=config_values)
def test_model_config_accepts_sane_values_only(field, value):
    """Any value in any config field: a config small enough to build (checked before building), or a ValueError/TypeError."""
    try:
        cfg = ModelConfig(**{**vars(PRESETS["tiny-full"]), field: value})
    except (ValueError, TypeError):
        return
    assert all(type(getattr(cfg, k)) is int and 0 <= getattr(cfg, k) <= 256 for k in ("n_ll", "n_hl", "width", "hl_width"))


def _small_checkpoint() -> bytes:
    state = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


CHECKPOINT = _small_checkpoint()


@given(data=mutations(CHECKPOINT))
@example(data=CHECKPOINT[: len(CHECKPOINT) // 2])
@example(data=bytes(_apply(bytearray(CHECKPOINT), [(30, 128)])))  # found: zipfile's UnicodeDecodeError on a header byte
def test_checkpoint_loader_parses_or_refuses_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("ckpt") / "fuzz.pt"
    path.write_bytes(data)
    try:
        model, _ = load_model(path)
    except DeepISPError:
        return
    assert all(torch.isfinite(p).all() for p in model.parameters())


@given(name=st.sampled_from(["data.pkl", "version", "byteorder"]), payload=st.binary(max_size=512))
@example(name="data.pkl", payload=b"Q")  # found: IndexError inside torch's weights-only unpickler
def test_checkpoint_with_a_replaced_record_parses_or_refuses(tmp_path_factory, name, payload):
    """One record of the torch zip (the pickled settings, the version, the byte order) replaced by any bytes."""
    path = tmp_path_factory.mktemp("ckpt") / "fuzz.pt"
    with zipfile.ZipFile(io.BytesIO(CHECKPOINT)) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info, payload if info.filename.endswith("/" + name) else src.read(info))
    try:
        load_checkpoint(path)
    except DeepISPError:
        pass


# ------------------------------------------------------------------------------------------------------ ELF headers
ELF = bytes.fromhex("7f454c46020101000000000000000000") + bytes(48)


@pytest.mark.parametrize("prefix", [ELF[:k] for k in range(4, 20)])
def test_truncated_elf_headers_are_refused(tmp_path, prefix):
    (tmp_path / "bin").write_bytes(prefix)
    with pytest.raises(DeepISPError):
        binary_abi(tmp_path / "bin")


@given(data=mutations(ELF + bytes(200)))
def test_elf_reader_parses_or_refuses_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("elf") / "benchmark_model"
    path.write_bytes(data)
    try:
        assert isinstance(binary_abi(path), str)
    except DeepISPError:
        pass
