"""Pick a phone preset's shape by measured quality at equal cost: short training runs of equal-FLOP shapes.

    python benchmarks/preset_sweep.py --mode jdd [--steps 600] [--photos DIR ...] [--threads 1]

Every candidate in CANDIDATES[mode] (each <= 60 kFLOP/pixel, the phone budget) trains for `--steps` Adam
steps with the same seed, data stream (photo-simulated pairs, deepisp.data.photos), learning rate and
schedule; the score is the validation loss on crops of photos held out of the training folders (jdd: also
as PSNR, -10 log10 MSE). Kodak24 is never touched. Short runs rank shapes, they do not predict the final
quality: the ranking is what the presets in deepisp/model.py were chosen by. Writes
benchmarks/results/preset_sweep_<mode>.json and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from deepisp.data import SHARED_DATA
from deepisp.model import ModelConfig, count_parameters, DeepISP, flops_per_pixel
from deepisp.train import TrainConfig, train

RESULTS = Path(__file__).parent / "results"
TRAINING_PHOTOS = [SHARED_DATA / "photos" / name for name in ("cbsd68", "urban100", "sunhays80")]
CANDIDATES = {
    "jdd": {
        "w16-ll14": ModelConfig(mode="jdd", n_ll=14, width=16, residual_scale=True),
        "w20-ll10": ModelConfig(mode="jdd", n_ll=10, width=20, residual_scale=True),
        "w24-ll7": ModelConfig(mode="jdd", n_ll=7, width=24, residual_scale=True),
    },
    "full": {
        "w16-ll12": ModelConfig(mode="full", n_ll=12, n_hl=3, width=16, hl_width=32, residual_scale=True),
        "w20-ll8": ModelConfig(mode="full", n_ll=8, n_hl=3, width=20, hl_width=32, residual_scale=True),
        "w24-ll6": ModelConfig(mode="full", n_ll=6, n_hl=3, width=24, hl_width=32, residual_scale=True),
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=sorted(CANDIDATES), required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--photos", nargs="+", type=Path, default=TRAINING_PHOTOS)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/preset_sweep_<mode>.json)")
    args = ap.parse_args()
    missing = [p for p in args.photos if not p.is_dir()]
    if missing:
        raise SystemExit(f"error: photo folder {missing[0]} not found; the sweep needs the shared photos beside the repo")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or RESULTS / f"preset_sweep_{args.mode}.json"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in CANDIDATES[args.mode].items():
            tc = TrainConfig(photos=tuple(map(str, args.photos)), out=f"{tmp}/{name}", preset=name, steps=args.steps,
                             lr=args.lr, lr_schedule="cosine", val_every=args.steps, ckpt_every=args.steps)
            t0 = time.perf_counter()
            train(tc, progress=False, model_config=cfg)
            with open(f"{tmp}/{name}/log.csv") as f:
                val = float([r for r in csv.DictReader(f) if r["val_loss"]][-1]["val_loss"])
            rows[name] = {"config": cfg.__dict__, "kflop_per_pixel": flops_per_pixel(cfg) / 1e3,
                          "params": count_parameters(DeepISP(cfg)), "val_loss": val, "seconds": time.perf_counter() - t0}
            if args.mode == "jdd":
                rows[name]["val_psnr_linear"] = -10 * math.log10(val)
            print(f"{name:<10} {rows[name]['kflop_per_pixel']:6.1f} kFLOP/px  val loss {val:.6f}"
                  + (f"  ({rows[name]['val_psnr_linear']:.2f} dB)" if args.mode == "jdd" else "")
                  + f"  {rows[name]['seconds']:.0f} s", flush=True)
    meta = {"steps": args.steps, "lr": args.lr, "schedule": "cosine", "photos": [p.name for p in args.photos],
            "threads": torch.get_num_threads(), "torch": torch.__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    os.replace(tmp_out, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
