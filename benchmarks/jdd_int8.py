"""Full-integer int8 of the JDD models against their float selves, per noise level, on held-out photos.

    python benchmarks/jdd_int8.py [--model CKPT ...] [--sigmas 0 2 5 10] [--calib-windows 32]

Photos: the validation photos (deepisp.data.photos.holdout of cbsd68, urban100 and sunhays80: never trained
on), cut to even sizes, under benchmarks/quality.py's JDD protocol (linear truth, RGGB mosaic, Gaussian noise
sigma/255, 16 bit, 8 px border). A noise-aware model is exported per noise level (`export/to_tflite.py
--quant int8 --noise-profile 0 (sigma/255)^2`); here, as there, the level is folded into its biases and every
quantization point's range is calibrated (deepisp.export.int8.calibrated_ranges) on `--calib-windows` windows of
256x256 (deepisp.export.calibration.calibration_windows: a ramp to the 99.9th percentile of the pixels, then
windows), cut from the *training* photos' mosaics with the same noise and companded for sqrt models. The int8
graph is the PyTorch simulation deepisp.export.int8.QuantizedTile (tests/test_int8.py holds the exported TFLite
graph to it; it rounds the packed input at the INPUT point instead of the mosaic itself), run on the whole photo;
the float row is deepisp.tiling.run_tiled, as in quality.py. Writes benchmarks/results/jdd_int8.json and .md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.common import add_out, missing_shared, parser, write_result
from benchmarks.preset_sweep import TRAINING_PHOTOS
from benchmarks.quality_jdd import NOISE_SEED, SIGMAS, Reference, jdd_metrics, load_linear_photo, noisy_mosaics, reference
from benchmarks.quality_methods import U16
from deepisp.checkpoint import load_model
from deepisp.data.photos import holdout
from deepisp.data.synthetic import find_photos
from deepisp.demosaic import bilinear_demosaic
from deepisp.export.calibration import calibration_windows
from deepisp.export.int8 import QuantizedTile, calibrated_ranges
from deepisp.model.domain import compand, uncompand
from deepisp.model.network import DeepISP
from deepisp.model.noise_input import fold_noise_level, noise_levels
from deepisp.tiling import run_tiled

DEFAULT_MODELS = (Path("deepisp/weights/deepisp_phone_jdd.pt"), Path("deepisp/weights/deepisp_micro_jdd.pt"))
CALIBRATION_PHOTOS = 32
CALIBRATION_WINDOW = (256, 256)


def even(target: np.ndarray) -> np.ndarray:
    """[3,H,W] -> cut to even H and W (whole 2x2 quads, which the packed models need)."""
    return target[:, : target.shape[1] // 2 * 2, : target.shape[2] // 2 * 2]


def calibration_mosaics(photos: list[Path], sigmas: list[float]) -> dict[float, list[np.ndarray]]:
    """Per sigma, the training `photos` as noisy [H,W] float32 mosaics in [0,1] (decoded once for every sigma
    and model; never the held-out photos)."""
    noisy = [noisy_mosaics(even(load_linear_photo(p)), sigmas, (NOISE_SEED + 1, k)) for k, p in enumerate(photos)]
    return {sigma: [m[sigma].astype(np.float32) / U16 for m in noisy] for sigma in sigmas}


def calibration(mosaics: list[np.ndarray], cfg, count: int) -> list[np.ndarray]:
    """`count` calibration windows [256,256] float32 cut from `mosaics`, in the model's working domain (the
    mosaic in [0,1], companded for sqrt models: the tile graph's input)."""
    return [compand(torch.from_numpy(w), cfg).numpy() for w in calibration_windows(mosaics, CALIBRATION_WINDOW, count)]


def held_out_pairs(photos: list[Path], sigmas: list[float]) -> list[tuple[Reference, dict[float, np.ndarray]]]:
    """Each held-out photo's scored truth and its uint16 mosaic at every sigma (decoded once for every model)."""
    pairs = []
    for index, path in enumerate(photos):
        target = even(load_linear_photo(path))
        pairs.append((reference(target), noisy_mosaics(target, sigmas, (NOISE_SEED, index))))
    return pairs


