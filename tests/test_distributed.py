"""Training across processes: torchrun + DDP on gloo (CPU), 2 processes, tiny-full, a few steps.

The runs are real `torchrun ... -m deepisp train` processes with one thread each (OMP_NUM_THREADS=1, as torchrun
sets by default), so their kernels match the single-process reference's."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deepisp.data.s7 import S7Dataset
from deepisp.distributed import Group
from deepisp.train import LOG_COLUMNS, TrainConfig, batches, draw_batch, open_log

BASE = ["--preset", "tiny-full", "--batch", "4", "--crop", "72", "--lr", "2e-3", "--precision", "fp32", "--val-every", "2", "--ckpt-every", "100", "--quiet"]
# Weights of a 2-process run against one process with the same global batch, after up to 6 Adam steps: the
# all-reduce sums the two halves' gradients in another order than one backward pass over the whole batch
# (measured: 7.5e-9 after 3 steps, weights up to 6.5).
WEIGHT_TOLERANCE = 1e-6


def deepisp_train(tmp_path: Path, processes: int, *args: str, wait: bool = True, tag: str = "") -> subprocess.Popen | subprocess.CompletedProcess:
    """`deepisp train` in one plain process, or under torchrun with `processes` processes."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else []
    cmd = [sys.executable, *launcher, "-m", "deepisp", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEEPISP_TEST_RUN": tag}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def trained(tmp_path, processes: int, out: str, *args: str) -> dict:
    result = deepisp_train(tmp_path, processes, "--out", out, *BASE, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(tmp_path / out / "last.pt", weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    worst = max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"])
    assert worst <= WEIGHT_TOLERANCE


def log_rows(run: Path) -> list[dict]:
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


def test_rank_shares_make_the_single_process_batch(s7_root):
    tc = TrainConfig(batch=4, crop=72, seed=3)
    dataset = S7Dataset(s7_root, split="all", crop=72)
    whole = draw_batch(dataset, tc, step=5)
    shares = [draw_batch(dataset, tc, step=5, group=Group(rank=r, world_size=2)) for r in range(2)]
    for part, halves in zip(whole, zip(*shares)):
        assert torch.equal(part, torch.cat(halves))
    assert not torch.equal(whole[0], draw_batch(dataset, tc, step=6)[0])


def test_loader_workers_make_the_same_batches(s7_root):
    tc = TrainConfig(batch=2, crop=72, steps=4)
    dataset = S7Dataset(s7_root, split="all", crop=72)
    inline = list(batches(dataset, tc, Group(), first_step=1, workers=0))
    ahead = list(batches(dataset, tc, Group(), first_step=1, workers=2))
    assert len(inline) == len(ahead) == 3
    for a, b in zip(inline, ahead):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_old_logs_gain_the_processes_column(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss,val_loss,seconds,pixels_per_s\n1,0.5,,0.1,100\n")
    open_log(path, resume=True)
    rows = list(csv.reader(open(path)))
    assert rows == [LOG_COLUMNS, ["1", "0.5", "", "0.1", "100", ""]]


def test_two_processes_make_the_updates_of_one_and_resume_on_any_count(s7_root, tmp_path):
    data = ["--data", str(s7_root)]
    one = trained(tmp_path, 1, "one", *data, "--steps", "2")
    two = trained(tmp_path, 2, "two", *data, "--steps", "2")
    assert_same_weights(one, two)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert [r["processes"] for r in log_rows(tmp_path / "two")] == ["2", "2"]
    # The same whole-batch loss is logged (rank 0 logs the mean over the ranks' shares).
    for a, b in zip(log_rows(tmp_path / "one"), log_rows(tmp_path / "two")):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5)
        assert float(a["val_loss"] or 0) == pytest.approx(float(b["val_loss"] or 0), rel=1e-5)
    # 2 processes -> 1 -> 2, against one process throughout.
    one = trained(tmp_path, 1, "one", "--resume", "--steps", "4")
    two = trained(tmp_path, 1, "two", "--resume", "--steps", "4")
    assert_same_weights(one, two)
    one = trained(tmp_path, 1, "one", "--resume", "--steps", "6")
    two = trained(tmp_path, 2, "two", "--resume", "--steps", "6")
    assert_same_weights(one, two)
    assert two["world_size"] == 2
    assert [r["processes"] for r in log_rows(tmp_path / "two")] == ["2", "2", "1", "1", "2", "2"]


def test_batch_must_split_evenly_across_processes(s7_root, tmp_path):
    result = deepisp_train(tmp_path, 2, "--data", str(s7_root), "--out", "run", *BASE, "--batch", "3", "--steps", "2")
    assert result.returncode != 0
    assert "--batch 3 must be a multiple of the 2 processes" in result.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


def rank_pids(tag: str, rank: int) -> list[int]:
    """Pids of this test's training processes of `rank` (found by the environment torchrun gave them)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            env = set((proc / "environ").read_bytes().split(b"\0"))
        except (OSError, ValueError):
            continue
        if f"DEEPISP_TEST_RUN={tag}".encode() in env and f"RANK={rank}".encode() in env:
            pids.append(int(proc.name))
    return pids


def long_run(s7_root, tmp_path, tag: str) -> subprocess.Popen:
    """A 2-process run far too long to finish, returned once it has logged a few steps."""
    run = deepisp_train(tmp_path, 2, "--data", str(s7_root), "--out", "run", *BASE, "--steps", "1000000", wait=False, tag=tag)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if (tmp_path / "run" / "log.csv").exists() and len(log_rows(tmp_path / "run")) >= 3:
            return run
        time.sleep(0.5)
    run.kill()
    pytest.fail(f"the run logged no steps: {run.communicate()[1][-2000:]}")


def assert_one_consistent_checkpoint(run: Path) -> None:
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["step"] == int(log_rows(run)[-1]["step"]) >= 3
    assert sorted(p.name for p in run.iterdir()) == ["last.pt", "log.csv", "loss.png", "train.lock"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_killed_rank_ends_the_run_with_a_clear_error(s7_root, tmp_path):
    tag = f"killed-{os.getpid()}"
    run = long_run(s7_root, tmp_path, tag)
    victims = [pid for pid in rank_pids(tag, 1) if pid != run.pid]
    assert victims, "rank 1 not found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode != 0
    assert "error: rank 0 of 2: a collective operation failed" in stderr
    assert_one_consistent_checkpoint(tmp_path / "run")


def test_a_signal_stops_every_rank_at_one_step(s7_root, tmp_path):
    run = long_run(s7_root, tmp_path, f"signalled-{os.getpid()}")
    run.send_signal(signal.SIGTERM)  # to torchrun, which passes it on, as a scheduler's would be
    _, stderr = run.communicate(timeout=120)
    assert run.returncode != 0
    assert stderr.splitlines().count("interrupted") == 2, stderr[-3000:]
    assert_one_consistent_checkpoint(tmp_path / "run")
    # and the run resumes from it
    assert np.isfinite(float(log_rows(tmp_path / "run")[-1]["loss"]))
    state = trained(tmp_path, 1, "run", "--resume", "--steps", str(torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] + 1))
    assert state["world_size"] == 1
