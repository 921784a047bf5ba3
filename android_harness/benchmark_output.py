"""Parse the log of TensorFlow Lite's `benchmark_model` into numbers.

The format is taken from the tool's source (google-ai-edge/LiteRT `tflite/tools/...`, the same files as
tensorflow/tensorflow `tensorflow/lite/tools/...`) and checked against logs people posted from phones:

    benchmark/benchmark_model.cc         "Initialized session in 87.639ms."; one stats line per phase
                                         ("Running benchmark for at least N iterations ..." then "count=...");
                                         "Inference timings in us: Init: .., First inference: .., Warmup (avg):
                                         .., Inference (avg): .."; "Memory footprint delta from the start of
                                         the tool (MB): init=.. overall=.."
    xla/tsl/util/stats_calculator.h      the stats line: "count=50 first=.. curr=.. min=.. max=.. avg=.. std=..
                                         p5=.. median=.. p95=.."; when every run took the same time it is only
                                         "count=1 curr=670083" (+ "(all same)" if count > 1) and percentiles
    benchmark/benchmark_tflite_model.cc  "Explicitly applied GPU delegate, and the model graph will be
                                         completely|partially executed by the delegate [w/ N delegate kernels]."
                                         and "Though NNAPI delegate is explicitly applied, the model graph will
                                         not be executed by the delegate."
    delegates/*_delegate_provider.cc     "GPU acceleration is unsupported on this platform." (delegate not
                                         created: the run silently goes on without it)
    delegates/gpu/common/model_builder  "Following operations are not supported by GPU delegate:" then
                                         "OP: reason" lines and "N operations will run on the GPU, and the
                                         remaining M operations will run on the CPU."
    profiling/profile_summary_formatter  "Operator-wise Profiling Info for Regular Benchmark Runs:" then
                                         tab-separated tables (stats_calculator.cc): Run Order, Top by
                                         Computation Time, "Number of nodes executed: N", Summary by node type
    tools/logging.h                      every line "INFO: " / "WARN: " (stdout) or "ERROR: " (stderr);
                                         older builds print "WARNING: " and some lines without a prefix

Numbers are C++ iostream defaults: doubles with 6 significant digits, so a slow phone prints
"avg=1.23457e+06". Older builds print "Average inference timings in us: Warmup: .., Init: .., Inference: .."
and a [start] column in the op tables (the sample in the tool's own README.md); both are read too.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf"
_PREFIX = re.compile(r"^(INFO|WARN|WARNING|ERROR|FATAL|VERBOSE): ")
_DELEGATE_KERNELS = {
    "TfLiteGpuDelegateV2": "GPU",
    "TfLiteGpuDelegate": "GPU",
    "TfLiteNnapiDelegate": "NNAPI",
    "TfLiteXNNPackDelegate": "XNNPACK",
    "TfLiteHexagonDelegate": "Hexagon",
}

_INIT = re.compile(rf"Initialized session in ({_NUM}) ?ms")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), Warmup \(avg\): ({_NUM}), "
    rf"Inference \(avg\): ({_NUM})"
)
_TIMINGS_LEGACY = re.compile(rf"Average inference timings in us: Warmup: ({_NUM}), Init: ({_NUM}), Inference: ({_NUM})")
_MEMORY = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init=({_NUM}) overall=({_NUM})")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_FULL = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be completely executed")
_PARTIAL = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be partially executed .* w/ (\d+) delegate kernels")
_NONE = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed")
_UNAVAILABLE = re.compile(r"(\S+) acceleration is unsupported on this platform")
_GPU_SPLIT = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+)(?: operations will run)? on the CPU")
_REPLACED = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node, yielding (\d+) partitions")
_KV = re.compile(rf"(\w+)=({_NUM})")


@dataclass
class RunStats:
    """One phase's per-run latencies in microseconds (a StatWithPercentiles line)."""

    count: int
    avg: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    first: float | None = None
    median: float | None = None


