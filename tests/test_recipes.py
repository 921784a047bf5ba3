"""Training recipes (deepisp.recipe, `deepisp train --recipe`): the shipped recipes are their model cards'
commands and train, stages chain and resume, bad recipes give one-line errors, command-line flags win.

Training runs use the recipes' own presets on tiny data: 2 steps of 2 small crops per stage, from Kodak photos
laid out as the folders the shipped photo recipes name (../shared/data/photos/kodak24).
"""

import re
import shlex
import shutil
import tomllib
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch

from deepisp.checkpoint import SHIPPED, WEIGHTS, load_checkpoint
from deepisp.cli import build_parser, main
from deepisp.errors import DeepISPError
from deepisp.recipe import fill_data_root, load_recipe, plan, run_recipe, shipped_recipes
from deepisp.train import TrainConfig, train
from tests.conftest import REPO, shared_data

TINY = {"steps": 2, "batch": 2, "ckpt_every": 1, "val_every": 1}
# The smallest crops the presets train on: the full-ISP loss needs 72 (MS-SSIM), jdd 32 is plenty.
CROP = {"full": 72, "jdd": 32}
# How each card writes the folder the recipe calls ${DATA_ROOT}.
CARDS = {
    "micro-full": ("deepisp_micro_full.md", "$P"),
    "phone-full": ("deepisp_phone_full.md", "data"),
    "micro-jdd": ("deepisp_micro_jdd.md", "$P"),
    "phone-jdd": ("deepisp_phone_jdd.md", "$P"),
}


def quiet_train(tc: TrainConfig, resume: bool) -> Path:
    torch.set_num_threads(1)  # these tiny steps only lose time to threads, more so on a shared machine
    return train(tc, resume=resume, progress=False)


@pytest.fixture(scope="module")
def photos_root(tmp_path_factory) -> Path:
    """--data-root of the photo recipes: cbsd68, urban100 and sunhays80 holding two Kodak photos each."""
    kodak = sorted(shared_data("photos", "kodak24").glob("*.png"))
    root = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(("cbsd68", "urban100", "sunhays80")):
        (root / name).mkdir()
        for photo in kodak[2 * i : 2 * i + 2]:
            shutil.copy(photo, root / name)
    return root


@pytest.fixture(scope="module")
def s7_data_root(s7_root, tmp_path_factory) -> Path:
    """--data-root of phone-full: its train and validation folders, both the small synthetic S7 set."""
    root = tmp_path_factory.mktemp("s7data")
    for name in ("synthetic-cbsd68-train", "synthetic-cbsd68-val"):
        (root / name).symlink_to(s7_root, target_is_directory=True)
    return root


def data_root(name: str, photos_root: Path, s7_data_root: Path) -> Path:
    return s7_data_root if name == "phone-full" else photos_root


def write_recipe(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return str(path)


def card_train_commands(card: Path) -> list[list[str]]:
    """The `deepisp train` commands of a model card's bash blocks, as argument lists (after `deepisp`); an
    `--init-from <what it was>` placeholder is one argument, and --threads (this machine's cores bound it) is dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", card.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("deepisp train "):
                line = re.sub(r"<([^>]*)>", lambda m: shlex.quote(m[1]), line)
                args = shlex.split(line)[1:]
                if "--threads" in args:
                    del args[args.index("--threads") : args.index("--threads") + 2]
                commands.append(args)
    return commands


def test_the_shipped_recipes_are_the_shipped_models():
    assert shipped_recipes() == sorted(SHIPPED)
    for name in shipped_recipes():
        recipe = load_recipe(name)
        assert recipe.model == SHIPPED[name][0] and (WEIGHTS / recipe.model).is_file()
        assert recipe.description and recipe.name == name


def test_setuptools_ships_the_recipe_files():
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["deepisp"]
    assert "recipes/*.toml" in package_data


@pytest.mark.parametrize("name", sorted(CARDS))
def test_each_recipe_stage_is_its_model_cards_command(name):
    """Key for key, value for value: a recipe stage sets exactly what the card's command gave (its data
    folders as the card writes them), and starts where the card's did."""
    card, root = CARDS[name]
    commands = card_train_commands(WEIGHTS / card)
    recipe = load_recipe(name)
    assert len(commands) == len(recipe.stages)
    keys = {f.name for f in fields(TrainConfig)} - {"out", "init_from"}
    for k, (command, values) in enumerate(zip(commands, recipe.stages), 1):
        given = vars(build_parser().parse_args(command))
        from_card = {key: tuple(v) if key == "photos" else v for key, v in given.items() if key in keys and v is not None}
        assert fill_data_root({key: v for key, v in values.items() if key != "init_from"}, root, "") == from_card, f"stage {k}"
        assert (given["init_from"] is not None) == (k > 1 or "init_from" in values), f"stage {k}"
    start = recipe.stages[0].get("init_from")
    if start:  # "micro-jdd#4": the card's placeholder names that stage
        other, stage = str(start).split("#")
        assert f"{other} stage {stage}" in vars(build_parser().parse_args(commands[0]))["init_from"]


