"""The package's layering: a module may import its own stage and the stages below it, never one above;
no import cycles between modules; no file over MAX_LINES lines.

Walks every module's imports with `ast` (function-level imports included; nothing is executed).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trendnlp"
# lowest first; labels, config, the shipped configs, errors, the option types and the output guards share the
# ground floor
ORDER = {"labels": 0, "config": 0, "configs": 0, "errors": 0, "options": 0, "outputs": 0, "data": 1, "model": 2,
         "evaluation": 3, "training": 4, "inference": 5, "benchmark": 6, "cli": 7, "__main__": 7}


def stage_of(module: str) -> str | None:
    """`trendnlp.data.record_files.records` -> "data"; `trendnlp` (the package API) -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "trendnlp" and len(parts) > 1 else None


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, own: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every trendnlp import in `source`, the module named `own`."""
    tree = ast.parse(source)
    package = own if is_package else own.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from trendnlp import data` names a stage too
            if target == "trendnlp":
                found += [(node.lineno, f"trendnlp.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name == "trendnlp" or name.startswith("trendnlp.")]


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_stage_is_known():
    stages = {stage_of(module_name(p)) for p in MODULES} - {None}
    assert stages <= set(ORDER), f"modules outside the known stages: {stages - set(ORDER)}; add them to ORDER"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_imports_a_stage_above_its_own(path):
    own = stage_of(module_name(path))
    if own is None:  # trendnlp/__init__.py re-exports the public API lazily
        return
    upward = []
    source = path.read_text(encoding="utf-8")
    for line, name in imported_modules(source, module_name(path), path.name == "__init__.py"):
        target = stage_of(name)
        if target is None:
            # the package root pulls in the public API (TrendClassifier, a model-stage name)
            if ORDER[own] < ORDER["model"]:
                upward.append(f"line {line}: {name}")
        elif ORDER[target] > ORDER[own]:
            upward.append(f"line {line}: {name} ({target} is above {own})")
    assert not upward, f"{path.relative_to(PACKAGE.parent)} imports upward: " + "; ".join(upward)


def test_the_walker_sees_function_level_and_relative_imports():
    source = "import os\nfrom .sibling import x\n\ndef f():\n    from trendnlp.training import train\n"
    assert imported_modules(source, "trendnlp.data.probe") == [(2, "trendnlp.data.sibling"), (5, "trendnlp.training")]
    assert imported_modules("from ..model import classifier\n", "trendnlp.data.probe") == [(1, "trendnlp.model")]


def test_public_imports_still_work():
    import trendnlp
    from trendnlp import LABELS, LabelRule, TrendClassifier, TrendConfig  # noqa: F401

    assert TrendClassifier.__module__ == "trendnlp.model.classifier"
    assert set(trendnlp.__all__) >= {"TrendClassifier", "TrendConfig", "LabelRule", "LABELS"}


def _import_graph() -> dict[str, set[str]]:
    """module -> the trendnlp modules it imports (a `from pkg import name` that names a submodule counts as it)."""
    names = {module_name(p) for p in MODULES}
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        own = module_name(path)
        targets = set()
        for _, name in imported_modules(path.read_text(encoding="utf-8"), own, path.name == "__init__.py"):
            while name and name not in names:  # `trendnlp.model.classifier.TrendClassifier` -> its module
                name = name.rpartition(".")[0]
            if name and name != own:
                targets.add(name)
        graph[own] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    cycle = find_cycle(_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


MAX_LINES = 400
OVERSIZED_ELSEWHERE: set[str] = set()  # files allowed over MAX_LINES, each with the reason beside it: none now


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_files_stay_small(path):
    rel = str(path.relative_to(PACKAGE))
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES or rel in OVERSIZED_ELSEWHERE, f"{rel}: {n} lines (> {MAX_LINES}); split it by job"