@dataclass
class OpRow:
    """One row of the profile's Run Order table (a node of the executed graph, averaged over runs)."""

    node_type: str
    first_ms: float
    avg_ms: float
    percent: float
    times_called: int
    name: str

    @property
    def executor(self) -> str:
        """ "GPU"/"NNAPI"/"XNNPACK"/"Hexagon" for a delegate kernel, "delegate" for an op profiled inside one
        ("Delegate/<op>:<i>" rows, which do not say which delegate), "CPU" for a TFLite builtin kernel."""
        if self.name.startswith("Delegate/"):
            return "delegate"
        return _DELEGATE_KERNELS.get(self.node_type, "CPU")


@dataclass
class BenchmarkOutput:
    """Everything the harness reads from one benchmark_model run. Times in the units the tool prints."""

    init_ms: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    warmup: RunStats | None = None
    inference: RunStats | None = None
    mem_init_mb: float | None = None
    mem_overall_mb: float | None = None
    peak_mem_mb: float | None = None
    delegation: dict[str, str] = field(default_factory=dict)  # "GPU" -> "full" | "partial" | "none"
    delegate_kernels: dict[str, int] = field(default_factory=dict)
    unavailable: list[str] = field(default_factory=list)  # delegates that could not even be created
    unsupported_ops: list[str] = field(default_factory=list)  # the GPU delegate's "OP: reason" lines
    gpu_split: tuple[int, int] | None = None  # (ops on the GPU, ops left to the CPU)
    replaced: dict[str, tuple[int, int]] = field(default_factory=dict)  # kernel name -> (nodes taken, of total)
    ops: list[OpRow] = field(default_factory=list)
    nodes_executed: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """No inference timings: the tool stopped before (or during) the timed runs."""
        return self.inference_avg_us is None

    @property
    def failure(self) -> str:
        """Why the run failed, in the tool's words: its first ERROR line."""
        return next(iter(self.errors), "benchmark_model printed no inference timings")

    def delegate_status(self, delegate: str) -> str:
        """How `delegate` ("GPU", "NNAPI", "XNNPACK") was used: full | partial | none | unavailable | not applied."""
        if delegate in self.delegation:
            return self.delegation[delegate]
        return "unavailable" if delegate in self.unavailable else "not applied"

    def fallback_ops(self, delegate: str | None) -> list[str]:
        """Op types that ran outside `delegate`, in run order, each once ([] for a plain CPU run).

        From the op profile when there is one (rows of another executor; rows profiled inside a delegate
        are counted as `delegate`'s), else from the GPU delegate's list of unsupported ops.
        """
        if delegate is None:
            return []
        if self.ops:
            names = [r.node_type for r in self.ops if r.executor not in (delegate, "delegate")]
        elif delegate == "GPU":
            names = [line.split(":", 1)[0] for line in self.unsupported_ops]
        else:
            names = []
        return list(dict.fromkeys(names))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["failed"] = self.failed
        for op, row in zip(d["ops"], self.ops):
            op["executor"] = row.executor
        return d


def parse_stats(text: str) -> RunStats:
    """Parse a stats line such as "count=50 first=.. curr=.. min=.. max=.. avg=.. std=.. p5=.. median=.. p95=..".

    When all runs took the same time the tool prints only count and curr (and percentiles); avg/min/max are
    then curr and std is 0.
    """
    kv = {k: float(v) for k, v in _KV.findall(text)}
    stats = RunStats(count=int(kv.get("count", 0)))
    if stats.count == 0:
        return stats
    curr = kv.get("curr")
    stats.avg = kv.get("avg", curr)
    stats.std = kv.get("std", 0.0)
    stats.min = kv.get("min", curr)
    stats.max = kv.get("max", curr)
    stats.first = kv.get("first", curr)
    stats.median = kv.get("median")
    return stats


def _row_pattern(header: str) -> re.Pattern:
    """A Run Order row: type, [start], first, avg ms, %, cdf%, mem KB, times called, name."""
    start = r"\s+" + f"(?:{_NUM})" if "[start]" in header else ""
    return re.compile(
        rf"^\s*(?P<type>\S.*?){start}\s+(?P<first>{_NUM})\s+(?P<avg>{_NUM})\s+(?P<pct>{_NUM})%\s+(?:{_NUM})%"
        rf"\s+(?:{_NUM})\s+(?P<called>\d+)\s+(?P<name>\S.*?)\s*$"
    )