@pytest.mark.parametrize("name", sorted(CARDS))
def test_each_shipped_recipe_trains_stage_after_stage(name, photos_root, s7_data_root, tmp_path):
    """Every stage of the recipe (and of the recipe phone-jdd starts from) with its own preset, on tiny data:
    each in its run folder, from the previous stage's weights, recording its recipe stage."""
    mode = "jdd" if name.endswith("jdd") else "full"
    out = tmp_path / "run"
    last = run_recipe(name, str(out), {**TINY, "crop": CROP[mode]}, str(data_root(name, photos_root, s7_data_root)), train_stage=quiet_train)
    recipe = load_recipe(name)
    assert last == out / f"stage-{len(recipe.stages)}" / "last.pt"
    for k in range(1, len(recipe.stages) + 1):
        state = load_checkpoint(out / f"stage-{k}" / "last.pt")
        config = state["train_config"]
        assert state["step"] == 2 and config["recipe"] == f"{name}#{k}" and config["preset"] == recipe.stages[k - 1]["preset"]
        if k > 1:
            assert config["init_from"] == str(out / f"stage-{k - 1}" / "last.pt")
    if name == "phone-jdd":  # grown from micro-jdd's stage 4, trained first in OUT/micro-jdd
        assert load_checkpoint(out / "stage-1" / "last.pt")["train_config"]["init_from"] == str(out / "micro-jdd" / "stage-4" / "last.pt")
        assert sorted(p.name for p in (out / "micro-jdd").iterdir()) == [f"stage-{k}" for k in range(1, 5)]


TINY_RECIPE = """
description = "three tiny jdd stages"

[[stage]]
photos = ["${DATA_ROOT}/cbsd68"]
preset = "tiny-jdd"
steps = 2
crop = 32
batch = 2

[[stage]]
photos = ["${DATA_ROOT}/cbsd68"]
preset = "tiny-jdd"
steps = 4
crop = 32
batch = 2
lr = 1e-4

[[stage]]
photos = ["${DATA_ROOT}/urban100"]
preset = "tiny-jdd"
steps = 2
crop = 32
batch = 2
"""


def test_a_rerun_skips_finished_stages_and_resumes_an_interrupted_one(photos_root, tmp_path):
    recipe = write_recipe(tmp_path, TINY_RECIPE)
    out = tmp_path / "run"
    calls = []

    def stopping_at_step_2(tc: TrainConfig, resume: bool) -> Path:
        if tc.recipe.endswith("#2"):  # an interrupted stage 2: its last.pt stops at step 2 of 4
            return quiet_train(replace(tc, steps=2), resume)
        return quiet_train(tc, resume)

    def recording(tc: TrainConfig, resume: bool) -> Path:
        calls.append((tc.recipe.rsplit("#")[1], resume))
        return quiet_train(tc, resume)

    with pytest.raises(DeepISPError, match=r"mine.toml#3 starts from .*#2's weights, but .*stage-2/last.pt is at step 2 of 4"):
        run_recipe(recipe, str(out), data_root=str(photos_root), train_stage=stopping_at_step_2)
    with pytest.raises(DeepISPError, match=r"stage-2/last.pt is at step 2 of 4: train that stage first"):
        run_recipe(recipe, str(out), data_root=str(photos_root), stage=3, train_stage=recording)
    assert calls == []
    run_recipe(recipe, str(out), data_root=str(photos_root), train_stage=recording)
    assert calls == [("2", True), ("3", False)]  # stage 1 finished: skipped; stage 2 resumed; stage 3 new
    third = load_checkpoint(out / "stage-3" / "last.pt")["train_config"]
    assert third["recipe"] == f"{Path(recipe).resolve()}#3" and third["init_from"] == str(out / "stage-2" / "last.pt")
    assert load_checkpoint(out / "stage-2" / "last.pt")["step"] == 4
    calls.clear()
    run_recipe(recipe, str(out), data_root=str(photos_root), train_stage=recording)
    run_recipe(recipe, str(out), {"steps": 3}, data_root=str(photos_root), stage=3, train_stage=recording)
    assert calls == [("3", True)]  # all finished, then stage 3 alone continued to a longer total
    with pytest.raises(DeepISPError, match=r"stage-1/last.pt is not a run of recipe stage micro-jdd#1 \(it records .*mine.toml#1\)"):
        run_recipe("micro-jdd", str(out), data_root=str(photos_root), train_stage=recording)


