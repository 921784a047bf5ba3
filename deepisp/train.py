"""Training: Adam at the paper's 5e-5 on random crops, checkpoints that resume exactly.

Data: mode "full" trains on an S7-layout folder (real S7-ISP or `deepisp make-synthetic` output) with the
Lab-L1 + MS-SSIM loss; mode "jdd" on an MSR-layout folder with L2. Either mode can instead draw its pairs
on the fly from folders of sRGB photographs (`--photos`, deepisp.data.photos), validating on photos held
out of those folders.

Speed: on CPU the model runs channels_last, and in bf16 autocast where the CPU has native bf16 (AVX-512
BF16/AMX); on CUDA in bf16 autocast. Weights, Adam state and the loss stay fp32 (`--precision fp32`
turns autocast off). benchmarks/train_throughput.py measures each path against eager NCHW fp32.

Reproducibility: sample i of step s's batch is drawn from a generator seeded by (seed, s, i), and a
checkpoint holds the model, the Adam state and the step, so `--resume` continues exactly where an
interrupted run stopped (same batches, same optimizer moments, identical weights on the same machine and
thread count), with any number of processes that divides the batch. (Runs begun before torchrun support drew
from (seed, s): they resume with this stream's batches. An S7 run that starts reading a `deepisp cache`
midway gets its crops to within the cache's 16-bit rounding.)

Scale: under torchrun, each process computes its share of every batch and DistributedDataParallel averages
the gradients (deepisp.distributed); `workers` DataLoader processes make batches ahead of the model.

Outputs in --out (rank 0 writes them): last.pt (written atomically every --ckpt-every steps and at exit,
Ctrl-C and the SIGTERM / SIGHUP that `timeout`, job schedulers and `docker stop` send included; it records
the number of processes, `world_size`), log.csv (one row per step, its `processes` column likewise), loss.png.
"""

from __future__ import annotations

import csv
import fcntl
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from deepisp.atomic import atomic_path, make_folder
from deepisp.checkpoint import load_checkpoint, save_checkpoint
from deepisp.data.photos import JDD_CLEAN_FRACTION
from deepisp.distributed import SINGLE_PROCESS, Group, any_rank, from_environment, is_lost_peer, join, leave, local_device, lost_peer, mean_over_ranks, on_main
from deepisp.errors import DeepISPError
from deepisp.export.int8 import int8_weight_grid
from deepisp.losses import JDD_LOSS_FUNCTIONS, MIN_CROP, IspLoss
from deepisp.model.color_transform import fit_affine
from deepisp.model.config import PRESETS, ModelConfig
from deepisp.model.growth import can_grow, grow
from deepisp.model.network import DeepISP
from deepisp.options import JDD_LOSSES, Mode


