"""Datasets: S7-ISP (s7.py) and MSR demosaicing (msr.py) in their real layouts, and the synthetic S7-layout generator."""

from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
# The read-only shared data folder beside the repository (photos and real raw files; see its README).
SHARED_DATA = _REPO.parent / "shared" / "data"
# The default evaluation set: the 24 Kodak photos of SHARED_DATA as S7-layout low-light scenes
# (`deepisp make-synthetic --seed 1`), built on first use by deepisp.export.calibration.default_s7_root.
# Anchored at the repository, not the working directory; the Makefile's demo target writes the same folder.
DEFAULT_EVAL_SET = _REPO / "out" / "s7-kodak24"
