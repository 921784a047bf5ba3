"""Training and inference throughput of the model presets on this machine's CPU (pixels/s), and training
crops per second by data source (`--loading`).

    python benchmarks/train_throughput.py [--crop 128] [--batch 4] [--repeats 5] [--candidates] [--presets A B]
    python benchmarks/train_throughput.py --loading [--scenes 4] [--steps 100]

Training: one Adam step (forward, full-ISP or L2 loss, backward, update) on a batch of random crops, on
each path `deepisp train` can take: eager NCHW fp32 (the baseline), channels_last fp32, and channels_last
with bf16 autocast (the default where the CPU computes bf16 natively; weights, Adam and loss stay fp32).
Inference: forward on one 512x512 image under no_grad (eager NCHW fp32). Prints a table with each path's
ratio to the baseline and writes benchmarks/results/train_throughput.json. `--candidates` adds the
equal-cost phone shapes the phone presets were picked from. Numbers are medians of `--repeats` runs after
one warm-up; compare within one run only.

`--loading` measures what feeds the model instead (benchmarks/results/train_loading.json): training batches
(`deepisp.train.batches`, the default model's input contract) per second from a full-size S7-layout set
(`--scenes` Urban100 photos upscaled to 4032x3024 and rendered by make-synthetic, kept in
out/train-loading-s7 for the next run) read through its `deepisp cache`, cold (the cache's pages dropped
from the OS page cache first) and warm, timed from each loader's first batch on; decoded per crop (what the S7 loader does for a scene outside its
16-scene LRU, the common case on the 110-scene S7-ISP set); and photo pairs simulated in memory (`--photos`),
each with 0 and 2 DataLoader workers.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import add_out, missing_shared, parser, timings, write_result
from benchmarks.preset_sweep import CANDIDATES
from deepisp.distributed import SINGLE_PROCESS
from deepisp.losses import IspLoss, jdd_loss
from deepisp.model import PRESETS, DeepISP, ModelConfig, count_parameters, flops_per_pixel
from deepisp.options import Mode
from deepisp.train import TrainConfig, autocast_dtype, batches

# Training paths: (name, memory format, autocast dtype or None).
PATHS = (
    ("eager fp32", torch.contiguous_format, None),
    ("channels_last fp32", torch.channels_last, None),
    ("channels_last bf16", torch.channels_last, torch.bfloat16),
)


def train_seconds(cfg: ModelConfig, crop: int, batch: int, repeats: int, memory_format, amp) -> float:
    """Median seconds of one Adam step on one path."""
    torch.manual_seed(0)
    model = DeepISP(cfg).to(memory_format=memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=5e-5)
    loss_fn = IspLoss() if cfg.mode == Mode.FULL else jdd_loss
    x = torch.rand(batch, 3, crop, crop).contiguous(memory_format=memory_format)
    y = torch.rand(batch, 3, crop, crop)

    def train_step() -> None:
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            pred = model(x)
        loss = loss_fn(pred.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return statistics.median(timings(train_step, repeats))


def measure(cfg: ModelConfig, crop: int, batch: int, repeats: int) -> dict:
    bf16 = autocast_dtype("auto", torch.device("cpu")) is not None
    train_s = {name: train_seconds(cfg, crop, batch, repeats, fmt, amp) for name, fmt, amp in PATHS if bf16 or amp is None}
    model = DeepISP(cfg)
    image = torch.rand(1, 3, 512, 512)

    def infer() -> None:
        with torch.no_grad():
            model(image)

    t_infer = statistics.median(timings(infer, repeats))
    fpp = flops_per_pixel(cfg)
    base = train_s["eager fp32"]
    return {
        "config": cfg.__dict__,
        "params": count_parameters(model),
        "kflop_per_pixel": fpp / 1e3,
        "train_pixels_per_s": {name: batch * crop * crop / t for name, t in train_s.items()},
        "train_speedup_vs_eager": {name: base / t for name, t in train_s.items()},
        "infer_pixels_per_s": 512 * 512 / t_infer,
        "infer_gflop_per_s": fpp * 512 * 512 / t_infer / 1e9,
        "train_step_s": train_s,
    }


LOADING_PHOTOS = Path("../shared/data/photos/urban100")
LOADING_SET = Path("out/train-loading-s7")
FULL_SIZE = (4032, 3024)  # a 12 MP phone frame, landscape
WORKERS = (0, 2)


def full_size_set(scenes: int) -> Path:
    """An S7-layout set of `scenes` 12 MP scenes (made once, reused while it has that many)."""
    from deepisp.data.synthetic import make_synthetic

    if len([p for p in LOADING_SET.glob("*") if p.is_dir()]) == scenes:
        return LOADING_SET
    if not LOADING_PHOTOS.is_dir():
        raise SystemExit(missing_shared(LOADING_PHOTOS))
    with tempfile.TemporaryDirectory() as tmp:
        photos = []
        for src in sorted(LOADING_PHOTOS.glob("*.png"))[:scenes]:
            with Image.open(src) as im:
                photos.append(Path(tmp) / src.name)
                im.convert("RGB").resize(FULL_SIZE, Image.BICUBIC).save(photos[-1])
        make_synthetic(photos, LOADING_SET, seed=0)
    return LOADING_SET


def drop_from_page_cache(folder: Path) -> None:
    """Evict a folder's files from the OS page cache (what a cold start reads from disk)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def crops_per_second(dataset, tc: TrainConfig, workers: int) -> float:
    """Training crops per second over tc.steps batches, timed from the first batch on: the loader's start-up
    (a second or so for worker processes) is paid once per run, not per batch."""
    loader = batches(dataset, tc, SINGLE_PROCESS, 0, workers)
    next(loader)
    start = time.perf_counter()
    crops = sum(len(batch[0]) for batch in loader)
    return crops / (time.perf_counter() - start)


