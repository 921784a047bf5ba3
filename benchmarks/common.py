"""What the benchmark scripts share: where results go and how they are written, the timers, the command-line
pieces and error lines they have in common, how rows are averaged, and how a checkpoint's row is labelled.

Imports no torch (of deepisp, only its atomic writes), so benchmarks/update_readme.py, which CI's lint runs,
stays light.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from deepisp.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
WEIGHTS = REPO / "deepisp" / "weights"
SHIPPED_FULL = ("deepisp_micro_full.pt", "deepisp_phone_full.pt")
SHIPPED_JDD = ("deepisp_phone_jdd.pt", "deepisp_micro_jdd.pt")
EXIT_ERROR = 2  # a benchmark that could not run: missing inputs or dependencies, said in one `error:` line

T = TypeVar("T")


def parser(description: str, **kwargs: Any) -> argparse.ArgumentParser:
    """The scripts' parser: their module docstring, line breaks kept, as --help's description."""
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def add_out(ap: argparse.ArgumentParser, name: str) -> None:
    """--out: the results JSON, benchmarks/results/`name` by default; the markdown goes beside it."""
    ap.add_argument("--out", type=Path, default=RESULTS / name)


def add_full_models(ap: argparse.ArgumentParser) -> None:
    """--full-model CKPT ... (args.full_models): full-ISP checkpoints, every shipped one by default."""
    shipped = [WEIGHTS / name for name in SHIPPED_FULL]
    ap.add_argument("--full-model", dest="full_models", type=Path, nargs="+", default=shipped, help="full-ISP checkpoints (default: every shipped one)")


def fail(message: object) -> int:
    """Print `error: message` on stderr; returns EXIT_ERROR for main() to return."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def missing_shared(path: Path) -> str:
    """What to say when a benchmark's data under ../shared/data is not there."""
    return f"{path} not found: this benchmark needs ../shared/data beside the repo"


def write_result(path: Path, report: dict, markdown: str, *, indent: int = 2) -> Path:
    """`report` as JSON at `path` and `markdown` beside it (`path` with suffix .md), each written atomically,
    their folder made if missing; returns the markdown's path. `indent` 1 keeps the files of the scripts with
    per-image rows short."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=indent) + "\n")
    table = path.with_suffix(".md")
    with atomic_path(table) as tmp:
        tmp.write_text(markdown)
    return table


def save_jpeg(image: Image.Image, path: Path, quality: int) -> None:
    """`image` as a JPEG at `path`, written atomically."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=quality)


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend (files only, no display), imported here on first use: most
    scripts draw nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_plot(fig: Figure, path: Path) -> None:
    """Lay out, write atomically at 110 dpi, and close `fig`."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    pyplot().close(fig)


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    """(fn(*args), wall seconds of that call)."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def timings(fn: Callable[[], object], repeats: int, budget_s: float = math.inf) -> list[float]:
    """Run fn once to warm up (allocator, kernel caches), then `repeats` times, fewer once the runs so far
    take more than `budget_s`; seconds per timed run."""
    fn()
    times = []
    for _ in range(repeats):
        times.append(timed(fn)[1])
        if sum(times) > budget_s:
            break
    return times


def group_key(value: object) -> str:
    """A field's value as a JSON key: 2.0 -> '2', 2.5 -> '2.5', 'x' -> 'x'."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def means(rows: list[dict], keys: Sequence[str], by: Sequence[str]) -> dict:
    """Mean of `keys` over rows grouped by the `by` fields, nested in that order (keys by group_key)."""
    out: dict = {}
    for row in rows:
        node = out
        for field in by:
            node = node.setdefault(group_key(row[field]), {})
        for k in keys:
            node.setdefault(k, []).append(row[k])

    def collapse(node: dict) -> dict:
        return {k: float(np.mean(v)) if isinstance(v, list) else collapse(v) for k, v in node.items()}

    return collapse(out)


def model_label(path: Path | None, state: dict) -> str:
    """'DeepISP <preset>[ noise-aware][ sqrt-companded] (<file>, <steps> steps)' from a checkpoint's saved
    configs: quality.json's row names, which benchmarks/presets.py reads back by file."""
    preset = state.get("train_config", {}).get("preset", "custom")
    if state["model_config"].get("noise_input"):
        preset += " noise-aware"
    if state["model_config"].get("compand", "none") != "none":
        preset += f" {state['model_config']['compand']}-companded"
    where = "shipped" if path is None else Path(path).name
    steps = f", {state['step']} steps" if "step" in state else ""
    return f"DeepISP {preset} ({where}{steps})"


def short_label(path: Path) -> str:
    """'DeepISP micro-full' for deepisp_micro_full.pt: a full model's row in colorchart and robustness."""
    return f"DeepISP {path.stem.removeprefix('deepisp_').replace('_', '-')}"
