r"""A griffe extension for the API reference (mkdocs.yml): the bare doctest examples of a docstring (`>>>` lines and
their output, as `pytest --doctest-modules` runs them) become fenced Python console blocks, so that Markdown
shows them as code rather than as nested quotes and reference links.

    >>> fence_doctests("Text.\n\n>>> 1 + 1\n2\n\nMore.").splitlines()
    ['Text.', '', '```pycon', '>>> 1 + 1', '2', '```', '', 'More.']
"""
from __future__ import annotations

import re
from typing import Any

import griffe

DOCTEST_FLAGS = re.compile(r"\s*# doctest: .*$")  # for the doctest runner, not the reader


def fence_doctests(text: str) -> str:
    """`text` with every run of doctest lines (from a `>>>` line to the next blank or less indented line) fenced."""
    out: list[str] = []
    indent: str | None = None  # the indentation of the open block; None: no block open
    for line in text.splitlines():
        stripped = line.lstrip()
        if indent is not None and (not stripped or not line.startswith(indent)):
            out.append(indent + "```")
            indent = None
        if indent is None and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(indent + "```pycon")
        out.append(DOCTEST_FLAGS.sub("", line) if indent is not None else line)
    if indent is not None:
        out.append(indent + "```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fence the doctest examples of every docstring griffe reads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
