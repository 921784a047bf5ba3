"""Real raw data for export: calibration windows for int8/int16 and held-out frames for accuracy checks.

A source is either an S7-layout root (the raws of the exposures the model takes: `model_exposures`; see
deepisp.data.s7) or a folder of raw files (any Bayer raw LibRaw opens). The default is the S7-layout set
the project renders from the Kodak photographs in ../shared/data (deepisp.data.DEFAULT_EVAL_SET, built on
first use by `default_s7_root`): its train split calibrates, its val and test splits check accuracy, so
calibration and checks never share a scene.

Windows: [S_h,S_w] float32 mosaics in [0,1], canonical RGGB, cut at even offsets. Frames smaller than a
window are repeated periodically (np.pad "wrap", which keeps the Bayer phase of even-sized frames) to
fill it: the seams are a few rows of unnatural content, the statistics stay those of real raw data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepisp.conditioning import model_input
from deepisp.data import DEFAULT_EVAL_SET, SHARED_DATA
from deepisp.data.s7 import PAIRS, RAW_EXTENSIONS, scan_s7
from deepisp.data.splits import split_names
from deepisp.errors import DeepISPError
from deepisp.model.config import ModelConfig
from deepisp.options import Exposure, Mode
from deepisp.raw import read_raw

# LibRaw opens far more than DNG; these are the common Bayer raw extensions accepted in a plain folder.
RAW_FILE_EXTENSIONS = RAW_EXTENSIONS + (".nef", ".cr2", ".cr3", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw", ".raw")


def default_s7_root(root: Path = DEFAULT_EVAL_SET, progress: bool = True) -> Path:
    """The project's S7-layout test set (24 Kodak photos as synthetic low-light scenes), made if missing."""
    if root.is_dir() and any(root.iterdir()):
        return root
    from deepisp.data.synthetic import find_photos, make_synthetic

    photos = SHARED_DATA / "photos" / "kodak24"
    if not photos.is_dir():
        raise DeepISPError(f"no calibration data: {photos} is missing; pass --calib/--data with raw files or an S7-layout folder")
    make_synthetic(find_photos([photos]), root, seed=1, progress=progress)
    return root


def model_exposures(cfg: ModelConfig, pair: str = "low_light") -> tuple[str, ...]:
    """The S7 exposures whose raws a model takes: a full ISP model its training pair's input (the paper's
    low-light 1/4 exposure by default), and for a metered one the normal exposure too (both reach it at the
    trained level: the check covers the metering); a JDD model the normal exposure, since it develops raws as
    shot (the well-exposed raws span the whole [0,1]: calibrated on low-light raws, int8 would saturate at ~0.3)."""
    if cfg.mode == Mode.JDD:
        return ("medium_exposure",)
    first = PAIRS[pair][0]
    return (first, "medium_exposure") if cfg.exposure == Exposure.METERED and first != "medium_exposure" else (first,)


def raw_paths(source: Path, splits: tuple[str, ...], exposures: tuple[str, ...] = ("short_exposure",)) -> list[Path]:
    """The raw files of `source`: the raws of the given splits (S7 root), scene by scene in the order of
    `exposures`, or every raw file."""
    source = Path(source)
    if not source.exists():
        raise DeepISPError(f"calibration/data folder {source} not found: pass raw files or an S7-layout folder")
    if source.is_file():
        return [source]
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in RAW_FILE_EXTENSIONS)
    if files:
        return files
    if any(p.is_dir() for p in source.iterdir()):
        scenes, _ = scan_s7(source)
        names = {n for split in splits for n in split_names([s.name for s in scenes], split)}
        return [s.files[(e, "raw")] for s in scenes if s.name in names for e in exposures if (e, "raw") in s.files]
    raise DeepISPError(f"no raw files ({', '.join(RAW_FILE_EXTENSIONS)}) or S7 scene folders in {source}")


def load_mosaics(paths: list[Path], model_config: ModelConfig | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, mosaic [H,W] float32 canonical RGGB) per raw file; unreadable files are a clear error.
    With `model_config`, each mosaic is that model's input (deepisp.conditioning.model_input), else the raw's."""
    frames = []
    for p in paths:
        raw = read_raw(p)
        name = p.parent.name if p.stem.lower().startswith("short_exposure") else p.stem
        frames.append((name, raw.mosaic if model_config is None else model_input(raw, model_config)[0]))
    return frames


# Default top of the quantized input range: this percentile of the calibration raws' pixels.
INPUT_MAX_PERCENTILE = 99.9


def calibration_windows(mosaics: list[np.ndarray], window: tuple[int, int], count: int, seed: int = 0, input_max: float | None = None) -> list[np.ndarray]:
    """`count` windows [S_h,S_w] float32: a ramp from 0 to `input_max`, then windows cut from the mosaics in
    turn at random even offsets, clipped at `input_max`.

    `input_max` is the top of the int8/int16x8 input range, and the ramp makes every range downstream cover
    the input up to it. Default: `INPUT_MAX_PERCENTILE` of the mosaics' pixels, the range the raw data
    uses (a percentile, not the maximum: a few balanced highlight pixels reach twice what the rest of a
    low-light set does). A low-light model's 1/4-exposure raws sit under ~0.27 there; the [0,1] contract's
    full range spends three quarters of the input's 256 int8 codes on values the data never has, and every
    tensor downstream inherits the coarse step (micro-full int8: 29.6 dB against float with a [0,1] ramp).
    A quantized graph saturates inputs above `input_max`: for a 1/4 exposure those are pixels the
    well-exposed rendering clips anyway. Pass 1.0 for the whole range.
    """
    if not mosaics:
        raise DeepISPError("no usable raw files for calibration: pass --calib with Bayer raw files or an S7-layout folder")
    if input_max is None:
        # An odd stride samples all four CFA sites; the sample keeps this cheap for 12 MP raws.
        input_max = float(np.percentile(np.concatenate([m.ravel()[::7] for m in mosaics]), INPUT_MAX_PERCENTILE))
    if not 0 < input_max <= 1:
        raise DeepISPError(f"calibration input range top must be in (0, 1], got {input_max:g}: check the calibration raws or --calib-input-max")
    rng = np.random.default_rng(seed)
    sh, sw = window
    out = [np.broadcast_to(np.linspace(0, input_max, sw, dtype=np.float32), (sh, sw)).copy()]
    for k in range(count - 1):
        m = mosaics[k % len(mosaics)]
        m = np.pad(m, ((0, max(0, sh - m.shape[0])), (0, max(0, sw - m.shape[1]))), mode="wrap")
        y = 2 * int(rng.integers(0, (m.shape[0] - sh) // 2 + 1))
        x = 2 * int(rng.integers(0, (m.shape[1] - sw) // 2 + 1))
        out.append(np.minimum(m[y : y + sh, x : x + sw], input_max, dtype=np.float32))
    return out