@dataclass(frozen=True)
class TrainConfig:
    data: str = ""  # S7-layout root (full) or MSR-layout root (jdd)
    photos: tuple[str, ...] = ()  # or: sRGB photo folders, pairs simulated on the fly (deepisp.data.photos)
    val_data: str = ""  # S7 only: validate on all of this folder, train on all of `data`
    cache: str = ""  # `data`'s pre-decoded cache (`deepisp cache`); "" reads <data>/.deepisp-cache when it exists
    out: str = "runs/deepisp"
    preset: str = "phone-full"
    pair: str = "low_light"  # S7 pair: "low_light" or "mimic"
    msr_camera: str = "panasonic"
    steps: int = 2000  # with resume=True, 0 keeps the checkpoint's own total
    batch: int = 4
    crop: int = 128
    lr: float = 5e-5  # paper, with betas (0.9, 0.999), eps 1e-8
    lr_schedule: str = "constant"  # paper; or "cosine" decay to 0 at `steps`
    alpha: float = 0.84  # MS-SSIM weight of the full-ISP loss
    seed: int = 0
    ckpt_every: int = 200
    val_every: int = 200
    device: str = "auto"
    precision: str = "auto"  # "auto" (bf16 autocast where the hardware has it), "bf16" or "fp32"
    white_balance: str = "estimate"  # full models: "estimate" (paper) or "as_shot" (input balanced by the file's WB)
    color_head_lr_mult: float = 1.0  # learning-rate multiplier of the FC that gives W (see `param_groups`)
    init_from: str = ""  # start from this checkpoint's weights (same model config; new optimizer, step 0)
    noise_aware: bool = False  # jdd: the model is given its input's noise level (ModelConfig.noise_input)
    jdd_loss: str = "l2"  # jdd: "l2" (paper, linear RGB), "l2+srgb" (plus L2 of the sRGB-encoded images) or "log-l2+srgb" (deepisp.losses)
    compand: str = "none"  # jdd: the network's working domain (ModelConfig.compand): "none" (paper) or "sqrt"
    color_augment: bool = False  # --photos: saturation and channel-order changes of the crops (deepisp.data.photos.augment_colors)
    int8_weights: bool = False  # train through the int8 export's weight rounding; checkpoints hold the rounded weights (deepisp.export.int8.int8_weight_grid)
    smooth_fields: float = 0.0  # --photos jdd: share of crops replaced by smooth colour fields (deepisp.data.photos.smooth_field)
    clean_share: float = JDD_CLEAN_FRACTION  # --photos jdd: share of training crops drawn without noise
    exposure: str = "as_is"  # full as_shot models: "as_is" (the paper's 1/4 exposure) or "metered" (ModelConfig.exposure)
    recipe: str = ""  # the recipe stage that made this run, "<recipe>#<stage>" (e.g. "micro-full#2"; deepisp.recipe); "" without --recipe

    def __post_init__(self) -> None:
        # A tuple whatever the caller passed (argparse gives a list), so configs compare and hash alike.
        object.__setattr__(self, "photos", tuple(self.photos))


def make_dataset(tc: TrainConfig, cfg: ModelConfig, split: str):
    """The dataset of a split: photo-simulated pairs with --photos, else S7 pairs for mode full and MSR for
    jdd. All expose len, [i] and crop_pair."""
    if tc.photos:
        from deepisp.data.photos import PhotoDataset

        if tc.data or tc.val_data:
            raise DeepISPError("--photos replaces --data/--val-data (validation photos are held out of the same folders); pass one or the other")
        return PhotoDataset(
            tc.photos,
            cfg.mode,
            split=split,
            crop=tc.crop,
            balanced=cfg.balanced_input,
            noise_levels=cfg.noise_input,
            exposure=cfg.exposure,
            color_augment=tc.color_augment and split == "train",
            smooth_fields=tc.smooth_fields if split == "train" else 0.0,
            # Validation keeps the default share, so runs that train with another share validate alike.
            clean_share=tc.clean_share if split == "train" else JDD_CLEAN_FRACTION,
        )
    if tc.clean_share != JDD_CLEAN_FRACTION:
        raise DeepISPError("--clean-share sets how many simulated photo crops are drawn without noise: it needs --photos")
    if tc.smooth_fields:
        raise DeepISPError("--smooth-fields replaces some photo crops by simulated colour fields: it needs --photos")
    if tc.color_augment:
        raise DeepISPError("--color-augment changes the colours of photos before they are simulated as raws: it needs --photos")
    if cfg.noise_input:
        raise DeepISPError("--noise-aware trains from --photos (the noise of every simulated crop is known); MSR folders carry no noise levels")
    if cfg.mode == Mode.FULL:
        from deepisp.data.s7 import S7Dataset

        if tc.val_data:
            if split == "val":  # its own folder: its default cache, if any
                return S7Dataset(tc.val_data, split="all", pair=tc.pair, crop=tc.crop, model_config=cfg)
            return S7Dataset(tc.data, split="all", pair=tc.pair, crop=tc.crop, model_config=cfg, cache=tc.cache or None)
        return S7Dataset(tc.data, split=split, pair=tc.pair, crop=tc.crop, model_config=cfg, cache=tc.cache or None)
    if tc.val_data:
        raise DeepISPError("--val-data is for S7 (full-ISP) training; MSR has its own train/validation lists")
    from deepisp.data.msr import MSRDataset

    return MSRDataset(tc.data, camera=tc.msr_camera, split=split, crop=tc.crop, flips=True, cache=tc.cache or None)


