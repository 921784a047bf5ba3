"""Checkpoint files: the model config travels inside every checkpoint, writes are atomic.

A checkpoint is a torch.save'd dict: {"format": 1, "model_config": {...}, "model": state_dict, ...extra}.
`load_model(None)` returns the default model shipped in deepisp/weights/.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from deepisp.atomic import atomic_path
from deepisp.errors import DeepISPError
from deepisp.model import DeepISP, ModelConfig

FORMAT = 1
DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "deepisp_phone_full.pt"


def save_checkpoint(path: str | Path, model: DeepISP, cfg: ModelConfig, extra: dict | None = None) -> None:
    """Write atomically: a temp file in the same folder, then rename, so a crash never leaves half a file."""
    path = Path(path)
    payload = {"format": FORMAT, "model_config": asdict(cfg), "model": model.state_dict(), **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DeepISPError(f"checkpoint {path} not found: pass --model with a .pt file written by `deepisp train`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as e:
        raise DeepISPError(f"{path} is not a readable deepisp checkpoint ({type(e).__name__}); re-download or retrain it") from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise DeepISPError(f"{path} is not a deepisp checkpoint (no model_config/model inside)")
    return state


def load_model(path: str | Path | None = None) -> tuple[DeepISP, dict]:
    """The model of a checkpoint (the shipped default when `path` is None), in eval mode, on CPU."""
    state = load_checkpoint(DEFAULT_CHECKPOINT if path is None else path)
    model = DeepISP(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state
