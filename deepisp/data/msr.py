"""The MSR demosaicing dataset (Khashabi et al. 2014) in its published on-disk layout, for JDD training.

    MSR-Demosaicing/
      Dataset_LINEAR_with_noise/
        bayer_panasonic/  input/<id>.png  groundtruth/<id>.png  train.txt  validation.txt  test.txt
        bayer_canon/      (same)
      Dataset_LINEAR_without_noise/   (same structure)

`root` may be the MSR-Demosaicing folder (then `noise` picks the sub-folder) or one Dataset_LINEAR_* folder.

Files: 16-bit PNGs. `input/` holds the Bayer mosaic, either 3-channel with only the measured channel of
each pixel non-zero (the release) or 1-channel; `groundtruth/` holds 3-channel linear camera RGB. Values
are normalised by 65535 (the full 16-bit range; a file stored at 8 bits would be normalised by 255).
Pillow, and so skimage.io and imageio, truncate 16-bit RGB PNGs to 8 bits, so files are read and
written with `deepisp.pngio` (OpenCV), which keeps all 16 bits.

Geometry: portrait images (H > W) are rotated 90 degrees counter-clockwise to landscape, as in the paper.
The CFA phase is then detected per image from the data (it is not assumed per camera: rotation alone
changes it) and the pair is flipped to canonical RGGB with `deepisp.cfa.canonicalize`; the ground truth
gets the same rotation and flips, so input and target stay registered.

Splits (`msr_split`): Panasonic "train"/"val" are a fixed-seed 270/30 re-split of the images listed in
train.txt + validation.txt (300, as in the DeepISP paper); "test" is test.txt. Canon is test-only.

Pre-decoded (`deepisp cache`, deepisp.data.cache): each image is decoded once (rotated, canonicalised) into
memory-mapped 16-bit arrays, which `MSRDataset` then reads instead of the PNGs, bit for bit the same samples.

`make_msr_layout` writes a small dataset in this layout from ordinary sRGB photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.transform import resize

from deepisp.cfa import CFA_PATTERNS, canonicalize, detect_cfa_phase, sample, spread
from deepisp.color import srgb_to_linear
from deepisp.data.cache import CachedFrames, Frame, Job, cache_command, dequantise, find_cache, quantise
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.pngio import read_png, write_png

CAMERAS = ("panasonic", "canon")
SPLITS = ("train", "val", "test")
NOISE_DIRS = {True: "Dataset_LINEAR_with_noise", False: "Dataset_LINEAR_without_noise"}
LIST_FILES = {"train": "train.txt", "validation": "validation.txt", "test": "test.txt"}
# Seed of the 270/30 re-split; changing it changes every reported validation number.
MSR_SPLIT_SEED = 0
# DeepISP paper: 300 listed train+validation Panasonic images -> 270 train / 30 validation.
PAPER_VAL_FRACTION = 30 / 300


# --------------------------------------------------------------------------------------------------
# Layout, lists, splits


def _id_key(name: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order, then any others alphabetically."""
    return (0, int(name)) if name.isdigit() else (1, name)


def msr_camera_dir(root: str | Path, camera: str = "panasonic", noise: bool = True) -> Path:
    """The `bayer_<camera>` folder of the requested set; `root` is MSR-Demosaicing/ or a Dataset_LINEAR_* folder."""
    if camera not in CAMERAS:
        raise DeepISPError(f"unknown MSR camera {camera!r}: use one of {', '.join(CAMERAS)}")
    root = Path(root)
    if not root.is_dir():
        raise DeepISPError(f"MSR root {root} is not a folder: give MSR-Demosaicing/ or its {NOISE_DIRS[noise]}/ folder")
    cam = f"bayer_{camera}"
    if (root / cam).is_dir() or root.name in NOISE_DIRS.values():
        if root.name == NOISE_DIRS[not noise]:
            raise DeepISPError(
                f"{root} is the {'noise-free' if noise else 'noisy'} set but noise={noise} was asked for: "
                f"pass noise={not noise} or give the MSR-Demosaicing folder"
            )
        folder = root / cam
    else:
        folder = root / NOISE_DIRS[noise] / cam
    if not folder.is_dir():
        raise DeepISPError(
            f"no MSR {camera} folder at {folder}: expected {cam}/ (with input/, groundtruth/ and "
            f"train.txt, validation.txt, test.txt) under {NOISE_DIRS[noise]}/"
        )
    return folder