def draw_batch(dataset, tc: TrainConfig, step: int, group: Group = SINGLE_PROCESS) -> tuple[torch.Tensor, ...]:
    """This process's share of the batch of `step`, (input, target[, noise levels]) stacked.

    The global batch is a pure function of (seed, step), whatever the number of processes: sample i is drawn
    (its image, then its crop) from a generator seeded by (seed, step, i), and rank r of N takes samples
    r*B/N .. (r+1)*B/N - 1. So N processes together see the batch one process sees, and a run resumes
    exactly on any number of processes."""
    share = tc.batch // group.world_size
    samples = []
    for i in range(group.rank * share, (group.rank + 1) * share):
        rng = np.random.default_rng([tc.seed, step, i])
        samples.append(dataset.crop_pair(int(rng.integers(0, len(dataset))), rng))
    return tuple(torch.stack(parts) for parts in zip(*samples))


class StepBatches(torch.utils.data.Dataset):
    """Item s is this process's share of step s's batch (`draw_batch`), so DataLoader workers can make the
    next batches while the model trains on this one, and the batches stay those of the steps."""

    def __init__(self, dataset, tc: TrainConfig, group: Group):
        self.dataset, self.tc, self.group = dataset, tc, group

    def __len__(self) -> int:
        return self.tc.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, ...] | str:
        """The batch, or the message of the DeepISPError that made it impossible (the DataLoader would wrap the
        error in its worker's traceback)."""
        try:
            return draw_batch(self.dataset, self.tc, step, self.group)
        except DeepISPError as e:
            return str(e)


