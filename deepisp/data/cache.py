"""Pre-decoded training data on disk (`deepisp cache`): each S7 scene or MSR image decoded once, its crops then
read from memory-mapped arrays instead of decoding a 12 MP DNG and JPEG per crop.

Owns the cache's on-disk format, writing it (atomic, incremental) and reading it (checked against its sources
and the decoding code that made it; arrays mapped when a dataset is made, again after unpickling in a
worker). What goes in is the loaders' business: deepisp.data.s7 and deepisp.data.msr make the jobs
(`cache_jobs`) and read their frames back (`CachedFrames`); deepisp.data.make_cache runs `deepisp cache`
over either layout.

    CACHE/                           --cache; default <data root>/.deepisp-cache
      manifest.json
      <key>/mosaic.npy               [H,W] uint16 = round(65535 * x), x the normalised raw mosaic in [0,1] of
                                     full scale (black 0, white 1), canonical RGGB, the whole frame
      <key>/target.npy               [h,w,3], the target in the mosaic's canonical frame, registered: it covers
                                     the window `crop` of the mosaic. S7: uint8 sRGB (the camera JPEG's values);
                                     MSR: uint16 = round(65535 * t), t linear camera RGB in [0,1]

    key: "s7/<pair>/<scene>" (pair low_light or mimic) or "msr/<camera folder>/<image id>", the camera folder
    relative to the data root (e.g. Dataset_LINEAR_with_noise/bayer_panasonic).

The arrays are plain .npy files (NumPy format 1.0), opened with np.load(mmap_mode="r"). manifest.json:

    {"format": "deepisp-cache", "version": 1, "decoder": sha256 of the decoding code (decoder_fingerprint),
     "entries": {key: {
        "sources": [[path relative to the data root, size in bytes, mtime_ns], ...],   the files decoded
        "crop": [y, x, h, w],                                      the registered window of mosaic.npy
        "meta": {...}}}}

    S7 meta (deepisp.conditioning.FrameFacts: what conditions any window of the frame as the whole frame):
        camera_wb [R,G,B] or null and camera_matrix [[3] x 3] or null, the file's; gain (metering_gain) and
        estimated_wb (estimate_white_balance) of the whole float mosaic, before quantisation.
    MSR meta: pattern (the CFA phase found, before the flip to RGGB) and rotated (stored portrait).

Writes: each array through deepisp.atomic (temp file + rename); the manifest after the arrays it lists (every
few seconds and at the end), so an interrupted run leaves a valid cache that the next run completes. An entry
whose sources match (path, size, mtime_ns) and whose arrays exist is skipped.

Reads: a dataset given a cache (or finding one at <data root>/.deepisp-cache) checks its frames' sources
against the manifest when it is made and refuses a stale or missing entry with the command that rebuilds it:
it never decodes instead. The raw mosaic is stored to within 0.5/65535 of full scale, so a crop conditioned
from the cache differs from a decoded one by at most that times the conditioning's largest gain (metering up
to 16x, a colour map's absolute row sum); S7 targets and MSR inputs and targets are stored exactly.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from deepisp.atomic import atomic_path, make_folder, read_bounded
from deepisp.errors import DeepISPError

CACHE_DIRNAME = ".deepisp-cache"
MANIFEST = "manifest.json"
FORMAT, VERSION = "deepisp-cache", 1
MOSAIC, TARGET = "mosaic.npy", "target.npy"
FULL_SCALE = 65535  # the stored value of a normalised 1.0
# The manifest is rewritten whole, so not after every entry (MSR has thousands); an interrupted run loses at
# most this much decoding.
MANIFEST_FLUSH_SECONDS = 5.0
MAX_MANIFEST_BYTES = 256 * 2**20
# The code that decides what a cache holds: raw decoding, registration, the whole-frame statistics kept beside
# each frame. A cache made by other versions of these files is refused (and rebuilt by `deepisp cache`), so a
# change to decoding or metering never trains from stale arrays; any edit to them costs one rebuild.
_DECODER_MODULES = ("raw.py", "cfa.py", "conditioning.py", "input_contract.py", "white_balance.py", "pngio.py", "data/s7.py", "data/msr.py")


def decoder_fingerprint() -> str:
    """sha256 of the sources of _DECODER_MODULES and the versions of the decoders they call (LibRaw through
    rawpy, Pillow): the manifest's `decoder`. A module installed without its source counts by the package
    version."""
    import PIL
    import rawpy

    from deepisp import __version__

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(f"rawpy {rawpy.__version__} libraw {rawpy.libraw_version} pillow {PIL.__version__}".encode())
    for name in _DECODER_MODULES:
        path = package / name
        digest.update(path.read_bytes() if path.is_file() else f"{name} of deepisp {__version__}".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Source:
    """A decoded file as the manifest records it: path relative to the data root (POSIX), size, mtime_ns."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, root: Path, path: Path) -> Source:
        st = path.stat()
        return cls(path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Frame:
    """One decoded frame to store: mosaic [H,W] float in [0,1] (quantised on writing), target [h,w,3] as stored
    (uint8 or uint16), crop (y, x, h, w) of the mosaic that the target covers, meta (JSON-able)."""

    mosaic: np.ndarray
    target: np.ndarray
    crop: tuple[int, int, int, int]
    meta: dict


@dataclass(frozen=True)
class Job:
    """What `build_cache` stores under `key`: `decode()` of the files `sources` (absolute paths)."""

    key: str
    sources: tuple[Path, ...]
    decode: Callable[[], Frame]


@dataclass(frozen=True)
class Entry:
    """A manifest entry (module doc)."""

    sources: tuple[Source, ...]
    crop: tuple[int, int, int, int]
    meta: dict

    def record(self) -> dict:
        return {"sources": [[s.path, s.size, s.mtime_ns] for s in self.sources], "crop": list(self.crop), "meta": self.meta}

    @classmethod
    def from_record(cls, record: dict) -> Entry:
        """Raises KeyError, TypeError or ValueError for a malformed record."""
        sources = tuple(Source(str(p), int(size), int(mtime)) for p, size, mtime in record["sources"])
        y, x, h, w = (int(v) for v in record["crop"])
        if not isinstance(record["meta"], dict) or min(y, x) < 0 or min(h, w) < 1:
            raise ValueError("bad crop or meta")
        return cls(sources, (y, x, h, w), record["meta"])


def default_cache(root: str | Path) -> Path:
    return Path(root) / CACHE_DIRNAME


def find_cache(root: str | Path, cache: str | Path | None) -> Path | None:
    """The cache a dataset of `root` reads: `cache` when given, else the default one when it holds a manifest,
    else None (decode)."""
    if cache:
        return Path(cache)
    default = default_cache(root)
    return default if (default / MANIFEST).is_file() else None


def cache_command(root: str | Path, cache_dir: Path, *options: str) -> str:
    """The `deepisp cache` command line that builds or refreshes `cache_dir` for `root`."""
    words = ["deepisp", "cache", "--data", str(root)]
    if Path(cache_dir) != default_cache(root):
        words += ["--cache", str(cache_dir)]
    return shlex.join(words + list(options))


def quantise(x: np.ndarray) -> np.ndarray:
    """[...] float in [0,1] -> uint16 round(65535 * x) (computed in float64: 16-bit sources come back exactly)."""
    return np.round(np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0) * FULL_SCALE).astype(np.uint16)