def test_command_line_flags_override_the_recipe_in_every_stage(photos_root, tmp_path):
    kodak = shared_data("photos", "kodak24")
    out = tmp_path / "run"
    flags = ["--steps", "2", "--batch", "2", "--crop", "32", "--lr", "5e-4", "--quiet", "--threads", "1"]
    assert main(["train", "--recipe", "micro-jdd", "--data-root", str(photos_root), "--out", str(out), "--stage", "1", *flags]) == 0
    config = load_checkpoint(out / "stage-1" / "last.pt")["train_config"]
    assert (config["lr"], config["steps"], config["crop"]) == (5e-4, 2, 32)  # the command line's
    assert (config["lr_schedule"], config["val_every"], config["preset"]) == ("cosine", 500, "micro-jdd")  # the recipe's
    assert list(config["photos"]) == [str(photos_root / name) for name in ("cbsd68", "urban100", "sunhays80")]
    # --photos replaces the recipe's data, in every stage (and no --data-root is needed then).
    args = ["train", "--recipe", "micro-jdd", "--photos", str(kodak), "--preset", "tiny-jdd", "--out", str(tmp_path / "tiny"), "--stage", "1", *flags]
    assert main(args) == 0
    config = load_checkpoint(tmp_path / "tiny" / "stage-1" / "last.pt")["train_config"]
    assert list(config["photos"]) == [str(kodak.resolve())] and config["preset"] == "tiny-jdd" and config["recipe"] == "micro-jdd#1"
    # --init-from is where stage 1 starts: phone-jdd then trains no micro-jdd stages first.
    start = str(WEIGHTS / SHIPPED["micro-jdd"][0])
    stages = plan(load_recipe("phone-jdd"), tmp_path / "p", {"init_from": start}, str(photos_root))
    own = [f"phone-jdd#{k}" for k in range(1, len(load_recipe("phone-jdd").stages) + 1)]
    assert [s.config.recipe for s in stages] == own and stages[0].config.init_from == start


def test_the_help_names_every_shipped_recipe_and_the_override_rule(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in shipped_recipes())
    assert "overrides the recipe's value in every stage" in text


