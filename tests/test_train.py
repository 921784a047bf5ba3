"""Training: the loss falls, resume is exact, the W init is the paper's, checkpoints are atomic."""

import csv
import warnings
from dataclasses import replace

import pytest
import torch

from deepisp.checkpoint import load_checkpoint, load_model
from deepisp.errors import DeepISPError
from deepisp.train import LOG_COLUMNS, TrainConfig, plot_losses, train

# tiny-full: 3 low-level blocks, 1 high-level layer, width 8. Crops of 72 are the MS-SSIM minimum (> 64).
BASE = dict(preset="tiny-full", batch=2, crop=72, ckpt_every=3, val_every=3, lr=2e-3)


def run(tc: TrainConfig, resume: bool = False):
    torch.set_num_threads(1)  # identical kernels in every run, so weights can be compared bit for bit
    return train(tc, resume=resume, progress=False)


def test_loss_falls(s7_root, tmp_path):
    """Judged on the validation loss (the same fixed crops every time): the training loss of 2-crop batches
    varies more from step to step than 30 steps lower it."""
    tc = TrainConfig(data=str(s7_root), out=str(tmp_path / "run"), steps=30, **{**BASE, "ckpt_every": 30})
    run(tc)
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30
    val = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    assert len(val) == 10
    assert val[-1] < 0.8 * val[0]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0


def test_resume_gives_identical_weights(s7_root, tmp_path):
    straight = TrainConfig(data=str(s7_root), out=str(tmp_path / "a"), steps=6, **BASE)
    run(straight)
    interrupted = replace(straight, out=str(tmp_path / "b"), steps=3)
    run(interrupted)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 3
    run(replace(interrupted, steps=6), resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ea, eb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(ea[i]["exp_avg_sq"], eb[i]["exp_avg_sq"]) for i in ea)