def read_id_list(path: Path) -> list[str]:
    """Image ids of an MSR list file: one per line, `386` or `386.png`; blank lines and spaces ignored."""
    if not path.is_file():
        raise DeepISPError(f"missing MSR list file {path} (one image id per line, e.g. 386)")
    ids = []
    for line in path.read_text().splitlines():
        name = line.strip()
        if name.lower().endswith(".png"):
            name = name[:-4]
        if name and name not in ids:
            ids.append(name)
    return ids


def msr_split(
    root: str | Path,
    camera: str = "panasonic",
    split: str = "train",
    noise: bool = True,
    val_count: int | None = None,
) -> list[str]:
    """Image ids of a split, in id order.

    "test" is test.txt. "train"/"val" (Panasonic only) re-split the union of train.txt and validation.txt
    with a fixed-seed shuffle: `val_count` images for validation, the rest for training. None holds out
    10% (at least one), which is the paper's 30 of the real 300 and keeps small test layouts usable.
    """
    if split not in SPLITS:
        raise DeepISPError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    folder = msr_camera_dir(root, camera, noise)
    if split == "test":
        return sorted(read_id_list(folder / LIST_FILES["test"]), key=_id_key)
    if camera == "canon":
        raise DeepISPError("the MSR Canon set is test-only in the paper's protocol: use split 'test'")
    pool = sorted(set(read_id_list(folder / LIST_FILES["train"]) + read_id_list(folder / LIST_FILES["validation"])), key=_id_key)
    if val_count is None:
        val_count = max(1, round(len(pool) * PAPER_VAL_FRACTION))
    if not 0 < val_count < len(pool):
        raise DeepISPError(
            f"cannot hold out {val_count} validation images from the {len(pool)} listed in {folder}/train.txt + validation.txt: use 0 < val_count < {len(pool)}"
        )
    perm = np.random.default_rng(MSR_SPLIT_SEED).permutation(len(pool))
    picked = perm[:val_count] if split == "val" else perm[val_count:]
    return [pool[i] for i in sorted(picked)]


# --------------------------------------------------------------------------------------------------
# Samples


@dataclass(frozen=True)
class MSRSample:
    """One registered pair in the canonical (landscape, RGGB) frame.

    mosaic: [H,W] float32 in [0,1], canonical RGGB, linear camera RGB.
    target: [3,H,W] float32 in [0,1], linear camera RGB, same frame.
    pattern: the CFA phase found in the landscape frame, before flipping to RGGB.
    rotated: whether the stored image was portrait and was rotated.
    """

    name: str
    mosaic: np.ndarray
    target: np.ndarray
    pattern: str
    rotated: bool


def _image_paths(folder: Path, name: str) -> tuple[Path, Path]:
    paths = folder / "input" / f"{name}.png", folder / "groundtruth" / f"{name}.png"
    for p in paths:
        if not p.is_file():
            raise DeepISPError(f"MSR image {name!r} is listed but {p} does not exist (expected input/ and groundtruth/ PNGs)")
    return paths


def _normalise(img: np.ndarray, path: Path) -> np.ndarray:
    """uint16 / uint8 -> float64 in [0,1] (by the integer type's full range, 65535 for the MSR files)."""
    if img.dtype not in (np.uint8, np.uint16):
        raise DeepISPError(f"{path}: expected an 8- or 16-bit PNG, got {img.dtype}")
    return img.astype(np.float64) / np.iinfo(img.dtype).max


