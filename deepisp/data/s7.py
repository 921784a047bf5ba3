"""The S7-ISP dataset (DeepISP paper, section IV-A) in its published on-disk layout.

    <root>/                      e.g. S7-ISP-Dataset/
      20161107_232916/           one folder per scene, named by capture time (any name is accepted)
        short_exposure.dng       raw, 1/4 of the automatic exposure ("low light")
        short_exposure.jpg       the camera's JPEG of it
        medium_exposure.dng      raw at the camera's automatic exposure
        medium_exposure.jpg      the camera's JPEG of it (the training target)

File names are matched case-insensitively, and numbered variants some distributions carry
(`short_exposure1.jpg`, `medium_exposure_2.dng`) are accepted; the unnumbered file wins, then the lowest
number. Scenes missing a file are reported and skipped, not fatal. `deepisp make-synthetic` writes this
layout from ordinary photographs.

Pairs (`pair=`):
    "low_light": short_exposure.dng -> medium_exposure.jpg  (the paper's main experiment)
    "mimic":     medium_exposure.dng -> medium_exposure.jpg (the paper's "mimic the ISP" experiment)

Geometry: everything is brought to the raw's *canonical frame* (sensor frame, flipped so the CFA is RGGB;
see raw.py). The JPEG is first rotated to display orientation by its EXIF tag, then un-rotated by the
raw's orientation and flipped like the raw. Sizes that still differ by a few pixels (a camera's JPEG
crops a small border) are centre-cropped to the common size, keeping the raw's crop offsets even; larger
mismatches are refused with the scene named.

Samples: input [3,h,w] bilinear-demosaiced raw, linear sensor RGB in [0,1]; target [3,h,w] sRGB-encoded
in [0,1]; both float32 in the canonical frame.

Pre-decoded (`deepisp cache`, deepisp.data.cache): each pair is decoded once into a memory-mapped raw mosaic
and target, and `S7Dataset` reads crops from there, conditioning each crop for the model exactly as the whole
frame would be (`deepisp.conditioning.prepare_mosaic` with the frame's stored FrameFacts).
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from deepisp.conditioning import FrameFacts, model_input, model_input_mosaic
from deepisp.data.cache import CachedFrames, Frame, Job, cache_command, find_cache
from deepisp.data.splits import split_names
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.model.config import ModelConfig
from deepisp.raw import RawMosaic, read_raw

PAIRS = {
    "low_light": ("short_exposure", "medium_exposure"),
    "mimic": ("medium_exposure", "medium_exposure"),
}
EXPOSURES = ("short_exposure", "medium_exposure")
RAW_EXTENSIONS = (".dng",)
JPEG_EXTENSIONS = (".jpg", ".jpeg")
# Largest relative size difference between raw and JPEG that is treated as a border crop.
MAX_BORDER_MISMATCH = 0.02
# Pixels of the frame read around a cached crop and trimmed after conditioning: the colour map's bilinear
# neighbours reach 1 px, and an even margin keeps the RGGB phase.
WINDOW_MARGIN = 2

_VARIANT = re.compile(r"^(short_exposure|medium_exposure)[_-]?(\d*)$", re.IGNORECASE)


@dataclass(frozen=True)
class S7Scene:
    name: str
    folder: Path
    files: dict[tuple[str, str], Path]  # (exposure, "raw"|"jpeg") -> file

    def has_pair(self, pair: str) -> bool:
        raw_exp, jpg_exp = PAIRS[pair]
        return (raw_exp, "raw") in self.files and (jpg_exp, "jpeg") in self.files


def _scan_scene(folder: Path) -> S7Scene:
    found: dict[tuple[str, str], tuple[int, Path]] = {}
    for f in folder.iterdir():
        m = _VARIANT.match(f.stem)
        ext = f.suffix.lower()
        if not m or not f.is_file():
            continue
        kind = "raw" if ext in RAW_EXTENSIONS else "jpeg" if ext in JPEG_EXTENSIONS else None
        if kind is None:
            continue
        key = (m.group(1).lower(), kind)
        rank = int(m.group(2)) if m.group(2) else -1  # unnumbered first, then lowest number
        if key not in found or rank < found[key][0]:
            found[key] = (rank, f)
    return S7Scene(folder.name, folder, {k: v[1] for k, v in found.items()})


def scan_s7(root: str | Path, pair: str = "low_light") -> tuple[list[S7Scene], list[str]]:
    """Find the scenes under an S7-layout root.

    Returns:
        (scenes that have `pair`, sorted by name; one message per scene folder that lacks it).
    """
    if pair not in PAIRS:
        raise DeepISPError(f"unknown pair {pair!r}: use one of {', '.join(PAIRS)}")
    root = Path(root)
    if not root.is_dir():
        raise DeepISPError(f"S7 dataset folder {root} not found: pass the folder holding one sub-folder per scene")
    scenes, problems = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        scene = _scan_scene(folder)
        if scene.has_pair(pair):
            scenes.append(scene)
        elif scene.files:
            raw_exp, jpg_exp = PAIRS[pair]
            problems.append(f"{folder.name}: needs {raw_exp}.dng and {jpg_exp}.jpg for pair {pair!r}")
    if not scenes:
        raise DeepISPError(
            f"no S7 scenes with {PAIRS[pair][0]}.dng + {PAIRS[pair][1]}.jpg under {root}: "
            "expected <root>/<scene>/short_exposure.dng, medium_exposure.jpg, ... (see `deepisp make-synthetic`)"
        )
    return scenes, problems


def read_jpeg(path: Path) -> np.ndarray:
    """A camera JPEG in display orientation: [H,W,3] uint8, sRGB-encoded."""
    try:
        with Image.open(path) as im:
            return np.array(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise DeepISPError(f"cannot read JPEG {path}: {e}; re-export or remove the file") from None


def registration(mosaic_shape: tuple[int, int], target_shape: tuple[int, int], what: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Where a mosaic [H,W] and a target [H',W'] meet: the centre crop of their common size, or a refusal.

    Returns:
        (mosaic origin (y, x), even so the RGGB phase is kept; target origin (y, x); common size (h, w)).
    """
    (h, w), (ht, wt) = mosaic_shape, target_shape
    if abs(h - ht) > MAX_BORDER_MISMATCH * h or abs(w - wt) > MAX_BORDER_MISMATCH * w:
        raise DeepISPError(
            f"{what}: raw is {h}x{w} but the JPEG is {ht}x{wt}; sizes this different cannot be registered "
            "(is the JPEG downscaled or from another shot?); remove the scene or replace the file"
        )
    ch, cw = min(h, ht), min(w, wt)
    my, mx = (h - ch) // 2, (w - cw) // 2
    return (my - my % 2, mx - mx % 2), ((ht - ch) // 2, (wt - cw) // 2), (ch, cw)


def register(mosaic: np.ndarray, target: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop a mosaic [H,W] and a target [H',W',3] to their common size (`registration`), or refuse."""
    (my, mx), (ty, tx), (h, w) = registration(mosaic.shape, target.shape[:2], what)
    return mosaic[my : my + h, mx : mx + w], target[ty : ty + h, tx : tx + w]


def _read_pair(scene: S7Scene, pair: str) -> tuple[RawMosaic, np.ndarray]:
    """The pair's raw, and its JPEG [H',W',3] uint8 in the raw's canonical frame (not yet registered)."""
    raw_exp, jpg_exp = PAIRS[pair]
    raw = read_raw(scene.files[(raw_exp, "raw")])
    return raw, raw.from_display(read_jpeg(scene.files[(jpg_exp, "jpeg")]))


def load_pair(scene: S7Scene, pair: str = "low_light", model_config: ModelConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read and register one scene's pair; with `model_config`, the mosaic is that model's input
    (deepisp.conditioning.model_input: balanced, metered, ... as the model's contract says), else the raw mosaic.

    Returns:
        mosaic [H,W] float32 in [0,1], canonical RGGB; target [H,W,3] uint8 sRGB, same frame and size.
    """
    raw, target = _read_pair(scene, pair)
    mosaic = raw.mosaic if model_config is None else model_input(raw, model_config)[0]
    return register(mosaic, target, f"scene {scene.name}")


# --------------------------------------------------------------------------------------------------
# The pre-decoded cache (deepisp.data.cache)


def is_s7_layout(root: Path) -> bool:
    """Whether some sub-folder of `root` holds an S7 scene's file."""
    return any(_scan_scene(folder).files for folder in root.iterdir() if folder.is_dir())


def cache_entry(scene: S7Scene, pair: str) -> tuple[str, tuple[Path, Path]]:
    """The cache key of a scene's pair and the files it is decoded from."""
    raw_exp, jpg_exp = PAIRS[pair]
    return f"s7/{pair}/{scene.name}", (scene.files[(raw_exp, "raw")], scene.files[(jpg_exp, "jpeg")])


def cache_jobs(root: Path, pairs: list[str] | tuple[str, ...]) -> tuple[list[Job], list[str]]:
    """The cache jobs of every scene with each of `pairs`, and one message per scene skipped."""
    jobs, problems = [], []
    for pair in pairs:
        scenes, missing = scan_s7(root, pair)
        jobs += [Job(*cache_entry(scene, pair), partial(_decode_for_cache, scene, pair)) for scene in scenes]
        problems += missing
    return jobs, problems


def _decode_for_cache(scene: S7Scene, pair: str) -> Frame:
    """The whole raw frame (conditioning a window needs its neighbours beyond the registered area), the
    registered target, and the frame's facts."""
    raw, target = _read_pair(scene, pair)
    origin, (ty, tx), (h, w) = registration(raw.mosaic.shape, target.shape[:2], f"scene {scene.name}")
    return Frame(raw.mosaic, target[ty : ty + h, tx : tx + w], (*origin, h, w), asdict(FrameFacts.of(raw, measured=True)))


def _facts(meta: dict) -> FrameFacts:
    """FrameFacts back from a manifest entry's JSON (lists -> tuples)."""
    wb, matrix = meta["camera_wb"], meta["camera_matrix"]
    return FrameFacts(
        camera_wb=None if wb is None else tuple(float(v) for v in wb),
        camera_matrix=None if matrix is None else tuple(tuple(float(v) for v in row) for row in matrix),
        gain=float(meta["gain"]),
        estimated_wb=tuple(float(v) for v in meta["estimated_wb"]),
    )


class S7Dataset(torch.utils.data.Dataset):
    """S7-layout pairs for training and evaluation.

    `dataset[i]` is scene i's full frame; `crop_pair(i, rng)` a random training crop. With a pre-decoded
    cache (`cache`, or <root>/.deepisp-cache when it exists; deepisp.data.cache) every window is read from its
    memory maps and conditioned on its own, nothing decoded is kept; without one, decoded scenes are kept in an
    LRU cache of `cache_size` entries (a 12 MP scene costs ~85 MB).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        pair: str = "low_light",
        crop: int = 256,
        flips: bool = True,
        cache_size: int = 16,
        model_config: ModelConfig | None = None,
        cache: str | Path | None = None,
    ):
        scenes, problems = scan_s7(root, pair)
        for msg in problems:
            warnings.warn(f"S7: skipping {msg}", stacklevel=2)
        by_name = {s.name: s for s in scenes}
        self.scenes = [by_name[n] for n in split_names(sorted(by_name), split)]
        if not self.scenes:
            raise DeepISPError(f"the {split!r} split of {root} is empty ({len(scenes)} scenes in all); add scenes")
        self.pair, self.crop, self.flips, self.model_config = pair, crop, flips, model_config
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = cache_size
        cache_dir = find_cache(root, cache)
        self._cached = None
        if cache_dir is not None:
            entries = [cache_entry(scene, pair) for scene in self.scenes]
            self._cached = CachedFrames(cache_dir, Path(root), entries, cache_command(root, cache_dir, "--pair", pair), _facts)

    def __len__(self) -> int:
        return len(self.scenes)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        item = load_pair(self.scenes[i], self.pair, self.model_config)
        self._cache[i] = item
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return item

    def _size(self, i: int) -> tuple[int, int]:
        """(H, W) of scene i's registered frame."""
        return self._cached.size(i) if self._cached is not None else self._load(i)[0].shape

    def _window(self, i: int, y: int, x: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """The h x w window at even (y, x) of scene i's registered frame: (model-input mosaic float32, target
        uint8 [h,w,3]), the same pixels whether decoded whole or read from the cache."""
        if self._cached is None:
            mosaic, target = self._load(i)
            return mosaic[y : y + h, x : x + w], target[y : y + h, x : x + w]
        mosaic, inner, target = self._cached.window(i, y, x, h, w, WINDOW_MARGIN)
        if self.model_config is not None:
            mosaic = model_input_mosaic(mosaic, self._cached.meta(i), self.model_config)[0]
        return mosaic[inner], target

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scene i's full frame: (bilinear input [3,H,W] linear, target [3,H,W] sRGB)."""
        return _to_sample(*self._window(i, 0, 0, *self._size(i)))

    def frame(self, i: int) -> tuple[np.ndarray, torch.Tensor]:
        """Scene i before demosaicing: (mosaic [H,W] float32 canonical RGGB, target [3,H,W] sRGB in [0,1])."""
        mosaic, target = self._window(i, 0, 0, *self._size(i))
        return mosaic, torch.from_numpy(target).permute(2, 0, 1).float() / 255.0

    def name(self, i: int) -> str:
        return self.scenes[i].name

    def crop_pair(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A random `crop` x `crop` training sample of scene i (even offsets keep the RGGB phase)."""
        h, w = self._size(i)
        c = self.crop
        if h < c or w < c:
            raise DeepISPError(f"scene {self.scenes[i].name} is {h}x{w}, smaller than the {c}px crop: use --crop {min(h, w) // 2 * 2}")
        y = int(rng.integers(0, (h - c) // 2 + 1)) * 2
        x = int(rng.integers(0, (w - c) // 2 + 1)) * 2
        rgb, tgt = _to_sample(*self._window(i, y, x, c, c))
        # Horizontal flips only, as in the paper's full-ISP training (IV-C); bilinear demosaicing commutes
        # with flips, so flipping after it equals demosaicing the flipped mosaic.
        if self.flips and rng.random() < 0.5:
            rgb, tgt = rgb.flip(-1), tgt.flip(-1)
        return rgb, tgt


def _to_sample(mosaic: np.ndarray, target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    raw = torch.from_numpy(np.ascontiguousarray(mosaic, dtype=np.float32))[None, None]
    tgt = torch.from_numpy(np.ascontiguousarray(target)).permute(2, 0, 1).float() / 255.0
    return bilinear_demosaic(raw)[0], tgt
