"""scripts/ holds what a user or maintainer runs: no two scripts import each other (directly or round a longer
circle), and nothing there imports a past experiment of scripts/experiments/.

Reads every script's imports with `ast` (function-level imports and the Python inside the shell scripts'
heredocs included; nothing is executed).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# a shell script's embedded Python: `python - <<'EOF'` ... EOF
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?\n(.*?)\n\1\n", re.S)


def python_sources(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [text] if path.suffix == ".py" else [body for _, body in HEREDOC.findall(text)]


def imported_scripts(path: Path, names: set[str]) -> set[str]:
    """The scripts (by module name, from `names`) that the file at `path` imports."""
    found = set()
    for source in python_sources(path):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found & (names - {path.stem})


def import_graph() -> dict[str, set[str]]:
    files = sorted(p for p in SCRIPTS.rglob("*") if p.suffix in (".py", ".sh"))
    names = {p.stem for p in files if p.suffix == ".py"}
    return {str(p.relative_to(SCRIPTS)): imported_scripts(p, names) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle among the Python scripts (module name -> imported module names)."""
    edges = {Path(k).stem: v for k, v in graph.items() if k.endswith(".py")}
    found = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                found.append(path[path.index(nxt):] + [nxt])
            else:
                visit(nxt, path + [nxt])

    for start in sorted(edges):
        visit(start, [start])
    return found


def test_no_import_circle_between_scripts():
    assert cycles(import_graph()) == []


def test_the_circle_check_finds_one():
    assert cycles({"a.py": {"b"}, "b.py": {"c"}, "c.py": {"a"}, "d.py": set()})[0] == ["a", "b", "c", "a"]


def test_no_script_imports_an_experiment():
    graph = import_graph()
    experiments = {Path(k).stem for k in graph if k.startswith("experiments/")}
    kept = {k: v & experiments for k, v in graph.items() if not k.startswith("experiments/")}
    assert {k: v for k, v in kept.items() if v} == {}