def dequantise(a: np.ndarray) -> np.ndarray:
    """Stored integers -> float32 in [0,1], divided by the type's full scale in float64 as the loaders normalise
    16- and 8-bit files, so those come back bit for bit."""
    return (np.asarray(a) / np.iinfo(a.dtype).max).astype(np.float32)


def _folder(cache_dir: Path, key: str) -> Path:
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise DeepISPError(f"cannot cache {key!r}: a scene or image name must not be empty, '.' or '..'; rename it")
    return cache_dir / key


def _read_entries(path: Path) -> dict[str, Entry]:
    """The manifest's entries; FileNotFoundError when there is none, DeepISPError when it is not this format."""
    try:
        manifest = json.loads(read_bounded(path, MAX_MANIFEST_BYTES, "a deepisp cache manifest"))
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise DeepISPError(f"{path} is not a version {VERSION} deepisp cache manifest")
        entries = {str(key): Entry.from_record(record) for key, record in manifest["entries"].items()}
        if manifest.get("decoder") != decoder_fingerprint():
            raise DeepISPError(f"{path} was made by another version of deepisp's raw decoding or conditioning")
        return entries
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DeepISPError(f"cannot read {path}: {e.strerror or e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DeepISPError(f"{path} is damaged ({e})") from None


def _write_entries(path: Path, entries: dict[str, Entry]) -> None:
    manifest = {"format": FORMAT, "version": VERSION, "decoder": decoder_fingerprint(), "entries": {k: entries[k].record() for k in sorted(entries)}}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:  # the temp name keeps the .npy suffix, so np.save adds none
        np.save(tmp, np.ascontiguousarray(array))


def build_cache(root: Path, cache_dir: Path, jobs: Sequence[Job], progress: bool = True) -> int:
    """Decode into `cache_dir` every job not cached yet (or whose sources changed); returns how many were decoded.
    A manifest that is damaged or of another format version is started afresh."""
    make_folder(cache_dir)
    manifest = cache_dir / MANIFEST
    try:
        entries = _read_entries(manifest)
    except (FileNotFoundError, DeepISPError):
        entries = {}

    def cached(job: Job) -> bool:
        entry, folder = entries.get(job.key), _folder(cache_dir, job.key)
        current = tuple(Source.of(root, p) for p in job.sources)
        return entry is not None and entry.sources == current and (folder / MOSAIC).is_file() and (folder / TARGET).is_file()

    todo = [job for job in jobs if not cached(job)]
    flushed = time.monotonic()
    try:
        for job in tqdm(todo, desc="deepisp cache", unit="frame", disable=not progress):
            # Stat before decoding: a file replaced while it is read then differs on the next run.
            sources = tuple(Source.of(root, p) for p in job.sources)
            frame = job.decode()
            folder = make_folder(_folder(cache_dir, job.key))
            _save(folder / MOSAIC, quantise(frame.mosaic))
            _save(folder / TARGET, frame.target)
            entries[job.key] = Entry(sources, frame.crop, frame.meta)
            if time.monotonic() - flushed > MANIFEST_FLUSH_SECONDS:
                _write_entries(manifest, entries)
                flushed = time.monotonic()
    finally:
        if todo:
            _write_entries(manifest, entries)
    return len(todo)


@dataclass(frozen=True)
class _CachedFrame:
    key: str
    crop: tuple[int, int, int, int]
    meta: Any  # what the loader's parse_meta made of the entry's meta


class CachedFrames:
    """A dataset's frames read from a cache: frame i is the entry `frames[i]` = (key, source files).

    Every entry is checked when this is made: present, its sources unchanged (path, size, mtime_ns), its arrays
    readable and of the manifest's shape; anything else is a DeepISPError naming `command`, which rebuilds it.
    `parse_meta` turns an entry's meta into what the loader keeps (a KeyError, TypeError or ValueError there
    means a damaged manifest). The arrays are read-only memory maps, mapped when this is made (to check them)
    and never pickled: a forked DataLoader worker shares the maps, a spawned one gets a few kilobytes of entries
    and maps the files again on first use. Nothing decoded is kept.
    """

    def __init__(
        self,
        cache_dir: Path,
        root: Path,
        frames: Sequence[tuple[str, Sequence[Path]]],
        command: str,
        parse_meta: Callable[[dict], Any],
    ):
        self.cache_dir, self.command = Path(cache_dir), command
        manifest = self.cache_dir / MANIFEST
        try:
            entries = _read_entries(manifest)
        except FileNotFoundError:
            raise DeepISPError(f"no deepisp cache at {self.cache_dir} (no {MANIFEST}): build it with `{command}`") from None
        except DeepISPError as e:
            raise DeepISPError(f"{e}: rebuild the cache with `{command}`") from None
        self._frames = [self._check(entries, key, root, sources, parse_meta) for key, sources in frames]
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i in range(len(self._frames)):
            self.arrays(i)

    def _check(self, entries: dict[str, Entry], key: str, root: Path, sources: Sequence[Path], parse_meta: Callable[[dict], Any]) -> _CachedFrame:
        entry = entries.get(key)
        if entry is None:
            raise DeepISPError(f"{key} is not in the cache {self.cache_dir}: run `{self.command}`")
        for path in sources:
            rel = path.relative_to(root).as_posix()
            try:
                current = Source.of(root, path)
            except FileNotFoundError:
                raise DeepISPError(f"{path} is gone but the cache {self.cache_dir} holds it: rerun `{self.command}`") from None
            if current not in entry.sources:
                raise DeepISPError(f"{rel} changed since it was cached in {self.cache_dir} (another file, size or time): rerun `{self.command}`")
        try:
            meta = parse_meta(entry.meta)
        except (KeyError, TypeError, ValueError) as e:
            raise DeepISPError(f"{self.cache_dir / MANIFEST} is damaged ({key}: {e!r}): rerun `{self.command}`") from None
        return _CachedFrame(key, entry.crop, meta)

    def __len__(self) -> int:
        return len(self._frames)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}

    def size(self, i: int) -> tuple[int, int]:
        """(h, w) of frame i's registered window (its target's size)."""
        return self._frames[i].crop[2:]

    def meta(self, i: int) -> Any:
        return self._frames[i].meta

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame i's (mosaic [H,W] uint16, target [h,w,3]) as read-only memory maps."""
        if i not in self._arrays:
            frame = self._frames[i]
            folder = _folder(self.cache_dir, frame.key)
            mosaic, target = (self._open(folder / name) for name in (MOSAIC, TARGET))
            y, x, h, w = frame.crop
            if mosaic.ndim != 2 or mosaic.dtype != np.uint16 or y + h > mosaic.shape[0] or x + w > mosaic.shape[1]:
                raise DeepISPError(f"{folder / MOSAIC} is not the [H,W] uint16 mosaic the manifest says: rerun `{self.command}`")
            if target.shape != (h, w, 3) or target.dtype not in (np.uint8, np.uint16):
                raise DeepISPError(f"{folder / TARGET} is not the [{h},{w},3] target the manifest says: rerun `{self.command}`")
            self._arrays[i] = mosaic, target
        return self._arrays[i]

    def _open(self, path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DeepISPError(f"cache file {path} is missing or damaged ({e}): rerun `{self.command}`") from None

    def window(self, i: int, y: int, x: int, h: int, w: int, margin: int = 0) -> tuple[np.ndarray, tuple[slice, slice], np.ndarray]:
        """The h x w window at (y, x) of frame i's registered frame (y, x even).

        Returns:
            mosaic float32 in [0,1] around the window: `margin` more pixels each side where the frame has them
                (margin even, the end rounded up to even, so the RGGB phase and an even size are kept);
            the slices of the window within it;
            target [h,w,3] of the stored dtype (a copy, not a map).
        """
        mosaic, target = self.arrays(i)
        cy, cx = self._frames[i].crop[:2]
        top, left = cy + y, cx + x
        y0, x0 = max(top - margin, 0), max(left - margin, 0)
        y1 = min(top + h + (top + h) % 2 + margin, mosaic.shape[0])
        x1 = min(left + w + (left + w) % 2 + margin, mosaic.shape[1])
        inner = (slice(top - y0, top - y0 + h), slice(left - x0, left - x0 + w))
        return dequantise(mosaic[y0:y1, x0:x1]), inner, np.array(target[y : y + h, x : x + w])
