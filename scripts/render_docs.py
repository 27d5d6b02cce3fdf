"""Render the record field table of docs/data.md from the declaration (trendnlp.data.schema.field_table).

    python scripts/render_docs.py           rewrite the table between the page's record-fields markers
    python scripts/render_docs.py --check   exit 1 when the page is out of date (tests/test_schema.py runs it)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "data.md"
START, END = "<!-- record-fields:start -->", "<!-- record-fields:end -->"


def rendered(page: str) -> str:
    """The page with the table between its markers replaced by the declaration's."""
    from trendnlp.data.schema import field_table

    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{field_table()}\n{END}{tail}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only check; exit 1 when docs/data.md is out of date")
    args = p.parse_args()
    page = PAGE.read_text(encoding="utf-8")
    new = rendered(page)
    if args.check:
        if new != page:
            print(f"{PAGE} is out of date: run python scripts/render_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new, encoding="utf-8")
    print(f"wrote the record field table of {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
