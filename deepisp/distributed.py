"""Data-parallel training across processes, GPUs and machines on PyTorch's own engine (torchrun + DDP).

`deepisp train` started by torchrun (`torchrun --nproc-per-node N -m deepisp train ...`) finds the
variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT) and joins the
process group: NCCL on GPUs, gloo on CPUs. Each process computes its own share of every step's global batch
(deepisp.train.draw_batch) and DistributedDataParallel averages the gradients, so N processes make the
updates one process makes with the same global batch, up to the all-reduce's float summation order.

What a process does in a group is owned here: which rank it is (`Group`), what runs on rank 0 alone and is
then shared (`on_main`: a result or the DeepISPError it raised, so an error on rank 0 ends every rank with
the same message instead of leaving them waiting), the stop decision every rank takes together
(`any_rank`), and the clear error a rank gives when another one died (`lost_peer`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from deepisp.errors import DeepISPError

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    """This process's place in a run: `rank` of `world_size` processes, `local_rank` of `local_world_size`
    on this machine. A single-process run is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def label(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


SINGLE_PROCESS = Group()


def from_environment() -> Group:
    """The group torchrun describes in the environment, or a single process when it is not set."""
    try:
        values = [int(os.environ.get(name, default)) for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0), ("LOCAL_WORLD_SIZE", 1))]
    except ValueError:
        raise DeepISPError(
            "RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers (torchrun sets them); unset them to train in one process"
        ) from None
    group = Group(*values)
    if not (0 <= group.rank < group.world_size and 0 <= group.local_rank < group.local_world_size):
        raise DeepISPError(
            f"RANK {group.rank} / WORLD_SIZE {group.world_size} (LOCAL_RANK {group.local_rank}) do not describe a process group: start with torchrun"
        )
    return group


def join(group: Group, device: torch.device) -> None:
    """Join the process group torchrun set up; a no-op for one process. CPU tensors (the stop flag, on_main's
    messages) go through gloo on every device; CUDA tensors through NCCL."""
    if not group.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
    except (ValueError, RuntimeError) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DeepISPError(
            f"{group.label()}: cannot join the process group ({first_line[:160]}): start the run with torchrun, and check that every "
            "machine reaches the rendezvous endpoint"
        ) from None


def leave(group: Group) -> None:
    """Leave the process group (at the end of a run, however it ends)."""
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


def local_device(group: Group, name: str) -> str:
    """The device name a rank trains on: "cuda" means this rank's own GPU (LOCAL_RANK) under torchrun."""
    if group.distributed and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{group.local_rank}"
    return "cpu" if group.distributed and name == "auto" else name


def on_main(group: Group, work: Callable[[], T]) -> T:
    """`work()` run on rank 0 alone, its result (picklable) given to every rank. Whatever it raises reaches every
    rank, so none waits on one that failed: rank 0 raises it, the others a DeepISPError with its message."""
    if not group.distributed:
        return work()
    message: list = [None, None]
    failure = None
    if group.is_main:
        try:
            message[0] = work()
        except BaseException as e:  # re-raised below, after the other ranks are told
            failure, message[1] = e, str(e) if isinstance(e, DeepISPError) else f"rank 0 stopped: {type(e).__name__}: {e}"
    dist.broadcast_object_list(message, src=0)
    if failure is not None:
        raise failure
    if message[1] is not None:
        raise DeepISPError(message[1])
    return message[0]


def any_rank(group: Group, flag: bool) -> bool:
    """True on every rank when `flag` is true on any: the decision all ranks take at the same step."""
    if not group.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(group: Group, value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over the ranks (each rank's loss of its share -> the loss of the whole batch),
    detached: for logging and checks, not for gradients."""
    if not group.distributed:
        return value.detach()
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / group.world_size


# Words of the transport errors gloo and NCCL raise (as plain RuntimeError from inside backward, where DDP
# all-reduces) when a peer process is gone or unreachable.
_TRANSPORT_WORDS = ("gloo", "nccl", "connection", "peer", "socket", "timed out")


def is_lost_peer(group: Group, error: BaseException) -> bool:
    """Whether `error` is a failed collective operation of a run of several processes."""
    if not group.distributed:
        return False
    return isinstance(error, dist.DistError) or (isinstance(error, RuntimeError) and any(w in str(error).lower() for w in _TRANSPORT_WORDS))


def lost_peer(group: Group, error: BaseException) -> DeepISPError:
    """The one-line error of a rank whose collective operation failed: almost always another process of the
    run died (its own error is in torchrun's report) or the network between machines dropped."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DeepISPError(
        f"{group.label()}: a collective operation failed ({first_line[:160]}): another process of this run stopped or became "
        "unreachable; see torchrun's report for its error, then rerun with --resume (any number of processes)"
    )