@torch.no_grad()
def int8_output(sim: QuantizedTile, cfa: np.ndarray) -> np.ndarray:
    """The simulated int8 graph on a uint16 mosaic [H,W] -> [3,H,W] linear (float64)."""
    mosaic = compand(torch.from_numpy((cfa / U16).astype(np.float32)), sim.model.cfg)
    image, _ = sim.tile(bilinear_demosaic(mosaic[None, None]))
    return uncompand(image, sim.model.cfg)[0].double().numpy()


def measure(model: DeepISP, held_out: list[tuple[Reference, dict[float, np.ndarray]]], calibration_set: dict[float, list[np.ndarray]], windows: int) -> dict:
    """{sigma: {"float"|"int8": mean PSNR linear, PSNR sRGB, SSIM over `held_out`}}, the int8 graph calibrated
    per sigma on `windows` windows of that sigma's `calibration_set`."""
    rows = {}
    for sigma, mosaics in calibration_set.items():
        folded = fold_noise_level(model, noise_levels(sigma / 255.0)) if model.cfg.noise_input else model
        sim = QuantizedTile(folded, calibrated_ranges(folded, calibration(mosaics, model.cfg, windows))).eval()
        per_photo = []
        for ref, cfas in tqdm(held_out, desc=f"sigma {sigma:g}", unit="photo", leave=False):
            cfa = cfas[sigma]
            with torch.no_grad():
                float_out = run_tiled(folded, torch.from_numpy((cfa / U16).astype(np.float32))).double().numpy()
            per_photo.append({"float": jdd_metrics(float_out, ref), "int8": jdd_metrics(int8_output(sim, cfa), ref)})
        row = {v: {k: float(np.mean([p[v][k] for p in per_photo])) for k in ("psnr_linear", "psnr_srgb", "ssim")} for v in ("float", "int8")}
        rows[f"{sigma:g}"] = row
        print(f"  sigma {sigma:g}: float {row['float']['psnr_linear']:.2f} dB, int8 {row['int8']['psnr_linear']:.2f} dB linear")
    return rows


def to_markdown(report: dict) -> str:
    """The README's table: per model and noise level, float and int8 PSNR linear and their difference."""
    sigmas = report["sigmas"]
    lines = [
        f"Generated by `benchmarks/jdd_int8.py`: the {report['n_photos']} validation photos (held out of training; the models were "
        f"chosen on them, so the float column is a selection-set figure, the int8 - float difference is not), JDD protocol; int8 = "
        f"the simulated full-integer graph, calibrated per noise level on {report['calib_windows']} windows of training photos.",
        "",
        "Each cell: PSNR linear (dB) float / int8 (int8 − float); sRGB in the JSON.",
        "",
        "| model | " + " | ".join(f"σ={s:g}" for s in sigmas) + " |",
        "|---|" + "---|" * len(sigmas),
    ]
    for name, rows in report["models"].items():
        cells = []
        for s in sigmas:
            r = rows[f"{s:g}"]
            cells.append(f"{r['float']['psnr_linear']:.2f} / {r['int8']['psnr_linear']:.2f} ({r['int8']['psnr_linear'] - r['float']['psnr_linear']:+.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--model", type=Path, nargs="+", default=list(DEFAULT_MODELS), help="jdd checkpoints (default: both shipped)")
    ap.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    ap.add_argument("--calib-windows", type=int, default=32)
    add_out(ap, "jdd_int8.json")
    args = ap.parse_args()
    if not all(folder.is_dir() for folder in TRAINING_PHOTOS):
        raise SystemExit(missing_shared(TRAINING_PHOTOS[0].parent))
    photos = find_photos(TRAINING_PHOTOS)
    held_out, training = holdout(photos, "val"), holdout(photos, "train")[:CALIBRATION_PHOTOS]
    report = {"sigmas": args.sigmas, "n_photos": len(held_out), "calib_windows": args.calib_windows, "models": {}}
    pairs, calibration_set = held_out_pairs(held_out, args.sigmas), calibration_mosaics(training, args.sigmas)
    for path in args.model:
        model, _ = load_model(path)
        print(path)
        report["models"][path.name] = measure(model.eval(), pairs, calibration_set, args.calib_windows)
    print(f"wrote {args.out} and {write_result(args.out, report, to_markdown(report))}")


if __name__ == "__main__":
    main()
