"""Training and inference throughput of the model presets on this machine's CPU (pixels/s).

    python benchmarks/train_throughput.py [--crop 128] [--batch 4] [--repeats 5] [--candidates]

Training: one Adam step (forward, full-ISP or L2 loss, backward, update) on a batch of random crops.
Inference: forward on one 512x512 image under no_grad. Prints a table and writes
benchmarks/results/train_throughput.json. `--candidates` adds the phone-size grid the phone presets
were picked from. Numbers are medians of `--repeats` runs after one warm-up; compare within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from deepisp.losses import IspLoss, jdd_loss
from deepisp.model import PRESETS, DeepISP, ModelConfig, count_parameters, flops_per_pixel

RESULTS = Path(__file__).parent / "results"


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN primitive cache)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(cfg: ModelConfig, crop: int, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = DeepISP(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=5e-5)
    loss_fn = IspLoss() if cfg.mode == "full" else jdd_loss
    x, y = torch.rand(batch, 3, crop, crop), torch.rand(batch, 3, crop, crop)

    def train_step() -> None:
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    image = torch.rand(1, 3, 512, 512)

    def infer() -> None:
        with torch.no_grad():
            model(image)

    t_train = _median_seconds(train_step, repeats)
    t_infer = _median_seconds(infer, repeats)
    fpp = flops_per_pixel(cfg)
    return {
        "config": cfg.__dict__,
        "params": count_parameters(model),
        "kflop_per_pixel": fpp / 1e3,
        "train_pixels_per_s": batch * crop * crop / t_train,
        "infer_pixels_per_s": 512 * 512 / t_infer,
        "infer_gflop_per_s": fpp * 512 * 512 / t_infer / 1e9,
        "train_step_s": t_train,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--candidates", action="store_true", help="also measure the phone-size grid (width x n_ll)")
    ap.add_argument("--out", type=Path, default=RESULTS / "train_throughput.json")
    args = ap.parse_args()

    configs = dict(PRESETS)
    if args.candidates:
        for width in (16, 24, 32):
            for n_ll in (6, 8, 10):
                configs[f"cand-w{width}-ll{n_ll}"] = ModelConfig(mode="full", n_ll=n_ll, n_hl=3, width=width, hl_width=32)
    rows = {}
    print(f"{'config':<18} {'params':>8} {'kFLOP/px':>9} {'train px/s':>11} {'infer px/s':>11} {'infer GFLOP/s':>13}")
    for name, cfg in configs.items():
        r = measure(cfg, args.crop, args.batch, args.repeats)
        rows[name] = r
        print(f"{name:<18} {r['params']:>8,} {r['kflop_per_pixel']:>9.1f} {r['train_pixels_per_s']:>11,.0f} "
              f"{r['infer_pixels_per_s']:>11,.0f} {r['infer_gflop_per_s']:>13.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "crop": args.crop, "batch": args.batch, "repeats": args.repeats}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
