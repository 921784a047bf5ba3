"""Synthetic S7-ISP scenes from ordinary sRGB photographs, written in the real dataset's on-disk layout.

Each photo becomes one scene folder `<out_dir>/<YYYYMMDD_HHMMSS>/` holding `medium_exposure.dng/.jpg` and
`short_exposure.dng/.jpg`, exactly the names of the S7-ISP dataset, so the real loader (s7.py) and the
real raw reader (raw.py, through LibRaw) are what training on synthetic data exercises. Folder names are
fake capture times (2026-01-01 00:00:00 plus one minute per photo index); `synthetic_manifest.json` at the
root maps each scene to its source photo and sampled parameters.

Forward model per photo (all sampled with a generator seeded by (seed, index), so fully deterministic):
    sRGB photo -> inverse sRGB curve -> linear sRGB
    -> camera RGB (M_CAM_FROM_SRGB) -> divided by white-balance gains (R ~ U(1.6,2.4), B ~ U(1.3,2.0))
    -> Bayer mosaic in the sensor pattern -> auto exposure: 99th percentile at 0.8 of full scale (medium)
    -> short = medium / 4 -> independent heteroscedastic noise on each, var = a*x + b (x in [0,1] of full
       scale, a ~ logU(1e-4,1e-3) shot, b ~ logU(1e-6,1e-5) read) -> 10 bit, black 64, white 1023 -> DNG.
medium_exposure.jpg is the photo itself (the well-lit camera output, the training target);
short_exposure.jpg is a plain rendering of the short raw (bilinear demosaic, white balance, colour matrix,
sRGB curve): the dark, noisy JPEG a phone would produce.
"""

from __future__ import annotations

import datetime
import json
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from deepisp.atomic import atomic_path, make_folder
from deepisp.cfa import CFA_PATTERNS, canonicalize, mirror, sample
from deepisp.color import linear_to_srgb, srgb_to_linear
from deepisp.data.dng import MIN_LIBRAW_SIZE, write_dng, write_jpeg
from deepisp.demosaic import bilinear_demosaic
from deepisp.errors import DeepISPError
from deepisp.reference_camera import (
    AUTO_EXPOSURE_PERCENTILE,
    AUTO_EXPOSURE_TARGET,
    M_CAM_FROM_SRGB,
    M_CAM_FROM_XYZ,
    M_SRGB_FROM_CAM,
    SHORT_EXPOSURE_RATIO,
    WB_GAIN_RANGE,
)

PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MANIFEST_NAME = "synthetic_manifest.json"
BLACK_LEVEL, WHITE_LEVEL = 64, 1023  # 10-bit sensor, as a phone's raw
# Auto exposure gain cap, so a nearly black photo becomes a dark scene instead of amplified noise.
MAX_EXPOSURE_GAIN = 64.0
SHOT_NOISE_RANGE = (1e-4, 1e-3)  # a in var = a*x + b, log-uniform
READ_NOISE_RANGE = (1e-6, 1e-5)  # b, log-uniform
FIRST_CAPTURE_TIME = datetime.datetime(2026, 1, 1, 0, 0, 0)


def find_photos(dirs: Sequence[str | Path]) -> list[Path]:
    """Photos (.png, .jpg, .jpeg, .tif, .tiff, any case) directly inside the given folders, sorted and
    without duplicates. A path that is itself a photo file is taken as is.

    Raises:
        DeepISPError: a path does not exist, or no photo was found.
    """
    found: set[Path] = set()
    for d in map(Path, dirs):
        if not d.exists():
            raise DeepISPError(f"photo folder not found: {d}; check the path")
        candidates = [d] if d.is_file() else d.iterdir()
        found.update(p for p in candidates if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS)
    if not found:
        listed = ", ".join(str(d) for d in dirs) or "(no folders given)"
        raise DeepISPError(f"no photos ({'/'.join(PHOTO_EXTENSIONS)}) found in {listed}; pass folders of sRGB photographs")
    return sorted(found)


def scene_name(index: int) -> str:
    """Deterministic S7-style folder name (capture time YYYYMMDD_HHMMSS) of the index-th photo."""
    return (FIRST_CAPTURE_TIME + datetime.timedelta(minutes=index)).strftime("%Y%m%d_%H%M%S")


# Photos are held in memory as uint8 RGB (3 bytes a pixel); a 12 MP camera frame is the largest expected.
MAX_PHOTO_PIXELS = 64_000_000


