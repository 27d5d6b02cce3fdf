"""The documentation stands on its own: no link or path in README.md or docs/ leads outside the repository.

A user who clones the repository has nothing above it, so every relative link must resolve to a file inside the
repository, no link may be an absolute or file: path, and no command or path written in the text may climb out of
the repository (`../something`). Links to public web pages (https://...) are fine.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target) and ![alt](target)
CLIMB = re.compile(r"(?<![\w./-])\.\./[\w.-]+(?:/[\w.-]+)*")  # ../x/y written anywhere in the text


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def outside_links(text: str, folder: Path) -> list[str]:
    """Every link or path of a page (its text, the folder it lives in) that leads outside the repository or to no
    file, with the reason."""
    bad = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.lower().startswith("file:"):
            continue  # https://, mailto: ... (public pages)
        path = target.split("#", 1)[0]
        if target.lower().startswith("file:") or path.startswith("/"):
            bad.append(f"{target}: an absolute path")
        elif path and not _inside(folder / path):
            bad.append(f"{target}: outside the repository")
        elif path and not (folder / path).exists():
            bad.append(f"{target}: no such file")
    for climb in CLIMB.findall(LINK.sub("", text)):  # commands and paths in the text: from the repository root
        if not _inside(ROOT / climb):
            bad.append(f"{climb}: a path outside the repository")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_no_link_leaves_the_repository(page):
    assert outside_links(page.read_text(encoding="utf-8"), page.parent) == []


def test_the_check_finds_links_that_leave():
    """The check itself: each kind of escape is caught, public pages and in-repo links are not."""
    text = ("[ok](guide.md#records) [web](https://example.org/x) [up](../../elsewhere/DESIGN.md) "
            "[abs](/etc/passwd) [gone](missing.md) see `../shared/data/file.parquet`\n")
    found = outside_links(text, ROOT / "docs")
    assert [f.split(":")[0] for f in found] == ["../../elsewhere/DESIGN.md", "/etc/passwd", "missing.md",
                                               "../shared/data/file.parquet"]


def test_docstring_examples_render_as_code():
    """The API reference's griffe extension (docs/doctest_blocks.py) fences each doctest run at its own indent and
    drops the runner's flags."""
    import importlib.util

    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("doctest_blocks", ROOT / "docs" / "doctest_blocks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "Args:\n    x: a number.\n\n>>> f(1)  # doctest: +SKIP\n2\n>>> [f(2)]\n[3]\n\nEnd."
    assert module.fence_doctests(text).splitlines() == [
        "Args:", "    x: a number.", "", "```pycon", ">>> f(1)", "2", ">>> [f(2)]", "[3]", "```", "", "End."]


def test_config_table_is_the_config():
    """docs/api/config.md lists every config key as trendnlp.config declares it (type, default, range, help)."""
    from conftest import load_script

    render = load_script("render_docs")
    page = render.CONFIG_PAGE.read_text(encoding="utf-8")
    table = page.split(render.CONFIG_START)[1].split(render.CONFIG_END)[0].strip()
    assert table == render.config_table(), "docs/api/config.md is out of date: run `python scripts/render_docs.py`"
    assert "| `labels.tau` | float | `0.25` |" in table and "`sales.channels`" in table
