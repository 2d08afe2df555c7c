"""The architecture as a test: layers import only downwards, no cycles, Ray in one module.

objectives (the family) <- experiment (the experiment file) <- training (data,
trainer, metrics; no Ray) <- search (spaces, plan, study, trials, tune) <- analysis <-
run_search.py. Every import counts, function-level ones too; `if TYPE_CHECKING:` imports
count as well (a type that points upwards is a design that does).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("objectives", "experiment", "training", "search", "analysis")
LAYERS = (  # bottom first; a module belongs to the longest prefix that names it
    ("objectives",),
    ("experiment",),
    ("training",),
    ("search",),
    ("analysis",),
    ("run_search",),
)
RAY_MODULES = ["search.searcher", "search.tune"]  # Tune and the study actor
MAX_LINES = 320  # "readable in one sitting": about 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    paths = [ROOT / "run_search.py"]
    for package in PACKAGES:
        paths += sorted((ROOT / package).rglob("*.py"))
    return {module_name(p): p for p in paths}


def imports_of(path: Path, name: str) -> set[str]:
    """Every module `path` imports, anywhere in the file, as absolute names."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or module.startswith(prefix + ".")
            if inside and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


MODULES = project_modules()
GRAPH = {
    name: {m for m in imports_of(path, name) if m in MODULES and m != name}
    for name, path in MODULES.items()
}


def test_the_checker_sees_the_project() -> None:
    assert {"objectives.compile", "search.tune", "training.trainer"} <= set(MODULES)
    assert "experiment.config" in GRAPH["training.trainer"]
    assert layer_of("training.trainer") == 2 and layer_of("search.plan") == 3
    assert layer_of("experiment.config") == 1 and layer_of("run_search") == 5


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    mine = layer_of(module)
    assert mine is not None, f"{module} belongs to no layer: add it to LAYERS"
    upward = sorted(m for m in GRAPH[module] if (layer_of(m) or 0) > mine)
    assert not upward, f"{module} (layer {LAYERS[mine]}) imports upwards: {upward}"


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for child in sorted(GRAPH[node]):
            if state.get(child) == 1:
                cycles.append([*path[path.index(child) :], child])
            elif child not in state:
                visit(child, [*path, child])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_one_module_imports_ray() -> None:
    importers = sorted(
        name
        for name, path in MODULES.items()
        if any(m == "ray" or m.startswith("ray.") for m in imports_of(path, name))
    )
    assert importers == RAY_MODULES


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "run_search"))
def test_files_read_in_one_sitting(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines: split it by concept"


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a made-up module of the family importing the search."""
    fake = tmp_path / "bad.py"
    fake.write_text("def f():\n    from search.tune import run_search\n")
    found = imports_of(fake, "objectives.bad")
    assert "search.tune" in found and layer_of("search.tune") > layer_of("objectives.bad")
