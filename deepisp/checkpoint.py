"""Checkpoint files: the model config travels inside every checkpoint, writes are atomic.

A checkpoint is a torch.save'd dict: {"format": 1, "model_config": {...}, "model": state_dict, ...extra}.
`load_model(None)` returns the default model shipped in deepisp/weights/.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from deepisp.atomic import atomic_path
from deepisp.errors import DeepISPError
from deepisp.model.config import ModelConfig
from deepisp.model.network import DeepISP

FORMAT = 1
# The largest model ModelConfig allows (deepisp.model.MAX_SIZES) with Adam's two moments is ~600 MB; settings
# (the pickled dict without tensors) are a few kB.
MAX_CHECKPOINT_BYTES = 1 << 30
MAX_PICKLE_BYTES = 1 << 20
WEIGHTS = Path(__file__).parent / "weights"
# The shipped models by name (their model cards: weights/<file>.md) and the sha256 of each file, checked
# whenever one is loaded by name: a damaged or swapped file is refused (tests/test_checkpoint_registry pins
# these to the files, so a retrained model ships with its new hash).
SHIPPED = {
    "micro-full": ("deepisp_micro_full.pt", "45772eabbb38e8e0663500ca3f27982733bb60cecb279f35ef4171c3d739059b"),
    "phone-full": ("deepisp_phone_full.pt", "0fc9ea31165290789eab5ff9970aff83261362dd87ad5a607b3b71af94fbc27a"),
    "micro-jdd": ("deepisp_micro_jdd.pt", "7e043c3b60e1ed284fd09585dc95f4a2e221c43a8898774b904585e3877c33d6"),
    "phone-jdd": ("deepisp_phone_jdd.pt", "899ff2817adf9ea4a627e4f28acab8d3dc1cdfcd566636ff2122f1995ca7d041"),
}
DEFAULT_MODEL, DEFAULT_JDD_MODEL = "micro-full", "phone-jdd"
DEFAULT_CHECKPOINT = WEIGHTS / SHIPPED[DEFAULT_MODEL][0]
DEFAULT_JDD_CHECKPOINT = WEIGHTS / SHIPPED[DEFAULT_JDD_MODEL][0]


def save_checkpoint(path: str | Path, model: DeepISP, cfg: ModelConfig, extra: dict | None = None, weights: dict | None = None) -> None:
    """Write atomically: a temp file in the same folder, then rename, so a crash never leaves half a file.
    `weights`: the state dict to ship instead of model's own (deepisp.train: int8_weights)."""
    path = Path(path)
    payload = {"format": FORMAT, "model_config": asdict(cfg), "model": model.state_dict() if weights is None else weights, **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's dict, after three checks: the zip container's CRCs (bytes damaged in transit or on disk),
    a pickle-free load (`weights_only=True`: a .pt that carries code is refused and its code never runs),
    and finite weights (one NaN or Inf would give a black or colour-shifted image). Each failure is a
    DeepISPError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DeepISPError(f"checkpoint {path} not found: pass --model with a .pt file written by `deepisp train`")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            # Declared sizes first: a small file must not inflate to gigabytes in testzip or torch.load.
            total = sum(e.file_size for e in entries)
            pickle_size = max((e.file_size for e in entries if e.filename.endswith(".pkl")), default=0)
            if total > MAX_CHECKPOINT_BYTES or pickle_size > MAX_PICKLE_BYTES:
                raise DeepISPError(
                    f"{path} declares {total / 2**20:.0f} MiB of contents ({pickle_size / 2**20:.1f} MiB of settings): far beyond any "
                    "deepisp model; refused (a damaged or hostile file)"
                )
            damaged = archive.testzip()
    except DeepISPError:
        raise
    except Exception:  # zipfile fails in many ways on damaged headers (BadZipFile, UnicodeDecodeError, NotImplementedError...)
        raise DeepISPError(f"{path} is not a readable deepisp checkpoint (not a torch zip file); re-download or retrain it") from None
    if damaged is not None:
        raise DeepISPError(f"{path} is damaged (checksum mismatch in {damaged}); re-download or retrain it")
    try:
        with warnings.catch_warnings():  # a damaged record's "pickle protocol N" notice: the refusal below says it
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DeepISPError(
            f"{path} holds more than tensors and plain settings (a pickled object that could run code); refused: "
            "use checkpoints written by `deepisp train` from a source you trust"
        ) from None
    except Exception as e:  # a malformed pickle or record fails anywhere in torch's reader (found by tests/test_fuzz.py)
        raise DeepISPError(f"{path} is not a readable deepisp checkpoint ({type(e).__name__}); re-download or retrain it") from None
    if not isinstance(state, dict) or not _str_keyed(state.get("model_config")) or not _str_keyed(state.get("model")):
        raise DeepISPError(f"{path} is not a deepisp checkpoint (no model_config/model dicts inside)")
    bad = [k for k, v in state["model"].items() if not _dense_finite(v)]
    if bad:
        raise DeepISPError(f"{path} has non-finite, sparse or non-tensor weights ({bad[0]}); the file is damaged: re-download or retrain it")
    return state


def shipped_path(name: str) -> Path:
    """The file of the shipped model `name` (SHIPPED), its sha256 checked; DeepISPError if it does not match."""
    file, digest = SHIPPED[name]
    path = WEIGHTS / file
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        raise DeepISPError(f"the shipped model {name!r} ({path}) is missing or not the file this deepisp shipped (sha256 differs); reinstall deepisp")
    return path


def model_path(path: str | Path | None) -> Path:
    """The checkpoint file `load_model` reads for `path` (a shipped name, sha256 checked; a file; None: the default)."""
    if path is None or (str(path) in SHIPPED and not Path(path).exists()):
        return shipped_path(DEFAULT_MODEL if path is None else str(path))
    return Path(path)


def load_model(path: str | Path | None = None) -> tuple[DeepISP, dict]:
    """The model of a checkpoint, in eval mode, on CPU: a shipped model by name ("micro-full", "phone-full",
    "micro-jdd", "phone-jdd"; sha256 checked; a file of that name in the working folder wins), a checkpoint
    file, or the default (micro-full) when None."""
    path = model_path(path)
    state = load_checkpoint(path)
    try:
        model = DeepISP(ModelConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0]
        raise DeepISPError(f"{path}: its weights do not fit its model config ({reason}); use a checkpoint written by `deepisp train`") from None
    return model.eval(), state


def _str_keyed(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _dense_finite(value: object) -> bool:
    """A dense float tensor with finite values (what `deepisp train` saves)."""
    return isinstance(value, torch.Tensor) and value.layout == torch.strided and value.is_floating_point() and bool(torch.isfinite(value).all())
