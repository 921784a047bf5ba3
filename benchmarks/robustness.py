"""The full ISP on raws it was not trained on: other exposures, other cameras, files without white balance.

    python benchmarks/robustness.py [--full-model CKPT ...] [--limit N] [--out DIR] [--heldout]

Every shipped full model (or `--full-model`s) against rawpy's default rendering and no ISP, on the Kodak24
photos (test only: never used to train or pick a model) rendered to raw as `deepisp make-synthetic` renders
them, but for each of CAMERAS (the S7 the models were trained on and others whose colour matrices no model
saw) and each of EXPOSURES (1/16 to 1 of the automatic exposure, and 1 with 5% of the sites clipped), each
written as a DNG with and without its AsShotNeutral. Writes benchmarks/results/robustness.json (per row and
per image) and robustness.md (the tables the README shows). PROTOCOL below is the exact method; `--help`
prints it. `--heldout` runs the same protocol on the held-out training photos instead (the validation split of
urban100 and sunhays80, benchmarks/heldout.py's): what models are chosen on, written as robustness_heldout.*.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rawpy
import torch
from tqdm import tqdm

from benchmarks.common import RESULTS, add_full_models, fail, means, parser, short_label, timed, write_result
from benchmarks.heldout import FOLDERS as HELDOUT_FOLDERS
from benchmarks.quality_full import NO_ISP, RAWPY, no_isp, rawpy_default
from deepisp.checkpoint import load_model
from deepisp.color import histogram_stretch, srgb_to_linear
from deepisp.conditioning import model_input
from deepisp.data import SHARED_DATA
from deepisp.data.dng import write_dng
from deepisp.data.photos import holdout
from deepisp.data.synthetic import BLACK_LEVEL, WHITE_LEVEL, auto_exposure_gain, camera_mosaic, draw_scene_params, expose, find_photos, load_photo
from deepisp.errors import DeepISPError
from deepisp.metrics import image_metrics
from deepisp.model import DeepISP
from deepisp.options import Mode
from deepisp.raw import read_raw
from deepisp.reference_camera import M_XYZ_FROM_SRGB, S7_XYZ_TO_CAMERA, camera_from_srgb
from deepisp.tiling import run_tiled

# XYZ (D65) -> camera matrices x10000 from LibRaw's src/tables/colordata.cpp (Adobe DNG Converter's), as
# LibRaw itself uses them for these cameras' raw files. No model was trained on any but the S7.
CAMERAS = {
    "Samsung Galaxy S7": S7_XYZ_TO_CAMERA * 10000,
    "Canon EOS 5D Mark IV": [[6446, -366, -864], [-4436, 12204, 2513], [-952, 2496, 6348]],
    "Nikon D850": [[10405, -3755, -1270], [-5461, 13787, 1793], [-1040, 2015, 6785]],
    "Sony ILCE-7M3": [[7374, -2389, -551], [-5435, 13162, 2519], [-1006, 1795, 6552]],
    "Panasonic DC-GH5": [[7641, -2336, -605], [-3218, 11299, 2187], [-485, 1338, 5121]],
    "Motorola PIXL": [[8898, -989, -1033], [-3292, 11619, 1674], [-661, 3178, 5216]],
}
# Fractions of the automatic exposure; "1 clip 5%" exposes so that 5% of the mosaic's sites clip.
EXPOSURES = {"1/16": 1 / 16, "1/8": 1 / 8, "1/4": 1 / 4, "1/2": 1 / 2, "1": 1.0, "1 clip 5%": None}
CLIPPED_SHARE = 0.05
METRICS = ("psnr", "ssim", "ciede2000", "ciede2000_p99")
PROTOCOL = (
    "Scenes: each Kodak24 photo (500x500 sRGB) taken as the scene in linear sRGB (inverse sRGB curve); for each camera, "
    "make-synthetic's forward model with that camera's matrix (camera RGB = rows-normalised XYZ->camera matrix times "
    "XYZ-from-sRGB, divided by white-balance gains R ~ U(1.6,2.4), B ~ U(1.3,2.0)), auto exposure (99th percentile of the "
    "mosaic at 0.8 of full scale) times the row's exposure (\"1 clip 5%\": the mosaic's 95th percentile at full scale), "
    "shot + read noise (a ~ logU(1e-4,1e-3), b ~ logU(1e-6,1e-5) on the [0,1] scale), 10-bit DN, RGGB; one draw per "
    "(photo, camera) seeded by (0, photo index, camera index), one noise field per (photo, camera, exposure). Written as "
    "DNG with the camera's ColorMatrix1 and NoiseProfile, with AsShotNeutral ('wb: file') and without ('wb: none'; "
    "the same pixels). Methods: no ISP (bilinear demosaic + sRGB curve of the raw mosaic, the `deepisp eval` baseline); "
    "rawpy's default postprocess with use_camera_wb=True (LibRaw falls back to its daylight balance from the matrix "
    "when the file has none); each model through `deepisp process`'s path (read_raw, deepisp.conditioning.model_input "
    "as `deepisp process` defaults to: for as_shot models white balance, or its estimate, neutral highlights, the camera's "
    "colours into the reference camera's, and for `exposure: metered` models metered exposure; the metadata-free "
    "phone-full gets the raw as is; exact tiled inference, clamped to [0,1]). "
    "Metrics as quality.py's full-ISP table: every output and the target get the paper's histogram stretch, then PSNR, "
    "SSIM and CIEDE2000 (mean and 99th percentile over pixels) on the whole frame; table cells are means over photos."
)


def heldout_photos() -> list[Path]:
    """The validation split of benchmarks/heldout.py's folders: photos no photo-trained model trained on."""
    folders = [SHARED_DATA / "photos" / f for f in HELDOUT_FOLDERS]
    missing = [f for f in folders if not f.is_dir()]
    if missing:
        raise DeepISPError(f"{missing[0]} not found: --heldout needs the shared photos beside the repo (../shared/data)")
    return holdout(find_photos(folders), "val")