def load_msr_sample(folder: str | Path, name: str) -> MSRSample:
    """Read, rotate, phase-detect and canonicalise image `name` of a `bayer_<camera>` folder."""
    folder = Path(folder)
    in_path, gt_path = _image_paths(folder, name)
    inp, gt = read_png(in_path), read_png(gt_path)
    if gt.ndim != 3:
        raise DeepISPError(f"{gt_path}: ground truth must be a 3-channel RGB PNG, got shape {gt.shape}")
    if inp.shape[:2] != gt.shape[:2]:
        raise DeepISPError(f"{in_path} is {inp.shape[:2]} but {gt_path} is {gt.shape[:2]}: sizes must match")
    rotated = inp.shape[0] > inp.shape[1]
    if rotated:
        inp, gt = np.rot90(inp), np.rot90(gt)
    # Flipping maps a pattern to RGGB only on even sizes (odd sizes would keep the phase); MSR is 132x220.
    h, w = inp.shape[0] // 2 * 2, inp.shape[1] // 2 * 2
    inp, gt = inp[:h, :w], gt[:h, :w]
    pattern = detect_cfa_phase(inp, gt if inp.ndim == 2 else None)
    # Off-pattern channels of a 3-channel input are zero, so the sum is the measured value.
    raw = _normalise(inp, in_path)
    mosaic = raw.sum(-1) if raw.ndim == 3 else raw
    mosaic, _, _ = canonicalize(mosaic.astype(np.float32), pattern)
    target, _, _ = canonicalize(_normalise(gt, gt_path).transpose(2, 0, 1).astype(np.float32), pattern)
    return MSRSample(
        name=name,
        mosaic=mosaic,
        target=target,
        pattern=pattern,
        rotated=rotated,
    )


