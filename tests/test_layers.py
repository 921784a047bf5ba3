"""The house rules of deepisp's imports (README, module map), checked over the source with `ast`: every import,
at module level or inside a function, counts.

1. No import cycles among deepisp's modules.
2. The export never imports the app layer (deepisp.process, deepisp.cli, deepisp.api).
3. The runtime (deepisp.runtime) reads exports but never builds them: of deepisp.export it imports only the
   metadata reader, the graphs' I/O names, the backend registry and the embedded-metadata format.
4. The command's start-up modules (the package, cli, options, arguments, errors, data paths) import, at module level,
   only the standard library and each other: `deepisp --help` loads no torch, numpy or rawpy.
5. What reads exports and plans (the metadata reader, the backend registry, the tile plan, the model config and
   cost, the input contract) and the Android harness load no torch: an app or a phone-side tool reads sidecars
   and plans without the training stack.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

APP_LAYER = {"deepisp.process", "deepisp.cli", "deepisp.api"}
RUNTIME_MAY_READ = {
    "deepisp.export",
    "deepisp.export.metadata",
    "deepisp.export.graph_io",
    "deepisp.export.backends",
    "deepisp.export.embedding",
}
TORCH_FREE = (
    "deepisp.export.metadata",
    "deepisp.export.backends",
    "deepisp.tile_plan",
    "deepisp.model.config",
    "deepisp.model.cost",
    "deepisp.input_contract",
    "android_harness.bench",
    "android_harness.report",
    "android_harness.device_accuracy",
)
START_UP = {"deepisp", "deepisp.cli", "deepisp.options", "deepisp.arguments", "deepisp.errors", "deepisp.data"}


def modules() -> dict[str, Path]:
    found = {}
    for path in (REPO / "deepisp").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Every module name `path` imports (for `from a import b`: a, and a.b in case b is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {t for t in imports(p) if t in mods and t != m} for m, p in mods.items()}


def test_no_import_cycles():
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert cycles == []


def test_export_never_imports_the_app_layer_and_the_runtime_never_builds():
    edges = graph()
    back = {m: sorted(edges[m] & APP_LAYER) for m in edges if m.startswith("deepisp.export") and edges[m] & APP_LAYER}
    assert back == {}
    builds = sorted(t for t in edges["deepisp.runtime"] if t.startswith("deepisp.export") and t not in RUNTIME_MAY_READ)
    assert builds == []


def test_start_up_modules_import_only_the_standard_library_and_each_other():
    mods = modules()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    wrong = {}
    for m in START_UP:
        names = imports(mods[m], top_level_only=True)
        ours = {t for t in names if t in mods}  # (a name imported from one of ours, `deepisp.x.y`, is not a module)
        others = {t for t in names if t.split(".")[0] != "deepisp" and t.split(".")[0] not in stdlib}
        if (ours - START_UP) | others:
            wrong[m] = sorted((ours - START_UP) | others)
    assert wrong == {}


def test_export_readers_plans_and_the_android_harness_load_no_torch():
    script = f"import sys, {', '.join(TORCH_FREE)}; print(sorted(m for m in ('torch', 'tensorflow', 'onnx', 'rawpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"