def scene_raw(
    photo: np.ndarray, camera: int, exposure: float | None, rng_scene: np.random.Generator, rng_noise: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """One photo as a camera's raw: [H,W] uint16 DN (RGGB, black BLACK_LEVEL, white WHITE_LEVEL) and the draw."""
    params = draw_scene_params(rng_scene)
    linear = srgb_to_linear(torch.from_numpy(photo / 255.0)).numpy()
    cam_from_srgb = camera_from_srgb(np.asarray(list(CAMERAS.values())[camera]) / 10000.0)
    clean = camera_mosaic(linear, "RGGB", params["wb_gains"], cam_from_srgb)
    if exposure is None:  # 5% of the sites clip
        gain = 1.0 / max(float(np.percentile(clean, 100 * (1 - CLIPPED_SHARE))), 1e-6)
    else:
        gain = auto_exposure_gain(clean) * exposure
    return expose(clean * gain, 1.0, params, rng_noise), {**params, "cam_from_srgb": cam_from_srgb}


def write_scene(path: Path, dn: np.ndarray, params: dict, with_wb: bool) -> None:
    write_dng(
        path,
        dn,
        black_level=BLACK_LEVEL,
        white_level=WHITE_LEVEL,
        color_matrix=params["cam_from_srgb"] @ np.linalg.inv(M_XYZ_FROM_SRGB),
        as_shot_neutral=tuple(1.0 / np.asarray(params["wb_gains"])) if with_wb else None,
        make="deepisp",
        model="robustness",
        noise_profile=(params["noise_shot_a"], params["noise_read_b"]),
    )


def model_render(model: DeepISP, dng: Path) -> torch.Tensor:
    raw = read_raw(dng)
    mosaic, _ = model_input(raw, model.cfg)
    return run_tiled(model, torch.from_numpy(mosaic)).clamp(0, 1)


@torch.no_grad()
def run(photos: list[Path], models: dict[str, DeepISP], workdir: Path) -> list[dict]:
    """One row per (photo, camera, exposure, wb metadata, method)."""
    rows = []
    jobs = [(i, c, e) for i in range(len(photos)) for c in range(len(CAMERAS)) for e in EXPOSURES]
    for i, c, e in tqdm(jobs, desc="robustness", unit="raw"):
        photo = load_photo(photos[i])
        target = histogram_stretch(torch.from_numpy(photo).permute(2, 0, 1).float() / 255.0)
        dn, params = scene_raw(photo, c, EXPOSURES[e], np.random.default_rng([0, i, c]), np.random.default_rng([0, i, c, list(EXPOSURES).index(e)]))
        for with_wb in (True, False):
            dng = workdir / f"scene_{'wb' if with_wb else 'nowb'}.dng"
            write_scene(dng, dn, params, with_wb)
            renders: dict[str, Callable[[], torch.Tensor]] = {
                NO_ISP: lambda d=dng: no_isp(read_raw(d).mosaic),
                RAWPY: lambda d=dng, t=target: rawpy_default(d, t),
                **{name: (lambda m=m, d=dng: model_render(m, d)) for name, m in models.items()},
            }
            for method, render in renders.items():
                out, seconds = timed(render)
                metrics = image_metrics(histogram_stretch(out), target)
                rows.append(
                    {
                        "photo": photos[i].stem,
                        "camera": list(CAMERAS)[c],
                        "exposure": e,
                        "wb": "file" if with_wb else "none",
                        "method": method,
                        **{k: metrics[k] for k in METRICS},
                        "seconds": seconds,
                    }
                )
    return rows


def to_markdown(report: dict) -> str:
    """Per model: a table of cameras x exposures (wb: file), the same without white balance, and rawpy's."""
    mean = report["mean"]
    methods = report["methods"]
    lines = [
        f"Full ISP on {report['n_photos']} {'held-out training' if report['heldout'] else 'Kodak24'} photos rendered as raws of "
        f"{len(CAMERAS)} cameras at {len(EXPOSURES)} exposures, "
        "with and without white-balance metadata. Each cell: PSNR (dB) / mean CIEDE2000 after the paper's histogram stretch; "
        "**bold** where the model beats rawpy's default on both. Generated by `benchmarks/robustness.py`.",
        "",
    ]
    for wb in ("file", "none"):
        lines += [f"**White balance: {'from the file (AsShotNeutral)' if wb == 'file' else 'none in the file'}**", ""]
        lines += ["| camera | method | " + " | ".join(EXPOSURES) + " |", "|---|---|" + "---|" * len(EXPOSURES)]
        for camera in CAMERAS:
            for method in methods:
                cells = []
                for e in EXPOSURES:
                    m, r = mean[camera][e][wb][method], mean[camera][e][wb][RAWPY]
                    text = f"{m['psnr']:.2f} / {m['ciede2000']:.2f}"
                    ahead = method not in (RAWPY, NO_ISP) and m["psnr"] > r["psnr"] and m["ciede2000"] < r["ciede2000"]
                    cells.append(f"**{text}**" if ahead else text)
                lines.append(f"| {camera} | {method} | " + " | ".join(cells) + " |")
        lines.append("")
    for method in methods:
        if method in (RAWPY, NO_ISP):
            continue
        s = report["summary"][method]
        lines.append(
            f"- **{method}**: ahead of rawpy on PSNR and mean CIEDE2000 in {s['ahead']} of {s['rows']} rows; worst row "
            f"{s['worst_gap']:.2f} dB under its best row of the same exposure ({s['worst_row']})."
        )
    lines += ["", f"Protocol: {report['protocol']}", "", f"Generated in {report['minutes']:.1f} min; {report['versions']}.", ""]
    return "\n".join(lines)


def summarise(mean: dict, methods: list[str]) -> dict:
    """Per model: in how many rows it beats rawpy on PSNR and mean CIEDE2000, and the largest PSNR gap
    between a row and the best row of the same exposure (cameras x wb metadata)."""
    out = {}
    for method in methods:
        if method in (RAWPY, NO_ISP):
            continue
        ahead, rows, worst = 0, 0, (0.0, "")
        for e in EXPOSURES:
            cells = {(c, wb): mean[c][e][wb][method] for c in CAMERAS for wb in ("file", "none")}
            best = max(v["psnr"] for v in cells.values())
            for (c, wb), v in cells.items():
                r = mean[c][e][wb][RAWPY]
                rows += 1
                ahead += int(v["psnr"] > r["psnr"] and v["ciede2000"] < r["ciede2000"])
                if best - v["psnr"] > worst[0]:
                    worst = (best - v["psnr"], f"{c}, {e}, wb {wb}")
        out[method] = {"ahead": ahead, "rows": rows, "worst_gap": worst[0], "worst_row": worst[1]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__ + "\nProtocol: " + PROTOCOL)
    add_full_models(ap)
    ap.add_argument("--photos", type=Path, default=SHARED_DATA / "photos" / "kodak24", help="test photos (default: Kodak24)")
    ap.add_argument("--heldout", action="store_true", help="the held-out training photos instead of --photos: for choosing models")
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where robustness.json/.md go")
    args = ap.parse_args(argv)
    try:
        if not args.photos.is_dir():
            raise DeepISPError(f"{args.photos} not found: the benchmark needs the shared photos beside the repo (../shared/data)")
        if args.limit is not None and args.limit < 1:
            raise DeepISPError(f"--limit must be at least 1, got {args.limit}")
        photos = heldout_photos() if args.heldout else find_photos([args.photos])
        photos = photos[: args.limit]
        models = {}
        for path in args.full_models:
            model, state = load_model(path)
            if model.cfg.mode != Mode.FULL:
                raise DeepISPError(f"{path} is a {model.cfg.mode} model; this benchmark runs full-ISP models")
            models[f"{short_label(path)} ({model.cfg.exposure} exposure)"] = model
        args.out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            rows = run(photos, models, Path(tmp))
    except DeepISPError as e:
        return fail(e)
    methods = [NO_ISP, RAWPY, *models]
    mean = means(rows, METRICS, ("camera", "exposure", "wb", "method"))
    report = {
        "protocol": PROTOCOL,
        "n_photos": len(photos),
        "heldout": args.heldout,
        "photos": "held-out split of " + ", ".join(HELDOUT_FOLDERS) if args.heldout else args.photos.name,
        "models": {name: p.name for name, p in zip(models, args.full_models)},
        "methods": methods,
        "cameras": {k: np.asarray(v).tolist() for k, v in CAMERAS.items()},
        "exposures": list(EXPOSURES),
        "mean": mean,
        "summary": summarise(mean, methods),
        "rows": rows,
        "minutes": (time.perf_counter() - t0) / 60,
        "versions": f"rawpy {rawpy.__version__}, LibRaw {rawpy.libraw_version}, torch {torch.__version__}, {platform.machine()}",
    }
    name = "robustness_heldout" if args.heldout else "robustness"
    markdown = to_markdown(report)
    write_result(args.out / f"{name}.json", report, markdown, indent=1)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