class MSRDataset(torch.utils.data.Dataset):
    """MSR pairs for JDD training and evaluation, with the same interface as `S7Dataset`.

    `dataset[i]` is image i's full frame (bilinear-demosaiced input [3,H,W], target [3,H,W]), both linear
    camera RGB float32 in [0,1]; `frame(i)` the same before demosaicing (mosaic [H,W], target); and
    `crop_pair(i, rng)` a `crop` x `crop` training window with random left-right and top-bottom flips when
    `flips` (paper III-A), always in RGGB phase, all randomness from the caller's `rng`.
    `val_count` is passed to `msr_split`. With a pre-decoded cache (`cache`, or <root>/.deepisp-cache when it
    exists; deepisp.data.cache) samples are read from its memory maps; without one, decoded samples are kept
    (about 0.5 MB each at 132x220).
    """

    def __init__(
        self,
        root: str | Path,
        camera: str = "panasonic",
        split: str = "train",
        noise: bool = True,
        crop: int | None = None,
        flips: bool = False,
        val_count: int | None = None,
        cache: str | Path | None = None,
    ):
        self.folder = msr_camera_dir(root, camera, noise)
        self.names = msr_split(root, camera, split, noise, val_count)
        if not self.names:
            raise DeepISPError(f"the {split!r} split of {self.folder} is empty: its list files name no images")
        for name in self.names:
            _image_paths(self.folder, name)
        if crop is not None and crop < 2:
            raise DeepISPError(f"crop must be at least 2 pixels, got {crop}")
        self.crop, self.flips = crop, flips
        self._cache: dict[int, MSRSample] = {}
        cache_dir = find_cache(root, cache)
        self._cached = None
        if cache_dir is not None:
            entries = [cache_entry(Path(root), self.folder, name) for name in self.names]
            self._cached = CachedFrames(cache_dir, Path(root), entries, cache_command(root, cache_dir, "--msr-camera", camera), _geometry)

    def __len__(self) -> int:
        return len(self.names)

    def sample(self, i: int) -> MSRSample:
        """Image i's full canonical mosaic and target (kept once decoded, or read from the cache)."""
        if self._cached is not None:
            mosaic, _, target = self._cached.window(i, 0, 0, *self._cached.size(i))
            pattern, rotated = self._cached.meta(i)
            return MSRSample(self.names[i], mosaic, np.ascontiguousarray(dequantise(target).transpose(2, 0, 1)), pattern, rotated)
        if i not in self._cache:
            self._cache[i] = load_msr_sample(self.folder, self.names[i])
        return self._cache[i]

    def name(self, i: int) -> str:
        return self.names[i]

    def frame(self, i: int) -> tuple[np.ndarray, torch.Tensor]:
        """(mosaic [H,W] float32 canonical RGGB, target [3,H,W] linear RGB)."""
        s = self.sample(i)
        return s.mosaic, torch.from_numpy(s.target.copy())

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        mosaic, target = self.frame(i)
        return bilinear_demosaic(torch.from_numpy(mosaic)[None, None])[0], target

    def crop_pair(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Image i demosaiced, cropped and flipped as configured, with randomness from `rng`."""
        # Demosaic the full frame before cropping so crop borders get true neighbours, not reflections.
        rgb, target = self[i]
        h, w = rgb.shape[1:]
        c_h, c_w = (h, w) if self.crop is None else (self.crop, self.crop)
        if c_h > h or c_w > w:
            raise DeepISPError(f"MSR image {self.names[i]} is {h}x{w}, smaller than the {self.crop}px crop: use crop <= {min(h, w)}")
        # Flip the whole frame, then crop where its CFA phase is RGGB again: flipping an axis of length n puts
        # old index n-1-j at j, so the crop starts at an index of n-1's parity. Bilinear demosaicing commutes
        # with flips, so the crop is the bilinear image of an RGGB mosaic, as every model expects (packed and
        # companded ones re-sample that phase). A flip with no room for that start is skipped.
        for axis, n, c in ((-1, w, c_w), (-2, h, c_h)):
            start_parity = 0
            if self.flips and rng.random() < 0.5 and n - c >= (n - 1) % 2:
                rgb, target = rgb.flip(axis), target.flip(axis)
                start_parity = (n - 1) % 2
            start = start_parity + 2 * int(rng.integers(0, (n - c - start_parity) // 2 + 1))
            rgb, target = rgb.narrow(axis, start, c), target.narrow(axis, start, c)
        return rgb.contiguous(), target.contiguous()


# --------------------------------------------------------------------------------------------------
# The pre-decoded cache (deepisp.data.cache)


def is_msr_layout(root: Path) -> bool:
    """Whether `root` is MSR-Demosaicing/, one of its Dataset_LINEAR_* folders, or holds a bayer_<camera> folder."""
    folders = (*NOISE_DIRS.values(), *(f"bayer_{camera}" for camera in CAMERAS))
    return root.name in NOISE_DIRS.values() or any((root / folder).is_dir() for folder in folders)


def cache_entry(root: Path, folder: Path, name: str) -> tuple[str, tuple[Path, Path]]:
    """The cache key of image `name` of a `bayer_<camera>` folder under `root`, and the files it is decoded from."""
    return f"msr/{folder.relative_to(root).as_posix()}/{name}", _image_paths(folder, name)


def cache_jobs(root: Path, cameras: Sequence[str] | None = None) -> list[Job]:
    """The cache jobs of every image in the list files of each `bayer_<camera>` folder present (both noise
    variants); `cameras` None: every camera present, else each named one must be."""
    jobs = []
    for camera in CAMERAS if cameras is None else cameras:
        cam = f"bayer_{camera}"
        folders = [f for f in (root / cam, *(root / d / cam for d in NOISE_DIRS.values())) if f.is_dir()]
        if cameras is not None and not folders:
            raise DeepISPError(f"no MSR {cam} folder under {root}: expected {cam}/ or Dataset_LINEAR_*/{cam}/")
        for folder in folders:
            names = sorted({n for list_file in LIST_FILES.values() for n in read_id_list(folder / list_file)}, key=_id_key)
            jobs += [Job(*cache_entry(root, folder, name), partial(_decode_for_cache, folder, name)) for name in names]
    if not jobs:
        raise DeepISPError(f"no MSR camera folder under {root}: expected Dataset_LINEAR_*/bayer_<camera>/ with input/ and groundtruth/")
    return jobs


def _decode_for_cache(folder: Path, name: str) -> Frame:
    s = load_msr_sample(folder, name)
    h, w = s.mosaic.shape
    return Frame(s.mosaic, quantise(s.target.transpose(1, 2, 0)), (0, 0, h, w), {"pattern": s.pattern, "rotated": s.rotated})


def _geometry(meta: dict) -> tuple[str, bool]:
    """(pattern, rotated) of a manifest entry's meta."""
    if meta["pattern"] not in CFA_PATTERNS or not isinstance(meta["rotated"], bool):
        raise ValueError(f"bad pattern or rotated: {meta}")
    return meta["pattern"], meta["rotated"]


# --------------------------------------------------------------------------------------------------
# Writer of small MSR-layout datasets


def _photo_to_linear(path: Path, h: int, w: int) -> np.ndarray:
    """An sRGB photo -> [h,w,3] linear float64: resized (in linear light) to cover h x w, centre-cropped."""
    srgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    lin = srgb_to_linear(torch.from_numpy(srgb)).numpy()
    scale = max(h / lin.shape[0], w / lin.shape[1])
    rh, rw = max(h, round(lin.shape[0] * scale)), max(w, round(lin.shape[1] * scale))
    lin = resize(lin, (rh, rw), order=1, anti_aliasing=scale < 1)
    y, x = (rh - h) // 2, (rw - w) // 2
    return np.clip(lin[y : y + h, x : x + w], 0.0, 1.0)


def make_msr_layout(
    out_root: str | Path,
    photos: Sequence[str | Path],
    *,
    camera: str = "panasonic",
    pattern: str = "RGGB",
    input_channels: int = 3,
    size: tuple[int, int] = (132, 220),
    portrait: Sequence[int] = (),
    counts: tuple[int, int, int] | None = None,
    shot_noise: float = 1e-3,
    read_noise: float = 2e-3,
    first_id: int = 1,
    seed: int = 0,
) -> Path:
    """Write photos as an MSR-layout dataset (both noise variants of one camera) under `out_root`.

    Each photo is linearised (inverse sRGB curve), resized to `size` = (H, W) landscape (W, H for the
    indices in `portrait`), stored as the 16-bit ground truth, and sampled with `pattern` in its stored
    frame into the input mosaic: 3-channel with zeros off-pattern (`input_channels=3`, as released) or
    1-channel. The noisy variant adds Gaussian noise of variance shot_noise * x + read_noise^2.

    Args:
        out_root: the MSR-Demosaicing folder to create or add a camera to.
        photos: sRGB image files, one dataset image each, ids first_id, first_id+1, ...
        counts: images per (train.txt, validation.txt, test.txt), in photo order; default 40/20/40% like
            MSR's Panasonic 200/100/200, and all test for Canon. All three list files are written.
    Returns:
        out_root.
    """
    if pattern not in CFA_PATTERNS:
        raise DeepISPError(f"unknown CFA pattern {pattern!r}: use one of {', '.join(CFA_PATTERNS)}")
    if input_channels not in (1, 3):
        raise DeepISPError(f"input_channels must be 1 or 3, got {input_channels}")
    if camera not in CAMERAS:
        raise DeepISPError(f"unknown camera {camera!r}: use one of {', '.join(CAMERAS)}")
    n = len(photos)
    if counts is None:
        train, val = (0, 0) if camera == "canon" else (round(0.4 * n), round(0.2 * n))
        counts = (train, val, n - train - val)
    if sum(counts) != n:
        raise DeepISPError(f"counts {counts} must add up to the {n} photos")
    out_root = Path(out_root)
    rng = np.random.default_rng(seed)
    ids = [str(first_id + k) for k in range(n)]
    folders = {noisy: out_root / NOISE_DIRS[noisy] / f"bayer_{camera}" for noisy in (True, False)}
    for folder in folders.values():
        (folder / "input").mkdir(parents=True, exist_ok=True)
        (folder / "groundtruth").mkdir(parents=True, exist_ok=True)
    for k, (name, photo) in enumerate(zip(ids, photos)):
        h, w = size[::-1] if k in portrait else size
        gt = np.round(_photo_to_linear(Path(photo), h, w) * 65535).astype(np.uint16)
        clean = sample(gt, pattern)  # measured value of each pixel, exactly the ground truth's
        x = clean / 65535.0
        noisy = np.round(np.clip(x + rng.normal(size=x.shape) * np.sqrt(shot_noise * x + read_noise**2), 0, 1) * 65535)
        for is_noisy, mos in ((False, clean), (True, noisy)):
            mos = mos.astype(np.uint16)
            folder = folders[is_noisy]
            write_png(folder / "input" / f"{name}.png", spread(mos, pattern) if input_channels == 3 else mos)
            write_png(folder / "groundtruth" / f"{name}.png", gt)
    bounds = np.cumsum((0,) + tuple(counts))
    for folder in folders.values():
        for list_file, lo, hi in zip(LIST_FILES.values(), bounds[:-1], bounds[1:]):
            (folder / list_file).write_text("".join(f"{i}\n" for i in ids[lo:hi]))
    return out_root