def batches(dataset, tc: TrainConfig, group: Group, first_step: int, workers: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """The batches of steps first_step .. tc.steps - 1, made in this process (workers=0) or by `workers`
    DataLoader processes, two steps ahead each."""
    steps = range(first_step, tc.steps)
    if workers == 0:
        yield from (draw_batch(dataset, tc, step, group) for step in steps)
        return
    for batch in torch.utils.data.DataLoader(StepBatches(dataset, tc, group), batch_size=None, sampler=steps, num_workers=workers, prefetch_factor=2):
        if isinstance(batch, str):
            raise DeepISPError(batch)
        yield batch


def affine_init(dataset, max_pixels: int = 1 << 20, progress: bool = True) -> torch.Tensor:
    """Paper IV-C: one least-squares affine map per training image (input -> target), averaged. [3,4]."""
    maps = []
    for i in tqdm(range(len(dataset)), desc="W init (affine regressions)", leave=False, disable=not progress):
        rgb, target = dataset[i]
        stride = max(1, int(np.sqrt(rgb.shape[1] * rgb.shape[2] / max_pixels)))
        maps.append(fit_affine(rgb[:, ::stride, ::stride], target[:, ::stride, ::stride]))
    return torch.stack(maps).mean(0)


# Seed-sequence tag of the fixed validation crops: out of reach of training step numbers.
VALIDATION_STREAM = 2**32 - 1


def param_groups(model: DeepISP, tc: TrainConfig) -> list[dict]:
    """Adam parameter groups: everything at the base rate, the colour head (`to_w`) at
    `color_head_lr_mult` times it. Why: W's entries are O(1-10) while the pooled features the FC reads
    are O(0.01) (dark raws), and Adam moves a weight by about lr per step whatever its gradient, so at the
    base rate the FC needs tens of thousands of steps before W adapts to the image at all (measured:
    after 900 steps the network's W did no better than one fixed W on held-out photos)."""
    head = [p for n, p in model.named_parameters() if n.startswith("to_w.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("to_w.")]
    groups = [{"params": rest, "lr_mult": 1.0}]
    if head:
        groups.append({"params": head, "lr_mult": tc.color_head_lr_mult})
    return groups


def learning_rate(tc: TrainConfig, step: int) -> float:
    """The rate of `step`: a function of the step alone, so resuming needs no scheduler state."""
    if tc.lr_schedule == "cosine":
        return tc.lr * 0.5 * (1 + math.cos(math.pi * min(step, tc.steps) / tc.steps))
    return tc.lr


PRECISIONS = ("auto", "bf16", "fp32")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run: bf16 where asked for or ("auto") where the hardware computes it
    natively, None for plain fp32."""
    if precision not in PRECISIONS:
        raise DeepISPError(f"unknown --precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if precision == "bf16" and not native:
        raise DeepISPError("--precision bf16: this processor has no native bf16 arithmetic; use --precision fp32")
    return torch.bfloat16 if native else None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeepISPError("--device cuda asked for but no CUDA device is visible: use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DeepISPError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None


@torch.no_grad()
def validation_loss(model: DeepISP, forward, dataset, loss_fn, tc: TrainConfig, device: torch.device, n: int = 8) -> float:
    """Mean loss of `forward` (model's forward as trained) over fixed crops of the first `n` validation images
    (same crops every time)."""
    model.eval()
    losses = []
    for i in range(min(n, len(dataset))):
        rgb, target, *noise = (t[None].to(device) for t in dataset.crop_pair(i, np.random.default_rng([tc.seed, VALIDATION_STREAM, i])))
        losses.append(loss_fn(forward(rgb, *noise), target).item())
    model.train()
    return float(np.mean(losses))


def int8_grid_forward(model: DeepISP):
    """model's forward with every conv weight on its int8 export's grid (straight-through gradients to the float
    weights, which Adam updates): `int8_weights` training."""
    return lambda *inputs: functional_call(model, int8_weight_grid(model), inputs)


def plot_losses(log_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    losses = [float(r["loss"]) for r in rows]
    ax.plot([int(r["step"]) for r in rows], losses, lw=0.8, label="train (batch)")
    val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    # L2 losses span decades; a per-crop -PSNR loss (dB, negative) is already logarithmic.
    if min(losses + [v for _, v in val]) > 0:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)


class StopSignals:
    """Ctrl-C, SIGTERM and SIGHUP (what schedulers send) stop training with its final checkpoint written.

    Within `active()`, the first of these signals raises KeyboardInterrupt in the training loop; every later one
    is only recorded (the run is stopping already: a burst of SIGTERMs must not abort the save that follows), and
    within `deferred()` (the final save) none raises. With `interrupt=False` (runs of several processes, which
    must stop together at a step boundary, deepisp.distributed.any_rank) a signal is only recorded. Handlers
    are restored on exit; no-op off the main thread (Python delivers signals to the main thread only)."""

    SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)

    def __init__(self, interrupt: bool = True) -> None:
        self.received: str | None = None
        self._deferring = not interrupt
        self._interrupt = interrupt

    def _handle(self, signum: int, frame: object) -> None:
        first = self.received is None
        self.received = self.received or signal.Signals(signum).name
        if first and not self._deferring:
            raise KeyboardInterrupt(self.received)

    @contextmanager
    def active(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextmanager
    def deferred(self):
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = not self._interrupt


@contextmanager
def run_folder_lock(out: Path):
    """One owner per run folder: an exclusive lock on `out/train.lock` (released when the process ends, however it
    ends), a clear error for a second `deepisp train --out` on the same folder."""
    make_folder(out)
    with open(out / "train.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DeepISPError(f"{out} is in use by another `deepisp train` (it holds {out / 'train.lock'}); wait for it or pass another --out") from None
        yield


def stored_train_config(state: dict, path: Path) -> TrainConfig:
    """The TrainConfig a resumable checkpoint stores, after checking the run's fields (`step`, `optimizer`,
    `train_config` with known fields of the right types); a DeepISPError naming the first bad one."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    stored = state.get("train_config")
    bad = None
    if type(state.get("step")) is not int or state["step"] < 0:
        bad = "step"
    elif not isinstance(state.get("optimizer"), dict):
        bad = "optimizer"
    elif not isinstance(stored, dict):
        bad = "train_config"
    else:
        for key, value in stored.items():
            kind = type(defaults.get(key, ...))
            ok = key in defaults and (
                isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
                if kind is tuple
                else isinstance(value, (int, float)) and not isinstance(value, bool)
                if kind is float
                else type(value) is kind
            )
            if not ok:
                bad = f"train_config.{key}"
                break
    if bad is not None:
        raise DeepISPError(f"{path}: its {bad} is missing or malformed, so the run cannot resume; start a new run from its weights with --init-from")
    return TrainConfig(**stored)


def check_train_config(tc: TrainConfig, resume: bool, workers: int = 0) -> None:
    """Range checks of every numeric option, before anything is loaded or written (NaN fails every check): the
    one place for them, `deepisp train` and Python callers alike (the command's parser only checks numbers)."""
    checks = [
        ("--steps", tc.steps, tc.steps >= 1 or (resume and tc.steps == 0), "at least 1"),
        ("--batch", tc.batch, 1 <= tc.batch <= 4096, "in 1..4096"),
        ("--crop", tc.crop, 8 <= tc.crop <= 4096, "in 8..4096"),
        ("--lr", tc.lr, 0 <= tc.lr < 1, "in [0, 1)"),
        ("--alpha", tc.alpha, 0 <= tc.alpha <= 1, "in [0, 1]"),
        ("--ckpt-every", tc.ckpt_every, tc.ckpt_every >= 1, "at least 1"),
        ("--val-every", tc.val_every, tc.val_every >= 1, "at least 1"),
        ("--color-head-lr-mult", tc.color_head_lr_mult, 0 < tc.color_head_lr_mult <= 1000, "in (0, 1000]"),
        ("--workers", workers, 0 <= workers <= 64, "in 0..64"),
    ]
    for flag, value, ok, bound in checks:
        if not ok:
            raise DeepISPError(f"{flag} must be {bound}, got {value}")


def train(tc: TrainConfig, resume: bool = False, progress: bool = True, model_config: ModelConfig | None = None, workers: int = 0) -> Path:
    """Train (or continue) a run; returns the path of the last checkpoint. `model_config` trains a shape
    that is not a named preset (tc.preset is then only a label); `workers` DataLoader processes make the
    batches ahead (0: this process makes each when it is needed). Started by torchrun, this is one process of
    a data-parallel run (deepisp.distributed): rank 0 alone writes the run folder."""
    out = Path(tc.out)
    check_train_config(tc, resume, workers)
    group = from_environment()
    device = pick_device(local_device(group, tc.device))
    join(group, device)
    try:
        with ExitStack() as folder:
            on_main(group, lambda: folder.enter_context(run_folder_lock(out)))
            return _train(tc, out, resume, progress and group.is_main, model_config, Run(group, device, workers))
    finally:
        leave(group)


@dataclass(frozen=True)
class Run:
    """Where a run's process computes: its place in the process group, its device, its loader workers."""

    group: Group
    device: torch.device
    workers: int


def _train(tc: TrainConfig, out: Path, resume: bool, progress: bool, model_config: ModelConfig | None, run: Run) -> Path:
    group, device = run.group, run.device
    ckpt_path = out / "last.pt"
    state = None
    if tc.lr_schedule not in ("constant", "cosine"):
        raise DeepISPError(f"unknown --lr-schedule {tc.lr_schedule!r}: use constant or cosine")
    if tc.jdd_loss not in JDD_LOSSES:
        raise DeepISPError(f"unknown --jdd-loss {tc.jdd_loss!r}: use one of {', '.join(JDD_LOSSES)}")
    if resume:

        def read_checkpoint() -> dict:
            if not ckpt_path.exists():
                raise DeepISPError(f"--resume: no checkpoint at {ckpt_path}; start without --resume")
            return load_checkpoint(ckpt_path)

        state = on_main(group, read_checkpoint)
        # The run's identity (preset, seed, ...) comes from the checkpoint; the length may change (steps > 0;
        # 0 keeps the run's own), and so may where the data lives (--data/--val-data/--photos/--cache given again:
        # the run was moved or the data was) and the device (a resume may run on other machines, other processes).
        stored = stored_train_config(state, ckpt_path)
        moved = {k: getattr(tc, k) for k in ("data", "val_data", "photos", "cache") if getattr(tc, k)}
        tc = replace(stored, steps=tc.steps or stored.steps, out=tc.out, device=tc.device, **moved)
        cfg = ModelConfig(**state["model_config"])
    else:
        if model_config is None and tc.preset not in PRESETS:
            raise DeepISPError(f"unknown preset {tc.preset!r}: use one of {', '.join(PRESETS)}")
        cfg = model_config or PRESETS[tc.preset]
        if tc.white_balance != cfg.white_balance:
            if cfg.mode != Mode.FULL:
                raise DeepISPError("--white-balance as_shot is for full-ISP presets (jdd models see linear camera RGB)")
            cfg = replace(cfg, white_balance=tc.white_balance)
        if tc.exposure != cfg.exposure:
            if not cfg.balanced_input:
                raise DeepISPError("--exposure metered is for full presets with --white-balance as_shot (metering works on the balanced raw)")
            cfg = replace(cfg, exposure=tc.exposure)
        if tc.noise_aware:
            if cfg.mode != Mode.JDD:
                raise DeepISPError("--noise-aware is for jdd presets (the full ISP's training pairs carry no noise level)")
            cfg = replace(cfg, noise_input=True)
        if tc.compand != cfg.compand:
            if cfg.mode != Mode.JDD:
                raise DeepISPError(
                    "--compand is for jdd presets: drop it for a full preset (the full ISP keeps the paper's linear input; companded, "
                    "micro-full's validation loss was 11-17% higher over its first 2000 steps)"
                )
            cfg = replace(cfg, compand=tc.compand)
        if not tc.data and not tc.photos:
            raise DeepISPError("--data or --photos is required: an S7-layout folder (full presets), an MSR-layout folder (jdd presets), or sRGB photo folders")
    if cfg.mode == Mode.FULL and tc.crop < max(MIN_CROP, cfg.min_size):
        raise DeepISPError(f"--crop {tc.crop} is too small for the full-ISP loss: use at least {max(MIN_CROP, cfg.min_size)}")

    # Absolute paths in the checkpoint, so `--resume` works from any working directory.
    tc = replace(
        tc,
        data=str(Path(tc.data).resolve()) if tc.data else "",
        val_data=str(Path(tc.val_data).resolve()) if tc.val_data else "",
        cache=str(Path(tc.cache).resolve()) if tc.cache else "",
        photos=tuple(str(Path(p).resolve()) for p in tc.photos),
    )
    if tc.batch % group.world_size:
        raise DeepISPError(f"--batch {tc.batch} must be a multiple of the {group.world_size} processes (each computes an equal share of every step's batch)")
    torch.manual_seed(tc.seed)
    train_set = make_dataset(tc, cfg, "train")
    val_set = make_dataset(tc, cfg, "val")  # on every rank, so its errors stop every rank (rank 0 alone validates)
    model = DeepISP(cfg)
    step = 0
    if state is not None:
        # An int8_weights run keeps its float weights beside the rounded ones it ships.
        model.load_state_dict(state.get("float_weights", state["model"]))
        step = state["step"]
    elif tc.init_from:
        init = on_main(group, lambda: load_checkpoint(tc.init_from))
        # A blind model may start a noise-aware one, and a smaller model a wider/deeper one (`grow`): both
        # start as the same function. A model of one working domain warm-starts one of another (--compand):
        # the same weights, not the same function; training adapts them.
        init_cfg = ModelConfig(**init["model_config"])
        if init_cfg.compand != cfg.compand:
            if group.is_main:
                print(
                    f"--init-from {tc.init_from}: a {init_cfg.compand!r}-domain model warm-starts this {cfg.compand!r}-domain run "
                    "(--compand): same weights, not the same function",
                    file=sys.stderr,
                )
            init_cfg = replace(init_cfg, compand=cfg.compand)
        # The exposure contract changes what the model is fed, not its weights.
        init_cfg = replace(init_cfg, exposure=cfg.exposure)
        if not can_grow(init_cfg, cfg):
            raise DeepISPError(
                f"--init-from {tc.init_from} is a {init_cfg} model; this run trains {cfg}, which it can start only if they differ in "
                "nothing but a larger width, more low-level blocks (added between its blocks, so it needs at least 2) or an added noise input"
            )
        small = DeepISP(init_cfg)
        small.load_state_dict(init["model"])
        model = grow(small, cfg, seed=tc.seed)
    elif cfg.mode == Mode.FULL:
        model.set_color_init(on_main(group, lambda: affine_init(train_set, progress=progress)))
    model.to(device).train()
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    # The replicas start equal (DDP also broadcasts rank 0's weights) and stay so: every rank applies the same
    # averaged gradient with the same Adam state.
    forward_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if group.distributed else model
    if tc.int8_weights:
        if group.distributed:
            raise DeepISPError("--int8-weights trains in one process (a short last stage): run it with `deepisp train`, not torchrun")
        forward_model = int8_grid_forward(model)
    amp_dtype = autocast_dtype(tc.precision, device)
    # Created after the move, so load_state_dict puts Adam's moments on the parameters' device.
    optimizer = torch.optim.Adam(param_groups(model, tc), lr=tc.lr, betas=(0.9, 0.999), eps=1e-8)
    if state is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError, IndexError):
            raise DeepISPError(
                f"{ckpt_path}: its optimizer state has other parameter groups than this version of deepisp trains with; "
                "start a new run from its weights with --init-from"
            ) from None
    loss_fn = IspLoss(alpha=tc.alpha) if cfg.mode == Mode.FULL else JDD_LOSS_FUNCTIONS[tc.jdd_loss]

    log_path = out / "log.csv"
    if group.is_main:
        open_log(log_path, resume)

    def checkpoint() -> None:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise DeepISPError(f"the weights became non-finite at step {step} (is --lr too high?); not saved: {ckpt_path} keeps the last good state")
        extra = {"optimizer": optimizer.state_dict(), "step": step, "train_config": asdict(tc), "world_size": group.world_size}
        weights = None
        if tc.int8_weights:
            with torch.no_grad():
                weights = {**model.state_dict(), **{name: w.detach().clone() for name, w in int8_weight_grid(model).items()}}
            extra["float_weights"] = model.state_dict()
        save_checkpoint(ckpt_path, model, cfg, extra=extra, weights=weights)
        plot_losses(log_path, out / "loss.png")

    bar = tqdm(total=tc.steps, initial=step, desc=f"train {cfg.mode}", disable=not progress, unit="step")
    stop = StopSignals(interrupt=not group.distributed)
    with stop.active():
        try:
            with open(log_path, "a", newline="") if group.is_main else nullcontext() as log_file:
                for batch in batches(train_set, tc, group, step, run.workers):
                    # Ranks stop together, at a step boundary, when any of them was signalled.
                    if any_rank(group, stop.received is not None):
                        raise KeyboardInterrupt(stop.received or "a signal to another process of the run")
                    t0 = time.perf_counter()
                    rgb, target, *noise = (t.to(device) for t in batch)
                    for param_group in optimizer.param_groups:
                        param_group["lr"] = learning_rate(tc, step) * param_group.get("lr_mult", 1.0)
                    if device.type == "cpu":
                        rgb = rgb.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                        pred = forward_model(rgb, *noise)
                    loss = loss_fn(pred.float(), target)
                    # The whole batch's loss: what the log shows, and non-finite on every rank when on any.
                    batch_loss = mean_over_ranks(group, loss)
                    if not torch.isfinite(batch_loss):
                        raise DeepISPError(f"the loss became non-finite at step {step}: lower --lr or check the data")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    loss = batch_loss
                    if not group.is_main:
                        continue
                    seconds = time.perf_counter() - t0
                    pixels_per_s = group.world_size * rgb.shape[0] * rgb.shape[2] * rgb.shape[3] / seconds
                    val = ""
                    if step % tc.val_every == 0 or step == tc.steps:
                        val = f"{validation_loss(model, forward_model, val_set, loss_fn, tc, device):.6f}"
                    csv.writer(log_file).writerow([step, f"{loss.item():.6f}", val, f"{seconds:.4f}", f"{pixels_per_s:.0f}", group.world_size])
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4f}", px_s=f"{pixels_per_s:,.0f}", **({"val": val} if val else {}))
                    if step % tc.ckpt_every == 0:
                        log_file.flush()
                        checkpoint()
        except RuntimeError as e:
            if is_lost_peer(group, e):
                raise lost_peer(group, e) from None
            raise
        finally:
            bar.close()
            if step > 0 and group.is_main:
                with stop.deferred():
                    checkpoint()
    return ckpt_path


LOG_COLUMNS = ["step", "loss", "val_loss", "seconds", "pixels_per_s", "processes"]


def open_log(path: Path, resume: bool) -> None:
    """A new log.csv with its header, or a resumed run's, its header brought up to LOG_COLUMNS (logs of runs
    begun before the `processes` column get it, empty on their old rows)."""
    if not resume or not path.exists():
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerow(LOG_COLUMNS)
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if rows and rows[0] != LOG_COLUMNS:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([LOG_COLUMNS] + [row + [""] * (len(LOG_COLUMNS) - len(row)) for row in rows[1:]])
