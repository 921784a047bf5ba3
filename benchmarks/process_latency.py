"""`deepisp process` wall time and peak memory on real and full-size frames, on the host CPU.

    python benchmarks/process_latency.py [--model CKPT] [--tile 448] [--skip-12mp] [--exported out/export]

Cases (each in a fresh subprocess, so peak RSS is that run's alone):
    colorchart  ../shared/data/raw/colorchart.dng (real sensor data, 1734x1156)
    12mp        a 3024x4032 DNG (the S7's frame size) written from a Kodak photo by the synthetic pipeline
Each case also runs the untiled full-frame model on the same mosaic (where it fits) to show what tiling
saves. With --exported, every exported variant there (deepisp_*.json sidecars) also processes each case
through the same tile runner a phone follows (`deepisp process --backend onnx|tflite`); int16x8 is left
out unless --with-int16 (TFLite's int16 reference kernels take minutes per 12 MP frame).
Writes benchmarks/results/process_latency.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from deepisp.atomic import atomic_path
from deepisp.data import SHARED_DATA as SHARED
from deepisp.tiling import DEFAULT_TILE

RESULTS = Path(__file__).parent / "results"

# Runs in the child: time process_file (tiled) or the full-frame path, report seconds and peak RSS.
# Peak RSS is VmHWM, which exec resets; getrusage's ru_maxrss would carry over the parent's peak.
_CHILD = r"""
import json, sys, time, torch
from pathlib import Path
from deepisp.checkpoint import load_model
from deepisp.process import process_file
from deepisp.raw import read_raw
from deepisp.runtime import ExportedModel
from deepisp.tiling import run_full_frame
raw_path, out, model_path, tile, mode = sys.argv[1:6]
model = ExportedModel(model_path) if mode == "exported" else load_model(None if model_path == "default" else model_path)[0]
t0 = time.perf_counter()
if mode in ("tiled", "exported"):
    info = process_file(model, Path(raw_path), Path(out), tile=int(tile), progress=False)
else:
    mosaic = torch.from_numpy(read_raw(raw_path).mosaic)
    run_full_frame(model, mosaic)
seconds = time.perf_counter() - t0
hwm_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_rss_mb": hwm_kb / 1024}))
"""


def run_case(raw: Path, model: str, tile: int, mode: str, out_dir: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD, str(raw), str(out_dir / "out.jpg"), model, str(tile), mode],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def write_12mp_dng(path: Path) -> None:
    """A 3024x4032 S7-size DNG rendered from a Kodak photo through the synthetic raw pipeline."""
    from PIL import Image

    from deepisp.data.synthetic import make_synthetic

    photo = SHARED / "photos" / "kodak24" / "kodim05.png"
    big = path.parent / "kodim05_12mp.png"
    Image.open(photo).convert("RGB").resize((4032, 3024), Image.BICUBIC).save(big)
    scene = make_synthetic([big], path.parent / "s7", progress=False)[0]
    (scene / "short_exposure.dng").rename(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="checkpoint (default: the shipped model)")
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE, help=f"PyTorch tile (default {DEFAULT_TILE}); exported variants use their own plan")
    ap.add_argument("--skip-12mp", action="store_true", help="only the colorchart case")
    ap.add_argument("--exported", type=Path, default=None, help="also run every exported variant in this folder")
    ap.add_argument("--with-int16", action="store_true", help="include int16x8 variants (slow reference kernels)")
    ap.add_argument("--out", type=Path, default=RESULTS / "process_latency.json")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"error: {SHARED} not found: this benchmark needs ../shared/data beside the repo")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = {"colorchart": SHARED / "raw" / "colorchart.dng"}
        if not args.skip_12mp:
            cases["12mp"] = tmp / "frame_12mp.dng"
            write_12mp_dng(cases["12mp"])
        sidecars = sorted(args.exported.glob("deepisp_*.json")) if args.exported else []
        sidecars = [p for p in sidecars if args.with_int16 or "int16" not in p.name]
        for name, raw in cases.items():
            runs = {"tiled": run_case(raw, args.model, args.tile, "tiled", tmp), "full_frame": run_case(raw, args.model, args.tile, "full", tmp)}
            runs.update({p.stem: run_case(raw, str(p), args.tile, "exported", tmp) for p in sidecars})
            results[name] = runs
            for run, r in runs.items():
                print(f"{name:<11} {run:<20} {r.get('seconds', float('nan')):7.2f} s  peak RSS {r.get('peak_rss_mb', float('nan')):7.0f} MB  {r.get('error', '')}")
    payload = {"meta": {"tile": args.tile, "model": args.model, "threads": torch.get_num_threads(), "torch": torch.__version__},
               "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as t:
        t.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
