"""Benchmark exported DeepISP .tflite graphs on an Android phone with TensorFlow Lite's benchmark_model.

    python android_harness/bench.py --model out/deepisp_tile_fp16.tflite --delegate gpu
    python android_harness/bench.py --sweep out/ --threads 1 4
    python android_harness/bench.py --sweep out/ --delegate gpu nnapi --tiles ../shared/data/raw/colorchart.dng

Pushes benchmark_model and each model to the phone, runs every model x delegate x thread count, parses
init time, warm-up, inference mean/std, memory and the per-op profile (which ops did not run on the
delegate), and writes results.json / results.csv / results.md with the 12 MP frame time implied by the tile
count. With --tiles it also feeds raw tiles through each model on the phone and pulls the outputs back
(accuracy/*.npz) for the accuracy harness. Pushed files are removed at the end. Every adb call has a
timeout; if the phone goes away mid-sweep the results gathered so far are written and the run stops with
one error line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from android_harness import device_accuracy
from android_harness.adb import Adb, AdbTimeout, DeviceInfo, DeviceLost, find_adb
from android_harness.benchmark_output import BenchmarkOutput, parse
from android_harness.elf import binary_abi, check_runs_on, where_to_get
from android_harness.report import make_row, markdown_table, windows_per_frame, write_results
from android_harness.tflite_info import GraphInfo, read_graph_info
from deepisp.arguments import Parser, number
from deepisp.atomic import atomic_path, make_folder
from deepisp.errors import DeepISPError, printable

ENV_BINARY = "TFLITE_BENCHMARK_MODEL"


@dataclass(frozen=True)
class Delegate:
    """A --delegate choice: benchmark_model flags, and the name the tool's log gives the delegate."""

    flags: tuple[str, ...]
    engine: str | None  # None: no delegate, plain CPU
    help: str


DELEGATES = {
    "cpu": Delegate(("--use_xnnpack=false",), None, "TFLite's builtin CPU kernels, XNNPACK switched off"),
    "xnnpack": Delegate(("--use_xnnpack=true",), "XNNPACK", "XNNPACK CPU delegate (what an app gets by default)"),
    "gpu": Delegate(("--use_gpu=true", "--gpu_precision_loss_allowed=true"), "GPU", "GPU delegate with fp16 arithmetic allowed (the delegate's default)"),
    "gpu-fp32": Delegate(("--use_gpu=true", "--gpu_precision_loss_allowed=false"), "GPU", "GPU delegate kept in fp32"),
    "nnapi": Delegate(("--use_nnapi=true",), "NNAPI", "NNAPI: the vendor driver's NPU/DSP/GPU (deprecated from Android 15)"),
}