def measure_loading(scenes: int, steps: int, crop: int, batch: int) -> dict:
    from deepisp.data.make_cache import cache_dataset
    from deepisp.data.photos import PhotoDataset
    from deepisp.data.s7 import S7Dataset

    cfg = PRESETS["micro-full"]
    root = full_size_set(scenes)
    cache = Path(tempfile.mkdtemp(prefix="train-loading-cache-"))  # outside the set, so the decoding rows find none
    start = time.perf_counter()
    cache_dataset(root, cache, progress=False)
    cache_s = time.perf_counter() - start
    tc = TrainConfig(batch=batch, crop=crop, steps=steps)
    decoded = S7Dataset(root, split="all", crop=crop, model_config=cfg, cache_size=0)
    photos = PhotoDataset([LOADING_PHOTOS], cfg.mode, crop=crop, balanced=cfg.balanced_input, exposure=cfg.exposure)
    rows = {}
    for workers in WORKERS:
        # A fresh dataset each time: pages an earlier one still maps cannot be dropped from the page cache.
        gc.collect()
        drop_from_page_cache(cache)
        cached = S7Dataset(root, split="all", crop=crop, model_config=cfg, cache=cache)
        rows[f"cache, cold, {workers} workers"] = crops_per_second(cached, tc, workers)
        rows[f"cache, warm, {workers} workers"] = crops_per_second(cached, tc, workers)
        del cached
        rows[f"decoded per crop, {workers} workers"] = crops_per_second(decoded, replace(tc, steps=max(2, steps // 10)), workers)
        rows[f"photo pairs in memory, {workers} workers"] = crops_per_second(photos, tc, workers)
        print(*(f"{name}: {rows[name]:,.1f} crops/s" for name in list(rows)[-4:]), sep="\n", flush=True)
    cache_mb = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20
    meta = {"scenes": scenes, "frame": f"{FULL_SIZE[0]}x{FULL_SIZE[1]}", "cache_seconds": cache_s, "cache_mb": cache_mb}
    return {"meta": meta, "crops_per_s": rows}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--candidates", action="store_true", help="also measure the equal-cost phone shapes (width x n_ll)")
    ap.add_argument("--presets", nargs="+", choices=sorted(PRESETS), help="measure only these presets (default: all)")
    ap.add_argument("--loading", action="store_true", help="measure training crops per second by data source instead (see above)")
    ap.add_argument("--scenes", type=int, default=4, help="--loading: 12 MP scenes in the set (default 4)")
    ap.add_argument("--steps", type=int, default=100, help="--loading: batches per measurement (default 100)")
    add_out(ap, "train_throughput.json")
    args = ap.parse_args()
    if args.loading:
        report = measure_loading(args.scenes, args.steps, args.crop, args.batch)
        report["meta"].update(torch=torch.__version__, threads=torch.get_num_threads(), crop=args.crop, batch=args.batch, steps=args.steps)
        out = args.out.with_name("train_loading.json")
        print(f"wrote {out} and {write_result(out, report, loading_markdown(report))}")
        return

    configs = {name: PRESETS[name] for name in (args.presets or PRESETS)}
    if args.candidates:
        configs.update({f"{mode}-{name}": cfg for mode, group in CANDIDATES.items() for name, cfg in group.items()})
    rows = {}
    bf16 = autocast_dtype("auto", torch.device("cpu")) is not None
    print(f"bf16 autocast path: {'measured' if bf16 else 'skipped (this CPU has no native bf16; deepisp train uses fp32 here)'}")
    print(f"{'config':<16} {'params':>7} {'kFLOP/px':>8} {'train px/s: eager':>18} {'cl fp32':>14} {'cl bf16':>14} {'infer px/s':>11}")
    for name, cfg in configs.items():
        r = measure(cfg, args.crop, args.batch, args.repeats)
        rows[name] = r
        px, up = r["train_pixels_per_s"], r["train_speedup_vs_eager"]
        cells = [f"{px[p]:>9,.0f} ({up[p]:.2f}x)" if p in px else f"{'n/a':>14}" for p, _, _ in PATHS[1:]]
        print(
            f"{name:<16} {r['params']:>7,} {r['kflop_per_pixel']:>8.1f} {px['eager fp32']:>18,.0f} {cells[0]:>14} {cells[1]:>14} "
            f"{r['infer_pixels_per_s']:>11,.0f}"
        )
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": bf16,
        "crop": args.crop,
        "batch": args.batch,
        "repeats": args.repeats,
    }
    report = {"meta": meta, "results": rows}
    table = write_result(args.out, report, to_markdown(report))
    print(f"wrote {args.out} and {table}")


def to_markdown(report: dict) -> str:
    """The README's preset table: cost, and training pixels/s per path with its ratio to eager NCHW fp32."""
    meta = report["meta"]
    lines = [
        f"Generated by `benchmarks/train_throughput.py` (torch {meta['torch']}, {meta['threads']} threads, {meta['cpu_capability']}, "
        f"native bf16: {'yes' if meta['native_bf16'] else 'no'}; training = one Adam step on {meta['batch']} crops of "
        f"{meta['crop']}x{meta['crop']}, inference = one 512x512 image; medians of {meta['repeats']}, one run).",
        "",
        "| preset | mode | n_ll | width | params | kFLOP/pixel | train px/s eager fp32 | channels_last fp32 | channels_last bf16 | inference px/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["results"].items():
        c, px, up = r["config"], r["train_pixels_per_s"], r["train_speedup_vs_eager"]
        paths = [f"{px[p]:,.0f} ({up[p]:.2f}x)" if p in px else "n/a" for p, _, _ in PATHS[1:]]
        lines.append(
            f"| `{name}` | {c['mode']} | {c['n_ll']} | {c['width']} | {r['params']:,} | {r['kflop_per_pixel']:.1f} | "
            f"{px['eager fp32']:,.0f} | {paths[0]} | {paths[1]} | {r['infer_pixels_per_s']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def loading_markdown(report: dict) -> str:
    """The README's data-source table: training crops per second from each source."""
    meta, rows = report["meta"], report["crops_per_s"]
    lines = [
        f"Generated by `benchmarks/train_throughput.py --loading` (torch {meta['torch']}, {meta['threads']} threads; batches of "
        f"{meta['batch']} crops of {meta['crop']}x{meta['crop']}, the default model's input contract; {meta['scenes']} scenes of "
        f"{meta['frame']}, cached once in {meta['cache_seconds']:.0f} s, {meta['cache_mb']:.0f} MB; one run).",
        "",
        "| source | " + " | ".join(f"{w} workers (crops/s)" for w in WORKERS) + " |",
        "|---|" + "---|" * len(WORKERS),
    ]
    for source in dict.fromkeys(name.rsplit(", ", 1)[0] for name in rows):
        lines.append(f"| {source} | " + " | ".join(f"{rows[f'{source}, {w} workers']:,.1f}" for w in WORKERS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
