"""Render the tables the docs take from the code: the record fields of docs/data.md (from the declaration,
trendnlp.data.record_files.schema.field_table) and the config keys of docs/api/config.md (from the pydantic config models:
type, default, range and help text of every key).

    python scripts/render_docs.py           rewrite each table between its page's markers
    python scripts/render_docs.py --check   exit 1 when a page is out of date (tests/test_schema.py and
                                            tests/test_docs.py run it)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "data.md"
START, END = "<!-- record-fields:start -->", "<!-- record-fields:end -->"
CONFIG_PAGE = REPO / "docs" / "api" / "config.md"
CONFIG_START, CONFIG_END = "<!-- config-keys:start -->", "<!-- config-keys:end -->"
_RANGES = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def rendered(page: str, table: str | None = None, start: str = START, end: str = END) -> str:
    """The page with the table between its markers replaced (default: the record declaration's)."""
    if table is None:
        from trendnlp.data.record_files.schema import field_table

        table = field_table()
    head, rest = page.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{table}\n{end}{tail}"


def config_table() -> str:
    """One row per config key, `section.key`, with its type, default, allowed range and help text."""
    from trendnlp.config import TrendConfig

    def cell(text: object) -> str:
        return str(text).replace("typing.", "").replace("|", "\\|").replace("\n", " ")

    rows = ["| key | type | default | what it sets |", "|---|---|---|---|"]
    for section, part in TrendConfig.model_fields.items():
        for key, field in part.annotation.model_fields.items():
            kind = getattr(field.annotation, "__name__", None) if isinstance(field.annotation, type) else None
            limits = [f"{op} {getattr(m, attr)}" for m in field.metadata for attr, op in _RANGES
                      if getattr(m, attr, None) is not None]
            help_ = field.description + (f" ({', '.join(limits)})" if limits else "")
            default = field.get_default(call_default_factory=True)
            rows.append(f"| `{section}.{key}` | {cell(kind or field.annotation)} | `{cell(repr(default))}` | "
                        f"{cell(help_)} |")
    return "\n".join(rows)


def pages() -> dict[Path, str]:
    """Each page the script renders -> its text with the tables as the code declares them now."""
    return {PAGE: rendered(PAGE.read_text(encoding="utf-8")),
            CONFIG_PAGE: rendered(CONFIG_PAGE.read_text(encoding="utf-8"), config_table(), CONFIG_START, CONFIG_END)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only check; exit 1 when a page is out of date")
    args = p.parse_args()
    stale = [page for page, new in pages().items() if new != page.read_text(encoding="utf-8")]
    if args.check:
        for page in stale:
            print(f"{page} is out of date: run python scripts/render_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for page, new in pages().items():
        page.write_text(new, encoding="utf-8")
        print(f"wrote the table of {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
