"""`deepisp cache`: which layout a dataset folder has (S7-ISP or MSR) and its cache built from the jobs that
layout's loader makes. Above both loaders and deepisp.data.cache (the format), which the loaders read with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deepisp.data import msr, s7
from deepisp.data.cache import build_cache, default_cache
from deepisp.errors import DeepISPError


@dataclass(frozen=True)
class CacheReport:
    cache: Path
    frames: int  # frames the cache holds for the request
    decoded: int  # of which decoded by this run (the rest were cached already)
    problems: tuple[str, ...]  # scenes skipped, one message each


def cache_dataset(
    data: str | Path,
    cache: str | Path | None = None,
    pairs: Sequence[str] = ("low_light",),
    cameras: Sequence[str] | None = None,
    progress: bool = True,
) -> CacheReport:
    """`deepisp cache`: decode an S7-layout folder (`pairs`) or an MSR one (`cameras`, default every camera
    present, each noise variant present) into `cache` (default <data>/.deepisp-cache)."""
    root = Path(data)
    if not root.is_dir():
        raise DeepISPError(f"data folder {root} not found: pass the root of an S7-ISP or MSR dataset")
    cache_dir = Path(cache) if cache else default_cache(root)
    if msr.is_msr_layout(root):
        jobs, problems = msr.cache_jobs(root, cameras), []
    elif s7.is_s7_layout(root):
        jobs, problems = s7.cache_jobs(root, pairs)
    else:
        raise DeepISPError(
            f"{root} is neither an S7-ISP layout (<scene>/short_exposure.dng, medium_exposure.jpg, ...) nor an MSR one "
            "(Dataset_LINEAR_*/bayer_<camera>/input, groundtruth): pass the dataset's root folder"
        )
    decoded = build_cache(root, cache_dir, jobs, progress)
    return CacheReport(cache_dir, len(jobs), decoded, tuple(problems))
