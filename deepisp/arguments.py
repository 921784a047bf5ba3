"""Command-line parsing shared by every deepisp command (`deepisp`, export/to_*.py, the Android harness).

`Parser`: an ArgumentParser whose every usage error is one line, `error: <command>: <what>` (exit 2), like
every other deepisp error. `number`: the type of a numeric option, range-checked where it is parsed (NaN and
infinities refused unless allowed), so no option reaches the code out of range. Imports nothing heavy: the
Android harness, which needs no training code, uses it too.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

from deepisp.errors import printable

# More threads than cores only oversubscribes; far more crashes thread creation.
MAX_THREADS = os.cpu_count() or 1


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (subcommand parsers inherit it)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {printable(self.prog)}: {printable(message)} (see --help)\n")


def number(kind: type = float, low: float | None = None, high: float | None = None, above: bool = False) -> Callable[[str], float]:
    """An argparse `type` for a finite `kind` (int or float) in [low, high] (`above`: strictly above low)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if low is not None and (value < low or (above and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def threads(text: str) -> int:
    """--threads: 1 .. the cores present."""
    value = number(int, 1)(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_THREADS}, the CPU cores present, got {text}")
    return value


def add_noise_profile_argument(p: argparse.ArgumentParser, help: str) -> None:
    """The `--noise-profile S O` flag (a DNG NoiseProfile: noise variance S*x + O) of every command that runs a
    noise-aware model; `help` says what the command does with it."""
    p.add_argument("--noise-profile", dest="noise_profile", type=number(float, 0, 1), nargs=2, metavar=("S", "O"), default=None, help=help)
