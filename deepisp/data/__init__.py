"""Datasets: S7-ISP (s7.py) and MSR demosaicing (msr.py) in their real layouts, and the synthetic S7-layout generator."""

from pathlib import Path

# The read-only shared data folder beside the repository (photos and real raw files; see its README).
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