def _parse_profile(lines: list[str], out: BenchmarkOutput) -> None:
    """Read the Run Order table and node count that follow "Operator-wise Profiling Info for Regular ..."."""
    start = next((i for i, ln in enumerate(lines) if "Operator-wise Profiling Info for Regular Benchmark Runs" in ln), None)
    if start is None:
        return
    pattern = None
    in_run_order = False
    for line in lines[start + 1 :]:
        if "==== Run Order ====" in line:
            in_run_order = True
        elif in_run_order and pattern is None and "[node type]" in line:
            pattern = _row_pattern(line)
        elif in_run_order and pattern is not None:
            match = pattern.match(line)
            if match is None:  # the blank line that ends the table
                in_run_order = False
                continue
            out.ops.append(OpRow(match["type"], float(match["first"]), float(match["avg"]), float(match["pct"]), int(match["called"]), match["name"]))
        elif line.startswith("Number of nodes executed:"):
            out.nodes_executed = int(line.split(":")[1])
            return


def parse(text: str) -> BenchmarkOutput:
    """Parse benchmark_model's stdout+stderr (either order: the parse does not rely on interleaving)."""
    out = BenchmarkOutput()
    lines = text.splitlines()
    stats: list[RunStats] = []
    in_unsupported = False
    for raw in lines:
        prefix = _PREFIX.match(raw)
        msg = raw[prefix.end() :] if prefix else raw
        severity = prefix[1] if prefix else ""
        # The GPU delegate's list of unsupported ops is one multi-line message: only its first line has
        # a prefix, and it ends with the "N operations will run on the GPU" line.
        if in_unsupported and prefix is None:
            split = _GPU_SPLIT.search(msg)
            if split:
                out.gpu_split = (int(split[1]), int(split[2]))
                in_unsupported = False
            elif msg.strip():
                out.unsupported_ops.append(msg.strip())
            continue
        in_unsupported = False
        if "operations are not supported by GPU delegate" in msg:
            in_unsupported = True
            continue
        if msg.startswith(("count=", "curr=")):
            stats.append(parse_stats(msg))
        elif m := _INIT.search(msg):
            out.init_ms = float(m[1])
        elif m := _TIMINGS.search(msg):
            out.first_inference_us, out.warmup_avg_us, out.inference_avg_us = float(m[2]), float(m[3]), float(m[4])
        elif m := _TIMINGS_LEGACY.search(msg):
            out.warmup_avg_us, out.inference_avg_us = float(m[1]), float(m[3])
            out.init_ms = out.init_ms if out.init_ms is not None else float(m[2]) / 1e3
        elif m := _MEMORY.search(msg):
            out.mem_init_mb, out.mem_overall_mb = float(m[1]), float(m[2])
        elif m := _PEAK.search(msg):
            out.peak_mem_mb = float(m[1])
        elif m := _FULL.search(msg):
            out.delegation[m[1]] = "full"
            out.delegate_kernels[m[1]] = 1
        elif m := _PARTIAL.search(msg):
            out.delegation[m[1]] = "partial"
            out.delegate_kernels[m[1]] = int(m[2])
        elif m := _NONE.search(msg):
            out.delegation[m[1]] = "none"
            out.delegate_kernels[m[1]] = 0
        elif m := _UNAVAILABLE.search(msg):
            out.unavailable.append(m[1])
        elif m := _REPLACED.search(msg):
            out.replaced[m[3]] = (int(m[1]), int(m[2]))
        elif m := _GPU_SPLIT.search(msg):
            out.gpu_split = (int(m[1]), int(m[2]))
        elif severity in ("ERROR", "FATAL"):
            out.errors.append(msg.strip())
    if stats:
        out.warmup = stats[0]
        out.inference = stats[1] if len(stats) > 1 else None
    _parse_profile(lines, out)
    return out