def build_parser() -> argparse.ArgumentParser:
    delegates = "\n".join(f"  {name:<9} {d.help}: {' '.join(d.flags)}" for name, d in DELEGATES.items())
    p = Parser(
        prog="python android_harness/bench.py",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""examples:
  python android_harness/bench.py --model out/deepisp_tile_fp16.tflite --delegate gpu
  python android_harness/bench.py --sweep out/ --threads 1 4 --min-secs 0
  python android_harness/bench.py --sweep out/ --tiles ../shared/data/raw/colorchart.dng --num-tiles 4

delegates:
{delegates}

needs: adb (platform-tools) and TensorFlow Lite's benchmark_model built for the phone's CPU
(--benchmark-model or ${ENV_BINARY}); {where_to_get("arm64-v8a")}.
outputs in --out: results.json (everything, with the op profiles), results.csv, results.md,
logs/*.log (benchmark_model's own output per run), accuracy/*.npz (with --tiles).
exit status: 0 all runs fine, 1 some runs failed on the device (their rows say why), 2 bad input or the
device went away (results so far are kept), 130 interrupted.""",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, nargs="+", help="exported .tflite file(s) to benchmark")
    src.add_argument("--sweep", type=Path, metavar="DIR", help="benchmark every .tflite in DIR (e.g. the export's out/)")
    p.add_argument(
        "--delegate",
        nargs="+",
        choices=list(DELEGATES),
        default=["xnnpack", "gpu", "nnapi"],
        help="delegates to run each model with (default: xnnpack gpu nnapi)",
    )
    p.add_argument(
        "--threads", nargs="+", type=number(int, 1, 64), default=[4], help="CPU thread counts (--num_threads) to run each delegate with (default: 4)"
    )
    p.add_argument("--runs", type=number(int, 1, 100000), default=50, help="timed runs, --num_runs (default 50)")
    p.add_argument("--warmup", type=number(int, 0, 100000), default=5, help="warm-up runs before timing, --warmup_runs (default 5)")
    p.add_argument(
        "--min-secs",
        type=number(float, 0, 3600),
        default=None,
        help="minimum seconds of timed runs and of warm-up (--min_secs, --warmup_min_secs; the tool's "
        "defaults are 1 and 0.5); 0 makes --runs and --warmup exact",
    )
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip --enable_op_profiling (no per-op table; slightly less timing overhead)")
    p.add_argument(
        "--benchmark-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra benchmark_model flag passed verbatim, repeatable (e.g. --benchmark-arg=--gpu_backend=cl)",
    )
    p.add_argument("--benchmark-model", default=None, metavar="PATH", help=f"benchmark_model binary for the phone (default: ${ENV_BINARY})")
    p.add_argument("--adb", default=None, metavar="PATH", help="adb to use (default: PATH, then $ANDROID_HOME/platform-tools)")
    p.add_argument("-s", "--serial", default=None, help="device serial when several are attached (default: $ANDROID_SERIAL)")
    p.add_argument("--adb-timeout", type=number(float, 0, 86400, above=True), default=60.0, help="seconds allowed per adb call (default 60)")
    p.add_argument("--run-timeout", type=number(float, 0, 86400, above=True), default=600.0, help="seconds allowed per benchmark_model run (default 600)")
    p.add_argument(
        "--device-dir",
        default="/data/local/tmp/deepisp_bench",
        help="folder on the phone for the pushed files, removed afterwards (default /data/local/tmp/deepisp_bench)",
    )
    p.add_argument(
        "--frame",
        type=number(int, 8, 65536),
        nargs=2,
        default=[3024, 4032],
        metavar=("H", "W"),
        help="frame size for the frame-time estimate when a model has no export sidecar (default 3024 4032, 12 MP)",
    )
    p.add_argument(
        "--tiles",
        type=Path,
        default=None,
        metavar="PATH",
        help="capture device outputs for these raw tiles: a raw file (.dng, ...) or a .npy [H,W] mosaic / [N,h,w] tiles of normalised canonical-RGGB raw",
    )
    p.add_argument("--num-tiles", type=number(int, 1, 100000), default=4, help="tiles per model for --tiles (default 4)")
    p.add_argument("--out", type=Path, default=Path("out/android_bench"), help="output folder (default out/android_bench)")
    return p


def find_models(args: argparse.Namespace) -> list[Path]:
    """The .tflite files to benchmark (--model, or every one in --sweep DIR)."""
    if args.sweep is not None:
        if not args.sweep.is_dir():
            raise DeepISPError(f"--sweep {args.sweep} is not a folder; pass the export's output folder")
        models = sorted(args.sweep.glob("*.tflite"))
        if not models:
            raise DeepISPError(f"no .tflite files in {args.sweep}; export the model first")
        return models
    return list(dict.fromkeys(args.model))


def find_binary(arg: str | None) -> Path:
    """The benchmark_model binary (--benchmark-model or $TFLITE_BENCHMARK_MODEL), checked to be an Android build."""
    value = arg or os.environ.get(ENV_BINARY)
    if not value:
        raise DeepISPError(f"no benchmark_model binary: pass --benchmark-model PATH or set ${ENV_BINARY}; {where_to_get('arm64-v8a')}")
    path = Path(value)
    if not path.is_file():
        raise DeepISPError(f"benchmark_model not found at {path}; {where_to_get('arm64-v8a')}")
    binary_abi(path)
    return path


def run_benchmark(adb: Adb, argv: list[str], what: str, timeout: float) -> tuple[BenchmarkOutput, str, str]:
    """Run benchmark_model on the device: (parsed output, raw log, error; "" when it ran through)."""
    try:
        proc = adb.shell(argv, what, timeout=timeout, check=False)
    except AdbTimeout as e:
        return parse(""), "", f"{e} (raise --run-timeout)"
    text = proc.stdout + proc.stderr
    out = parse(text)
    error = ""
    if proc.returncode != 0 and not out.errors:
        last = (text.strip().splitlines() or ["no output"])[-1]
        error = f"exit status {proc.returncode}: {last}"
    return out, text, error


class Sweep:
    """One device session: pushes, runs, captures, cleans up, and holds every result gathered."""

    def __init__(self, args: argparse.Namespace, adb: Adb, info: DeviceInfo, binary: Path, graphs: dict[Path, GraphInfo], tiles: dict[Path, np.ndarray]):
        self.args, self.adb, self.info, self.binary, self.graphs, self.tiles = args, adb, info, binary, graphs, tiles
        self.dir = args.device_dir.rstrip("/")
        self.remote_bin = f"{self.dir}/benchmark_model"
        self.pushed: list[str] = []
        self.details: list[dict] = []
        self.captures: list[dict] = []
        self.total = len(graphs) * len(args.delegate) * len(args.threads)
        self.finished = False

    def _track(self, remote: str) -> str:
        """Remember a device file to remove at the end."""
        if remote not in self.pushed:
            self.pushed.append(remote)
        return remote

    def _push(self, local: Path, remote: str) -> str:
        self.adb.push(local, remote)
        return self._track(remote)

    def run(self) -> None:
        self.adb.shell(["mkdir", "-p", self.dir], f"creating {self.dir}")
        self._push(self.binary, self.remote_bin)
        self.adb.shell(["chmod", "755", self.remote_bin], "making benchmark_model executable")
        for model, graph in self.graphs.items():
            remote_model = self._push(model, f"{self.dir}/{model.name}")
            windows = windows_per_frame(model, graph, tuple(self.args.frame))
            for name in self.args.delegate:
                for threads in self.args.threads:
                    self._bench(model, remote_model, name, threads, windows)
                if self.args.tiles is not None:
                    self.captures.append(self._capture(model, remote_model, graph, name, self.args.threads[0]))
            self.adb.shell(["rm", "-f", remote_model], f"removing {model.name}")
            self.pushed.remove(remote_model)
        self.finished = True

    def _argv(self, remote_model: str, name: str, threads: int, *extra: str) -> list[str]:
        """A benchmark_model command line for one model x delegate x thread count."""
        return [self.remote_bin, f"--graph={remote_model}", f"--num_threads={threads}", *DELEGATES[name].flags, *extra]

    def _bench(self, model: Path, remote_model: str, name: str, threads: int, windows: tuple) -> None:
        a = self.args
        extra = [f"--num_runs={a.runs}", f"--warmup_runs={a.warmup}"]
        if a.min_secs is not None:
            extra += [f"--min_secs={a.min_secs:g}", f"--warmup_min_secs={a.min_secs:g}"]
        if a.profile:
            extra.append("--enable_op_profiling=true")
        argv = self._argv(remote_model, name, threads, *extra, *a.benchmark_arg)
        out, text, error = run_benchmark(self.adb, argv, f"running {model.name} with {name}, {threads} threads", a.run_timeout)
        log = a.out / "logs" / f"{model.stem}__{name}__t{threads}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(log) as tmp:
            tmp.write_text("$ adb shell " + " ".join(argv) + "\n" + text)
        row = make_row(model.stem, name, DELEGATES[name].engine, threads, out, windows, str(log.relative_to(a.out)), error)
        self.details.append({"row": row, "parsed": out.as_dict()})
        result = f"FAILED: {row['error']}" if row["status"] == "failed" else f"{row['mean_ms']} ms ({row['delegated']})"
        print(f"[{len(self.details)}/{self.total}] {model.stem} {name} threads={threads}: {result}", file=sys.stderr)

    def _capture(self, model: Path, remote_model: str, graph: GraphInfo, name: str, threads: int) -> dict:
        """Feed the tiles through `model` on the device and save what comes out; the entry says where or why not."""
        entry = {"variant": model.stem, "delegate": name, "file": "", "error": device_accuracy.unsupported_reason(graph) or ""}
        if entry["error"]:
            return entry
        tiles = self.tiles[model]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                outputs = [self._run_tile(Path(tmp), remote_model, graph, name, threads, i, t) for i, t in enumerate(tiles)]
        except DeviceLost:
            raise
        except DeepISPError as e:  # a failed capture is reported in the results, the sweep goes on
            entry["error"] = str(e)
            return entry
        path = self.args.out / "accuracy" / f"{model.stem}__{name}.npz"
        device_accuracy.save_capture(path, tiles, outputs, graph, {"model": model.name, "delegate": name, "device": self.info.describe()})
        entry["file"] = str(path.relative_to(self.args.out))
        print(f"captured {len(tiles)} tiles of {model.stem} with {name}: {path}", file=sys.stderr)
        return entry

    def _run_tile(self, tmp: Path, remote_model: str, graph: GraphInfo, name: str, threads: int, i: int, tile: np.ndarray) -> list[np.ndarray]:
        """One tile through the model on the device; its decoded outputs.

        Raises:
            DeepISPError: the run failed, or the binary cannot dump outputs.
        """
        tensor = graph.inputs[0]
        local = tmp / "tile.bin"
        remote_in, remote_out = f"{self.dir}/tile_in.bin", f"{self.dir}/tile_out.bin"
        local.write_bytes(device_accuracy.encode_input(tile, tensor))
        self._push(local, remote_in)
        self.adb.shell(["rm", "-f", self._track(remote_out)], "removing the previous output dump")
        # benchmark_model matches --input_layer entries to inputs by position and only warns about a different
        # name; a made-up one avoids escaping the ':' of names like "serving_default_x:0" (as "::").
        argv = self._argv(
            remote_model,
            name,
            threads,
            "--num_runs=1",
            "--warmup_runs=0",
            "--min_secs=0",
            "--warmup_min_secs=0",
            "--input_layer=tile",
            "--input_layer_shape=" + ",".join(map(str, tensor.shape)),
            f"--input_layer_value_files=tile:{remote_in}",
            f"--output_filepath={remote_out}",
        )
        out, text, error = run_benchmark(self.adb, argv, f"capturing tile {i} of {remote_model} with {name}", self.args.run_timeout)
        if error or out.failed:
            raise DeepISPError(error or out.failure)
        if "Unconsumed cmdline flags" in text and "--output_filepath" in text:
            raise DeepISPError("this benchmark_model build has no --output_filepath; use a recent nightly")
        self.adb.pull(remote_out, local)
        return device_accuracy.decode_outputs(local.read_bytes(), graph.outputs)

    def cleanup(self) -> str:
        """Remove what was pushed; returns "" or why something stayed on the device."""
        try:
            if self.pushed:
                self.adb.shell(["rm", "-f", *self.pushed], f"removing pushed files from {self.dir}")
            # rmdir, not rm -r: a folder the user already had keeps whatever else is in it.
            self.adb.shell(["rmdir", self.dir], f"removing {self.dir}", check=False)
            self.pushed.clear()
            return ""
        except DeepISPError as e:
            return f"pushed files may remain in {self.dir} on the device ({e})"

    def write(self, note: str) -> list[Path]:
        a = self.args
        settings = {
            "delegates": a.delegate,
            "threads": a.threads,
            "runs": a.runs,
            "warmup": a.warmup,
            "min_secs": a.min_secs,
            "op_profiling": a.profile,
            "benchmark_args": a.benchmark_arg,
            "frame": a.frame,
            "benchmark_model": str(self.binary),
            "describe": f"--runs {a.runs} --warmup {a.warmup}"
            + (f" --min-secs {a.min_secs:g}" if a.min_secs is not None else "")
            + (", op profiling on" if a.profile else ", op profiling off"),
        }
        device = self.info.as_dict() | {"describe": self.info.describe()}
        return write_results(a.out, device, settings, self.details, self.captures, self.finished, note)


def run(args: argparse.Namespace) -> int:
    """Everything after argument parsing; returns the exit status."""
    models = find_models(args)
    graphs = {m: read_graph_info(m) for m in models}
    binary = find_binary(args.benchmark_model)
    if not args.device_dir.startswith("/"):
        raise DeepISPError(f"--device-dir {args.device_dir} must be an absolute path on the device")
    tiles = {}
    if args.tiles is not None:
        source = device_accuracy.load_source(args.tiles)
        for m, g in graphs.items():
            if device_accuracy.unsupported_reason(g) is None:
                cut = device_accuracy.cut_tiles(source, args.num_tiles, g.inputs[0].shape[1], g.inputs[0].shape[2])
                tiles[m] = device_accuracy.to_graph_domain(cut, m)
    try:
        make_folder(args.out)
    except OSError as e:
        raise DeepISPError(f"cannot create --out {args.out}: {e.strerror or e}; pick another folder") from None

    adb = Adb(find_adb(args.adb), args.adb_timeout)
    adb.select(args.serial)
    info = adb.info()
    check_runs_on(binary, info.abis, f"{info.model} ({info.serial})")
    print(f"device: {info.describe()}", file=sys.stderr)

    sweep = Sweep(args, adb, info, binary, graphs, tiles)
    lost: DeviceLost | None = None
    try:
        sweep.run()
    except DeviceLost as e:
        lost = e
    finally:
        left = sweep.cleanup() if lost is None else f"pushed files remain in {sweep.dir} on the device"
        note = str(lost) if lost else ("" if sweep.finished else "stopped before the end")
        paths = sweep.write("; ".join(p for p in (note, left) if p))
    rows = [d["row"] for d in sweep.details]
    if lost is not None:
        raise DeepISPError(f"{lost}; the {len(rows)} of {sweep.total} runs finished before are kept in {paths[2]}")
    print(markdown_table(rows))
    print("results: " + ", ".join(map(str, paths)), file=sys.stderr)
    if left:
        print(f"warning: {left}", file=sys.stderr)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        print(f"{len(failed)} of {len(rows)} runs failed on the device; results.md and logs/ say why", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except DeepISPError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; the runs finished so far are in {args.out}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