def load_photo(path: Path) -> np.ndarray:
    """[H,W,3] uint8 sRGB in display orientation, cropped to even H and W (whole Bayer quads)."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PHOTO_PIXELS:  # checked from the header, before anything is decoded
                raise DeepISPError(f"photo {path} is {im.width}x{im.height}, above {MAX_PHOTO_PIXELS / 1e6:g} MP; downscale it or remove it")
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except Image.DecompressionBombError:
        raise DeepISPError(f"photo {path} declares a frame far above {MAX_PHOTO_PIXELS / 1e6:g} MP; downscale it or remove it") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DeepISPError(f"cannot read photo {path}: {e}; convert it to PNG or remove it") from None
    h, w = rgb.shape[0] - rgb.shape[0] % 2, rgb.shape[1] - rgb.shape[1] % 2
    if min(h, w) < MIN_LIBRAW_SIZE:
        raise DeepISPError(f"photo {path} is {rgb.shape[0]}x{rgb.shape[1]}; raws need at least {MIN_LIBRAW_SIZE} px a side")
    return np.ascontiguousarray(rgb[:h, :w])


def _quantize(x: np.ndarray) -> np.ndarray:
    """Normalised signal (0 = black, 1 = white; noise may go below 0) -> uint16 DN with the black level."""
    dn = np.round(BLACK_LEVEL + x * (WHITE_LEVEL - BLACK_LEVEL))
    return np.clip(dn, 0, WHITE_LEVEL).astype(np.uint16)


def _render_camera_jpeg(cfa: np.ndarray, pattern: str, wb_gains: np.ndarray) -> np.ndarray:
    """A minimal camera ISP: raw DN -> sRGB uint8.

    Args:
        cfa: [H,W] uint16 DN in the sensor `pattern`, black BLACK_LEVEL, white WHITE_LEVEL.
        pattern: sensor CFA pattern.
        wb_gains: (R, G, B) multipliers applied to camera RGB.
    Returns:
        [H,W,3] uint8 sRGB-encoded, sensor frame (= display, the DNGs are written unrotated).
    """
    rggb, flip_h, flip_v = canonicalize(dn_to_normalised(cfa), pattern)
    cam = bilinear_demosaic(torch.from_numpy(rggb)[None, None])[0].numpy()  # [3,H,W] canonical frame
    cam = mirror(cam, flip_h, flip_v)  # back to the sensor frame
    lin = np.einsum("ij,jhw->hwi", M_SRGB_FROM_CAM, cam * np.asarray(wb_gains).reshape(3, 1, 1))
    srgb = linear_to_srgb(torch.from_numpy(np.clip(lin, 0.0, 1.0))).numpy()
    return np.round(srgb * 255.0).astype(np.uint8)


def draw_scene_params(rng: np.random.Generator) -> dict:
    """One draw of the per-scene parameters: white-balance gains (R, G, B) and the noise model var = a*x + b."""
    wb_gains = np.array([rng.uniform(*WB_GAIN_RANGE["R"]), 1.0, rng.uniform(*WB_GAIN_RANGE["B"])])
    shot_a = float(np.exp(rng.uniform(*np.log(SHOT_NOISE_RANGE))))
    read_b = float(np.exp(rng.uniform(*np.log(READ_NOISE_RANGE))))
    return {"wb_gains": wb_gains.tolist(), "noise_shot_a": shot_a, "noise_read_b": read_b}


def camera_mosaic(linear: np.ndarray, pattern: str, wb_gains: Sequence[float], cam_from_srgb: np.ndarray = M_CAM_FROM_SRGB) -> np.ndarray:
    """Linear sRGB [H,W,3] (any H, W) -> the noiseless sensor mosaic [H,W] before exposure: camera RGB
    (`cam_from_srgb`, the S7's by default) divided by the white-balance gains, sampled on `pattern`, clipped
    at 0 (another camera's matrix may send saturated colours below it)."""
    camera = np.maximum((linear @ np.asarray(cam_from_srgb).T) / np.asarray(wb_gains), 0.0)
    return sample(camera, pattern)


def auto_exposure_gain(clean: np.ndarray) -> float:
    """The gain that puts the mosaic's AUTO_EXPOSURE_PERCENTILE at AUTO_EXPOSURE_TARGET of full scale."""
    p99 = float(np.percentile(clean, AUTO_EXPOSURE_PERCENTILE))
    return min(AUTO_EXPOSURE_TARGET / p99, MAX_EXPOSURE_GAIN) if p99 > 0 else MAX_EXPOSURE_GAIN


def expose(clean: np.ndarray, ratio: float, params: dict, rng: np.random.Generator) -> np.ndarray:
    """An exposed mosaic (full scale 1) at `ratio` of it, with shot + read noise -> [H,W] uint16 DN."""
    signal = clean * ratio
    noisy = signal + np.sqrt(params["noise_shot_a"] * signal + params["noise_read_b"]) * rng.standard_normal(signal.shape)
    return _quantize(noisy)


def dn_to_normalised(dn: np.ndarray) -> np.ndarray:
    """uint16 DN -> float32 in [0,1], black subtracted and clipped, as deepisp.raw.read_raw normalises."""
    return np.clip((dn.astype(np.float32) - BLACK_LEVEL) / (WHITE_LEVEL - BLACK_LEVEL), 0.0, 1.0)


def _synthesize(photo: np.ndarray, pattern: str, rng: np.random.Generator) -> tuple[dict, dict[str, np.ndarray]]:
    """One photo -> sampled parameters and the two raw frames {"medium_exposure", "short_exposure"} as
    [H,W] uint16 DN in the sensor pattern."""
    params = draw_scene_params(rng)
    linear = srgb_to_linear(torch.from_numpy(photo / 255.0)).numpy()  # [H,W,3] linear sRGB
    clean = camera_mosaic(linear, pattern, params["wb_gains"])
    params["exposure_gain"] = auto_exposure_gain(clean)
    clean = clean * params["exposure_gain"]
    frames = {name: expose(clean, ratio, params, rng) for name, ratio in (("medium_exposure", 1.0), ("short_exposure", SHORT_EXPOSURE_RATIO))}
    return params, frames


def _load_manifest(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
        if isinstance(manifest, dict) and isinstance(manifest.get("scenes"), dict):
            return manifest
    except (OSError, ValueError):
        pass
    raise DeepISPError(f"{path} is not a synthetic-data manifest; delete it or choose another output folder")


def make_synthetic(
    photos: Sequence[Path],
    out_dir: Path,
    *,
    seed: int = 0,
    pattern: str = "RGGB",
    variants: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Write `variants` S7-layout scenes per photo into `out_dir` (created if needed).

    Variant v of photo i is an independent draw of white balance, noise and its render, written as scene
    `scene_name(i * variants + v)`; existing scene files of the same names are overwritten and the result
    depends only on (photo, i, v, seed, pattern). Variants of one photo share content, so keep them on one
    side of a train/validation split (train with `--val-data` on another folder). Every file is written
    atomically, and the manifest is updated after each scene so it always describes what is on disk.

    Args:
        photos: sRGB photographs (any format PIL reads; see `find_photos`).
        out_dir: dataset root.
        seed: non-negative integer seed.
        pattern: sensor CFA pattern of the DNGs ("RGGB", "GRBG", "GBRG", "BGGR").
        variants: scenes per photo, >= 1.
        progress: show a tqdm progress bar.
    Returns:
        the scene folders, in photo order.
    """
    if pattern not in CFA_PATTERNS:
        raise DeepISPError(f"unknown CFA pattern {pattern!r}; use one of {', '.join(CFA_PATTERNS)}")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise DeepISPError(f"seed must be a non-negative integer, got {seed!r}")
    if not photos:
        raise DeepISPError("no photos given; pass folders of sRGB photographs")
    if variants < 1:
        raise DeepISPError(f"variants must be at least 1, got {variants}")
    out_dir = Path(out_dir)
    make_folder(out_dir)
    manifest_path = out_dir / MANIFEST_NAME
    manifest = _load_manifest(manifest_path)
    manifest.update(
        generator="deepisp.data.synthetic",
        camera="Samsung Galaxy S7 colour matrix (LibRaw colordata.cpp), row-normalised",
        cam_from_srgb=M_CAM_FROM_SRGB.tolist(),
        black_level=BLACK_LEVEL,
        white_level=WHITE_LEVEL,
        short_exposure_ratio=SHORT_EXPOSURE_RATIO,
    )
    manifest.setdefault("scenes", {})

    scenes = []
    for index, photo_path in enumerate(tqdm(photos, desc="synthetic scenes", unit="photo", disable=not progress, delay=1.0)):
        photo = load_photo(Path(photo_path))
        for variant in range(variants):
            scene = out_dir / scene_name(index * variants + variant)
            params = _write_scene(scene, photo, pattern, np.random.default_rng([seed, index, variant]))
            manifest["scenes"][scene.name] = {
                "source": str(Path(photo_path).resolve()),
                "index": index,
                "variant": variant,
                "seed": seed,
                "pattern": pattern,
                "size": list(photo.shape[:2]),
                **params,
            }
            with atomic_path(manifest_path) as tmp:
                tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            scenes.append(scene)
    return scenes


def _write_scene(scene: Path, photo: np.ndarray, pattern: str, rng: np.random.Generator) -> dict:
    """Render one scene folder (two DNGs, two JPEGs) from a photo; returns the sampled parameters."""
    params, frames = _synthesize(photo, pattern, rng)
    scene.mkdir(exist_ok=True)
    for name, cfa in frames.items():
        write_dng(
            scene / f"{name}.dng",
            cfa,
            pattern=pattern,
            black_level=BLACK_LEVEL,
            white_level=WHITE_LEVEL,
            color_matrix=M_CAM_FROM_XYZ,
            as_shot_neutral=tuple(1.0 / np.asarray(params["wb_gains"])),
            make="deepisp",
            model="synthetic S7",
            noise_profile=(params["noise_shot_a"], params["noise_read_b"]),  # expose()'s noise, normalised units
        )
    write_jpeg(scene / "medium_exposure.jpg", photo)
    write_jpeg(scene / "short_exposure.jpg", _render_camera_jpeg(frames["short_exposure"], pattern, np.asarray(params["wb_gains"])))
    return params