def test_resume_keeps_the_runs_own_length(s7_root, tmp_path):
    """steps=0 on resume (the CLI's `--resume` without `--steps`) runs to the total the run was started with."""
    straight = TrainConfig(data=str(s7_root), out=str(tmp_path / "a"), steps=6, **BASE)
    run(straight)
    run(replace(straight, out=str(tmp_path / "b"), steps=3))
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    state["train_config"]["steps"] = 6  # what a 6-step run stopped at step 3 stores
    torch.save(state, tmp_path / "b" / "last.pt")
    run(replace(straight, out=str(tmp_path / "b"), steps=0), resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert b["step"] == 6 and b["train_config"]["steps"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_w_is_initialised_from_averaged_affine_fits(s7_root, tmp_path):
    from deepisp.data.s7 import S7Dataset
    from deepisp.model import fit_affine

    run(TrainConfig(data=str(s7_root), out=str(tmp_path / "r"), steps=1, **{**BASE, "lr": 1e-12}))
    model, _ = load_model(tmp_path / "r" / "last.pt")
    ds = S7Dataset(s7_root, split="train")
    expected = torch.stack([fit_affine(*ds[i]) for i in range(len(ds))]).mean(0)
    w = model.to_w.bias.detach().view(3, 10)
    assert torch.allclose(w[:, [3, 6, 8, 9]], expected, atol=1e-4)
    assert w[:, [0, 1, 2, 4, 5, 7]].abs().max() < 1e-6


def test_resume_without_checkpoint_and_bad_preset(s7_root, tmp_path):
    with pytest.raises(DeepISPError, match="no checkpoint"):
        run(TrainConfig(data=str(s7_root), out=str(tmp_path / "none")), resume=True)
    with pytest.raises(DeepISPError, match="unknown preset"):
        run(TrainConfig(data=str(s7_root), out=str(tmp_path / "x"), preset="huge"))
    with pytest.raises(DeepISPError, match="too small"):
        run(TrainConfig(data=str(s7_root), out=str(tmp_path / "x"), preset="tiny-full", crop=32))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DeepISPError, match="not a readable deepisp checkpoint"):
        load_model(bad)
    with pytest.raises(DeepISPError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_jdd_trains_and_evaluates_on_msr_layout(tmp_path):
    from PIL import Image

    from deepisp.cli import main
    from deepisp.data.msr import make_msr_layout
    from tests.conftest import smooth_photo

    photos = []
    for i in range(6):
        photos.append(tmp_path / f"p{i}.png")
        Image.fromarray(smooth_photo(140, 230, i)).save(photos[-1])
    root = make_msr_layout(tmp_path / "MSR-Demosaicing", photos, pattern="GRBG", counts=(3, 1, 2), size=(66, 110), read_noise=0.03)
    tc = TrainConfig(data=str(root), out=str(tmp_path / "jdd"), preset="tiny-jdd", steps=40, batch=2, crop=32, lr=2e-3, ckpt_every=40, val_every=40)
    ckpt = run(tc)
    with open(tmp_path / "jdd" / "log.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])  # learns to denoise
    assert main(["eval", "--data", str(root), "--model", str(ckpt), "--out", str(tmp_path / "ev"), "--figures", "1"]) == 0
    import json

    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["mode"] == "jdd" and m["n"] == 2
    assert 10 < m["model"]["psnr_linear"] < 80 and 10 < m["baseline"]["psnr_srgb"] < 80


def test_cosine_schedule_and_val_data(s7_root, tmp_path):
    from deepisp.model import PRESETS
    from deepisp.train import learning_rate, make_dataset

    tc = TrainConfig(data=str(s7_root), lr=1e-3, steps=100, lr_schedule="cosine")
    assert learning_rate(tc, 0) == pytest.approx(1e-3)
    assert learning_rate(tc, 50) == pytest.approx(5e-4)
    assert learning_rate(tc, 100) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(replace(tc, lr_schedule="constant"), 77) == 1e-3
    cfg = PRESETS["tiny-full"]
    split_train, split_val = make_dataset(tc, cfg, "train"), make_dataset(tc, cfg, "val")
    assert len(split_train) + len(split_val) < 4  # the 90/10/10 split of one folder
    separate = replace(tc, val_data=str(s7_root))
    assert len(make_dataset(separate, cfg, "train")) == len(make_dataset(separate, cfg, "val")) == 4


def test_init_from_starts_a_new_run_from_weights_and_head_gets_its_own_rate(s7_root, tmp_path):
    from deepisp.model import DeepISP, ModelConfig
    from deepisp.train import param_groups

    first = TrainConfig(data=str(s7_root), out=str(tmp_path / "a"), steps=3, **BASE)
    run(first)
    second = replace(first, out=str(tmp_path / "b"), steps=1, init_from=str(tmp_path / "a" / "last.pt"), lr=0.0)
    run(second)  # lr 0: the weights must stay exactly the ones started from
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert b["step"] == 1 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    groups = param_groups(DeepISP(ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8)), replace(first, color_head_lr_mult=30.0))
    assert [g["lr_mult"] for g in groups] == [1.0, 30.0] and len(groups[1]["params"]) == 2  # to_w weight and bias
    other = ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8)
    with pytest.raises(DeepISPError, match="init-from"):
        train(replace(second, out=str(tmp_path / "c")), progress=False, model_config=other)


def test_unknown_jdd_loss_is_refused(tmp_path):
    with pytest.raises(DeepISPError, match="--jdd-loss"):
        train(TrainConfig(preset="tiny-jdd", jdd_loss="l1", out=str(tmp_path / "run")), progress=False)


@pytest.mark.parametrize("losses", [(0.02, 0.01, 0.005), (-30.0, -31.5, -33.0)], ids=["l2", "minus-psnr"])
def test_the_loss_plot_takes_positive_and_negative_losses(tmp_path, losses):
    with open(tmp_path / "log.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LOG_COLUMNS)
        for step, loss in enumerate(losses, 1):
            writer.writerow([step, loss, loss if step == len(losses) else "", 0.1, 1000, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns (and draws nothing) on a log axis of negative values
        plot_losses(tmp_path / "log.csv", tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 0
