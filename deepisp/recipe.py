"""Training recipes: each shipped model's training as a file that `deepisp train --recipe` runs.

Owns everything between a recipe file and the `train()` calls of its stages: finding a recipe (a shipped name,
deepisp/recipes/<name>.toml, or a path to a .toml file), parsing and validating it (one line per bad key, type
or value, a DeepISPError raised before anything trains), the TrainConfig of every stage (command-line
overrides, the ${DATA_ROOT} placeholder, run folders, each stage starting from the previous one's weights),
and running the stages so that the same command, run again, resumes.

The format (TOML):

    description = "..."                 # what the recipe trains (required)
    model = "deepisp_micro_full.pt"     # the shipped weights file it reproduces (the shipped recipes)

    [[stage]]                           # one table per stage, in order; keys and types: TrainConfig's fields
    photos = ["${DATA_ROOT}/cbsd68"]    # photos, data and val_data may start with ${DATA_ROOT}: --data-root
    preset = "micro-full"               # preset and steps: required in every stage
    steps = 8000
    lr = 1e-3

Stage k trains in OUT/stage-<k>. Stage 1 starts from scratch, or from its `init_from`: a checkpoint, or
"<recipe>#<k>", stage k of another shipped recipe, which is then trained first (in OUT/<recipe>/stage-<j>).
Every later stage starts from the previous stage's last.pt (`init_from` is stage 1's key alone). Each run's
TrainConfig.recipe, stored in its checkpoints, is "<recipe>#<k>": the shipped name, or the recipe file's
absolute path. A stage whose last.pt has reached its steps is skipped; one that stopped earlier resumes.
"""

from __future__ import annotations

import difflib
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from deepisp.checkpoint import load_checkpoint
from deepisp.errors import DeepISPError
from deepisp.model.config import PRESETS
from deepisp.options import COMPANDINGS, EXPOSURES, JDD_LOSSES, WHITE_BALANCES
from deepisp.train import PRECISIONS, TrainConfig, check_train_config, train

# TrainConfig fields the runner sets, with why a recipe cannot.
RUNNER_KEYS = {
    "out": "the run folder is --out (stage k trains in OUT/stage-<k>)",
    "recipe": 'the runner records "<recipe>#<stage>" itself',
}
STAGE_KEYS: dict[str, type] = {f.name: type(f.default) for f in fields(TrainConfig) if f.name not in RUNNER_KEYS}
REQUIRED_STAGE_KEYS = ("preset", "steps")
TOP_KEYS: dict[str, type] = {"description": str, "model": str, "stage": list}
# Where a stage's training data comes from: one source, so a command-line --photos, --data or --val-data
# replaces all three of the recipe's.
DATA_KEYS = ("photos", "data", "val_data")
DATA_ROOT = "${DATA_ROOT}"
# "<recipe>#<stage>": what a checkpoint records, and how stage 1's init_from names another recipe's stage.
STAGE_REFERENCE = re.compile(r"(?P<recipe>[\w.-]+)#(?P<stage>[1-9][0-9]*)")
CHOICES: dict[str, tuple[str, ...]] = {
    "preset": tuple(PRESETS),
    "pair": ("low_light", "mimic"),
    "msr_camera": ("panasonic", "canon"),
    "lr_schedule": ("constant", "cosine"),
    "precision": PRECISIONS,
    "white_balance": WHITE_BALANCES,
    "exposure": EXPOSURES,
    "jdd_loss": JDD_LOSSES,
    "compand": COMPANDINGS,
}
KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", tuple: "a list of strings", list: "[[stage]] tables"}