def test_recipe_flags_need_a_recipe_and_a_recipe_resumes_by_itself(tmp_path, capsys, monkeypatch):
    assert main(["train", "--photos", str(tmp_path), "--stage", "2", "--out", str(tmp_path / "x")]) == 2
    assert main(["train", "--recipe", "micro-full", "--resume"]) == 2
    assert main(["train", "--recipe", "micro-ful", "--out", str(tmp_path / "x")]) == 2
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun
    assert main(["train", "--recipe", "micro-full", "--out", str(tmp_path / "x")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "error: --data-root and --stage are for --recipe runs",
        "error: --recipe resumes by itself: run the same command again, without --resume",
        "error: unknown recipe 'micro-ful' (did you mean 'micro-full'?): the shipped recipes are micro-full, micro-jdd, phone-full, phone-jdd; "
        "or pass a path to a .toml file",
        "error: under torchrun, --recipe trains one stage per launch: add --stage K, K = 1, 2, ... in turn",
    ]


STAGE = '[[stage]]\npreset = "tiny-jdd"\nsteps = 2\n'
BAD_RECIPES = [
    ('description = "x"\n' + STAGE + STAGE + "lrr = 1e-3\n", "stage 2: unknown key 'lrr' (did you mean 'lr'?)"),
    ('description = "x"\n[[stage]]\npreset = "tiny-jdd"\nsteps = "8000"\n', "stage 1: steps must be an integer, got '8000'"),
    ('description = "x"\n' + STAGE + "lr = true\n", "stage 1: lr must be a number, got True"),
    ('description = "x"\n' + STAGE + 'photos = "a"\n', "stage 1: photos must be a list of strings, got 'a'"),
    ('description = "x"\n' + STAGE + 'lr_schedule = "cosin"\n', "stage 1: lr_schedule must be one of constant, cosine, got 'cosin' (did you mean 'cosine'?)"),
    (
        'description = "x"\n' + STAGE + STAGE + 'init_from = "a.pt"\n',
        "stage 2: init_from is for stage 1 alone: every later stage starts from the previous stage's weights",
    ),
    ('description = "x"\n' + STAGE + 'out = "runs/a"\n', "stage 1: 'out' is not a recipe key: the run folder is --out (stage k trains in OUT/stage-<k>)"),
    ('description = "x"\n' + STAGE + 'photos = ["$P/cbsd68"]\n', "stage 1: photos '$P/cbsd68': the one placeholder is ${DATA_ROOT}"),
    ('description = "x"\n[[stage]]\nsteps = 2\n', "stage 1: missing key 'preset' (every stage names its preset and steps)"),
    ('description = "x"\n[stage]\npreset = "tiny-jdd"\n', ": stage must be [[stage]] tables, got a table"),
    ('description = "x"\npreset = "tiny-jdd"\n' + STAGE, ": unknown key 'preset' (stage settings go in [[stage]] tables)"),
    ('descripton = "x"\n' + STAGE, ": unknown key 'descripton' (did you mean 'description'?)"),
    ('description = "x"\n', ": no [[stage]] table"),
    ('model = "a.pt"\n' + STAGE, ": missing key 'description' (what the recipe trains)"),
    ('description = "x"\n' + STAGE + "steps = 3\n", ": not valid TOML: Cannot overwrite a value (at line 5, column 10)"),
    (
        'description = "x"\n[[stage]]\npreset = "tiny-jdd"\nsteps = 2\nlr = 1e-3 2\n',
        ": not valid TOML: Expected newline or end of document after a statement (at line 5, column 11)",
    ),
]


@pytest.mark.parametrize("text, message", BAD_RECIPES, ids=[m.split(":")[1].strip()[:40] for _, m in BAD_RECIPES])
def test_a_bad_recipe_is_one_line_naming_the_file_the_stage_and_the_key(tmp_path, text, message):
    path = write_recipe(tmp_path, text)
    with pytest.raises(DeepISPError) as error:
        load_recipe(path)
    assert str(error.value).startswith(f"recipe {path}") and message in str(error.value) and "\n" not in str(error.value)


def test_data_the_recipe_needs_is_checked_before_any_stage_trains(photos_root, tmp_path):
    with pytest.raises(
        DeepISPError,
        match=r"^recipe micro-full.toml, stage 1: photos under \$\{DATA_ROOT\}: pass --data-root DIR, the folder that holds cbsd68, urban100, sunhays80$",
    ):
        run_recipe("micro-full", str(tmp_path / "a"), train_stage=quiet_train)
    with pytest.raises(DeepISPError, match=r"^recipe phone-full.toml, stage 1: data folder .*/synthetic-cbsd68-train does not exist$"):
        run_recipe("phone-full", str(tmp_path / "b"), data_root=str(photos_root), train_stage=quiet_train)
    text = TINY_RECIPE.replace('photos = ["${DATA_ROOT}/urban100"]', 'photos = ["${DATA_ROOT}/urban100"]\nlr = 2.0')
    with pytest.raises(DeepISPError, match=r"mine.toml, stage 3: --lr must be in \[0, 1\), got 2.0$"):
        run_recipe(write_recipe(tmp_path, text), str(tmp_path / "c"), data_root=str(photos_root), train_stage=quiet_train)
    count = len(load_recipe("micro-jdd").stages)
    with pytest.raises(DeepISPError, match=rf"^recipe phone-jdd.toml, stage 1: init_from 'micro-jdd#{count + 1}': recipe micro-jdd.toml has {count} stages$"):
        plan(replace(load_recipe("phone-jdd"), stages=({"init_from": f"micro-jdd#{count + 1}"},)), tmp_path, {}, None)
    assert not any((tmp_path / name).exists() for name in "abc")
