"""Deterministic scene splits: the paper's 90/10/10 of 110 S7 scenes, kept in proportion for other sizes."""

from __future__ import annotations

import numpy as np

from deepisp.errors import DeepISPError

SPLITS = ("train", "val", "test", "all")
# Paper IV-A: 110 scenes -> 90 train, 10 validation, 10 test.
HELD_OUT_FRACTION = 10 / 110
SPLIT_SEED = 0


def split_names(names: list[str], split: str) -> list[str]:
    """The names in `split`, chosen by a fixed-seed shuffle of the sorted names.

    With 110 names this gives exactly 90/10/10; with n names round(n*10/110) each for val and test, at least
    one each once there are 3 names, so tiny sets still have every split. "all" is every name (for a
    folder that is wholly a test set).
    """
    if split not in SPLITS:
        raise DeepISPError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    ordered = sorted(names)
    if split == "all":
        return ordered
    n = len(ordered)
    held = max(1, round(n * HELD_OUT_FRACTION)) if n >= 3 else 0
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    picked = {"test": perm[:held], "val": perm[held : 2 * held], "train": perm[2 * held :]}[split]
    return [ordered[i] for i in sorted(picked)]