# How a stage is trained: train(config, resume) or a caller's wrapper of it (progress bar, loader workers).
TrainStage = Callable[[TrainConfig, bool], Path]


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. `name` is what checkpoints record (the shipped name or the file's absolute path),
    `where` how messages name it (micro-full.toml, or the path as given)."""

    name: str
    where: str
    description: str
    model: str
    stages: tuple[dict[str, object], ...]

    @property
    def stem(self) -> str:
        """The recipe's short name: its run folders are runs/<stem> by default, OUT/<stem> as another's prerequisite."""
        return Path(self.where).stem


@dataclass(frozen=True)
class Stage:
    """One training run of a recipe: its config (out, recipe label and init_from set) and the stage whose
    last.pt it starts from, if it starts from one."""

    config: TrainConfig
    after: Stage | None

    @property
    def checkpoint(self) -> Path:
        return Path(self.config.out) / "last.pt"


def shipped_folder() -> Traversable:
    """deepisp/recipes/, package data: found the same way in a source tree and in an installed package."""
    return resources.files("deepisp") / "recipes"


def shipped_recipes() -> list[str]:
    """The names of the shipped recipes."""
    return sorted(entry.name.removesuffix(".toml") for entry in shipped_folder().iterdir() if entry.name.endswith(".toml"))


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest of `options`, or ''."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def shown(value: object) -> str:
    """A value as messages show it: a TOML table by its kind (a whole table is no one-line message)."""
    return "a table" if isinstance(value, dict) else repr(value)


def read_recipe(name_or_path: str) -> tuple[str, str, str]:
    """(name, where, TOML text) of a shipped recipe's name or a .toml file's path (anything with a .toml suffix
    or a slash is a path)."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        try:
            return str(path.resolve()), name_or_path, path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DeepISPError(f"recipe {name_or_path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise DeepISPError(f"recipe {name_or_path}: cannot be read as UTF-8 text ({e})") from None
    names = shipped_recipes()
    if name_or_path not in names:
        raise DeepISPError(
            f"unknown recipe {name_or_path!r}{did_you_mean(name_or_path, names)}: the shipped recipes are {', '.join(names)}; or pass a path to a .toml file"
        )
    text = (shipped_folder() / f"{name_or_path}.toml").read_text(encoding="utf-8")
    return name_or_path, f"{name_or_path}.toml", text


def parse_toml(text: str, where: str) -> dict[str, object]:
    """The TOML document, or one line naming the file and the line where it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DeepISPError(f"recipe {where}: not valid TOML: {e}") from None


def load_recipe(name_or_path: str) -> Recipe:
    """A recipe by shipped name or path, parsed and validated."""
    name, where, text = read_recipe(name_or_path)
    return validate_recipe(parse_toml(text, where), name, where)


def validate_recipe(document: Mapping[str, object], name: str, where: str) -> Recipe:
    """The Recipe of a parsed document: its top-level keys, then every stage (validate_stage)."""
    for key, value in document.items():
        if key not in TOP_KEYS:
            hint = " (stage settings go in [[stage]] tables)" if key in STAGE_KEYS else did_you_mean(key, TOP_KEYS)
            raise DeepISPError(f"recipe {where}: unknown key {key!r}{hint}; a recipe has description, model and [[stage]] tables")
        if not isinstance(value, TOP_KEYS[key]):
            raise DeepISPError(f"recipe {where}: {key} must be {KIND_NAMES[TOP_KEYS[key]]}, got {shown(value)}")
    if "description" not in document:
        raise DeepISPError(f"recipe {where}: missing key 'description' (what the recipe trains)")
    stages = document.get("stage", [])
    if not stages:
        raise DeepISPError(f"recipe {where}: no [[stage]] table")
    return Recipe(
        name=name,
        where=where,
        description=str(document["description"]),
        model=str(document.get("model", "")),
        stages=tuple(validate_stage(table, k, f"recipe {where}, stage {k}") for k, table in enumerate(stages, 1)),
    )


def validate_stage(table: object, k: int, where: str) -> dict[str, object]:
    """A stage's values, checked key by key (check_stage_key, typed_value, check_value); ints of float
    fields become floats and lists tuples, as TrainConfig holds them."""
    if not isinstance(table, dict):
        raise DeepISPError(f"{where}: must be a [[stage]] table, got {shown(table)}")
    values = {}
    for key, value in table.items():
        check_stage_key(key, k, where)
        values[key] = typed_value(key, value, where)
        check_value(key, values[key], where)
    missing = [key for key in REQUIRED_STAGE_KEYS if key not in values]
    if missing:
        raise DeepISPError(f"{where}: missing key {missing[0]!r} (every stage names its {' and '.join(REQUIRED_STAGE_KEYS)})")
    return values


def check_stage_key(key: str, k: int, where: str) -> None:
    """A key a recipe may set in stage k."""
    if key in RUNNER_KEYS:
        raise DeepISPError(f"{where}: {key!r} is not a recipe key: {RUNNER_KEYS[key]}")
    if key not in STAGE_KEYS:
        raise DeepISPError(f"{where}: unknown key {key!r}{did_you_mean(key, STAGE_KEYS)}")
    if key == "init_from" and k > 1:
        raise DeepISPError(f"{where}: init_from is for stage 1 alone: every later stage starts from the previous stage's weights")


def typed_value(key: str, value: object, where: str) -> object:
    """`value` as the type of TrainConfig's field `key` (an int is a number too; bool is not an int)."""
    kind = STAGE_KEYS[key]
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = type(value) is kind
    if not ok:
        raise DeepISPError(f"{where}: {key} must be {KIND_NAMES[kind]}, got {shown(value)}")
    return float(value) if kind is float else tuple(value) if kind is tuple else value


def check_value(key: str, value: object, where: str) -> None:
    """One of the field's choices; in a data path, no placeholder but a leading ${DATA_ROOT}."""
    if key in CHOICES and value not in CHOICES[key]:
        raise DeepISPError(f"{where}: {key} must be one of {', '.join(CHOICES[key])}, got {value!r}{did_you_mean(str(value), CHOICES[key])}")
    for path in as_paths(value) if key in DATA_KEYS else ():
        if "$" in path.removeprefix(DATA_ROOT):
            raise DeepISPError(f"{where}: {key} {path!r}: the one placeholder is {DATA_ROOT} (the --data-root folder), at the start of a path")


def as_paths(value: object) -> tuple[str, ...]:
    """A data key's folders: photos' tuple, data's or val_data's one path ("" none)."""
    return value if isinstance(value, tuple) else (str(value),) if value else ()


def fill_data_root(values: Mapping[str, object], data_root: str | None, where: str) -> dict[str, object]:
    """`values` with ${DATA_ROOT} replaced by `data_root` in their data paths; a clear error when a path needs
    it and --data-root was not given."""
    filled = dict(values)
    for key in DATA_KEYS:
        paths = as_paths(values.get(key))
        under = [p.removeprefix(DATA_ROOT).lstrip("/") for p in paths if p.startswith(DATA_ROOT)]
        if not under:
            continue
        if data_root is None:
            raise DeepISPError(f"{where}: {key} under {DATA_ROOT}: pass --data-root DIR, the folder that holds {', '.join(under)}")
        replaced = tuple(str(Path(data_root, p.removeprefix(DATA_ROOT).lstrip("/"))) if p.startswith(DATA_ROOT) else p for p in paths)
        filled[key] = replaced if key == "photos" else replaced[0]
    return filled


def check_stage_inputs(config: TrainConfig, after: Stage | None, where: str) -> None:
    """Before anything trains: the numbers in range (train.check_train_config), the data folders there, and a
    given init_from checkpoint there."""
    try:
        check_train_config(config, resume=False)
    except DeepISPError as e:
        raise DeepISPError(f"{where}: {e}") from None
    if not config.photos and not config.data:
        raise DeepISPError(f"{where}: no training data: the stage gives neither photos nor data; pass --photos or --data")
    for key in DATA_KEYS:
        for folder in as_paths(getattr(config, key)):
            if not Path(folder).is_dir():
                raise DeepISPError(f"{where}: {key} folder {folder} does not exist")
    if config.init_from and after is None and not Path(config.init_from).is_file():
        raise DeepISPError(f"{where}: init_from checkpoint {config.init_from} does not exist")


def stage_config(values: Mapping[str, object], overrides: Mapping[str, object], data_root: str | None, where: str, **runner: str) -> TrainConfig:
    """A stage's TrainConfig: the recipe's values, the command line's over them (its data, if any, replacing
    the recipe's), and the runner's out, recipe and init_from."""
    dropped = {"init_from", *DATA_KEYS} if overrides.keys() & set(DATA_KEYS) else {"init_from"}
    own = {k: v for k, v in values.items() if k not in dropped}
    return TrainConfig(**{**fill_data_root(own, data_root, where), **overrides, **runner})


def plan(
    recipe: Recipe, out: Path, overrides: Mapping[str, object], data_root: str | None, last: int | None = None, chain: tuple[str, ...] = ()
) -> list[Stage]:
    """The stages that train the recipe (up to stage `last`), in order and checked (check_stage_inputs): those
    of another recipe that its stage 1 starts from, in out/<recipe>/ (prerequisites), then its own, stage k in
    out/stage-<k>. An `init_from` among the overrides is a checkpoint stage 1 starts from instead."""
    overrides = dict(overrides)
    given_start = str(overrides.pop("init_from", ""))
    own_start = str(recipe.stages[0].get("init_from", ""))
    reference = None if given_start else STAGE_REFERENCE.fullmatch(own_start)
    stages = prerequisites(reference, out, overrides, data_root, (*chain, recipe.name), f"recipe {recipe.where}, stage 1") if reference else []
    after = stages[-1] if stages else None
    for k, values in enumerate(recipe.stages[:last], 1):
        where = f"recipe {recipe.where}, stage {k}"
        init_from = str(after.checkpoint) if after else given_start or own_start
        config = stage_config(values, overrides, data_root, where, out=str(out / f"stage-{k}"), recipe=f"{recipe.name}#{k}", init_from=init_from)
        check_stage_inputs(config, after, where)
        after = Stage(config, after)
        stages.append(after)
    return stages


def prerequisites(
    reference: re.Match[str], out: Path, overrides: Mapping[str, object], data_root: str | None, chain: tuple[str, ...], where: str
) -> list[Stage]:
    """The stages of the recipe that `reference` ("<recipe>#<k>") names, up to its stage k, in out/<recipe>/."""
    try:
        other = load_recipe(reference["recipe"])
    except DeepISPError as e:
        raise DeepISPError(f"{where}: init_from {reference[0]!r}: {e}") from None
    k = int(reference["stage"])
    if other.name in chain:
        raise DeepISPError(f"{where}: init_from {reference[0]!r} leads back to recipe {other.where}")
    if k > len(other.stages):
        raise DeepISPError(f"{where}: init_from {reference[0]!r}: recipe {other.where} has {len(other.stages)} stages")
    return plan(other, out / other.stem, overrides, data_root, last=k, chain=chain)


def reached_step(stage: Stage) -> int | None:
    """The step of the stage's last.pt (None: it has none), once that is known to be this stage's run."""
    if not stage.checkpoint.exists():
        return None
    state = load_checkpoint(stage.checkpoint)
    config = state.get("train_config")
    recorded = config.get("recipe", "") if isinstance(config, dict) else ""
    if recorded != stage.config.recipe:
        raise DeepISPError(f"{stage.checkpoint} is not a run of recipe stage {stage.config.recipe} (it records {recorded or 'none'}): pass another --out")
    step = state.get("step")
    # A malformed step resumes into train()'s own error about it.
    return step if isinstance(step, int) else 0


def require_finished(stage: Stage, by: str) -> None:
    """The stage that `by` starts from has reached its steps."""
    step = reached_step(stage)
    if step is None or step < stage.config.steps:
        where = "does not exist" if step is None else f"is at step {step} of {stage.config.steps}"
        raise DeepISPError(f"{by} starts from {stage.config.recipe}'s weights, but {stage.checkpoint} {where}: train that stage first (run without --stage)")


def run_stages(stages: list[Stage], train_stage: TrainStage) -> Path:
    """Train the stages in order: a finished one (its last.pt at its steps) is skipped, a started one resumes.
    Returns the last stage's checkpoint."""
    for stage in stages:
        label = stage.config.recipe
        step = reached_step(stage)
        if step is not None and step >= stage.config.steps:
            print(f"{label}: finished ({stage.checkpoint}, step {step}); skipped", file=sys.stderr)
            continue
        if stage.after is not None:
            require_finished(stage.after, label)
        doing = f"resuming at step {step}" if step is not None else "training" + (f" from {stage.config.init_from}" if stage.config.init_from else "")
        print(f"{label}: {doing} in {stage.config.out}", file=sys.stderr)
        train_stage(stage.config, step is not None)
    return stages[-1].checkpoint


def run_recipe(
    name_or_path: str,
    out: str | None = None,
    overrides: Mapping[str, object] | None = None,
    data_root: str | None = None,
    stage: int | None = None,
    train_stage: TrainStage = train,
) -> Path:
    """`deepisp train --recipe`: train the recipe's stages in `out` (default runs/<recipe>), or only its stage
    `stage`, with `overrides` (TrainConfig fields) over the recipe's values in every stage. Everything is
    checked before the first stage trains. Returns the last stage's checkpoint."""
    recipe = load_recipe(name_or_path)
    stages = plan(recipe, Path(out) if out else Path("runs") / recipe.stem, overrides or {}, data_root)
    if stage is not None:
        if not 1 <= stage <= len(recipe.stages):
            raise DeepISPError(f"--stage {stage}: recipe {recipe.where} has stages 1 to {len(recipe.stages)}")
        stages = [stages[len(stages) - len(recipe.stages) + stage - 1]]
    return run_stages(stages, train_stage)
