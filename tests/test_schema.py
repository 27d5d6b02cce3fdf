"""The record declared once (trendnlp.data.record_files.schema): the docs table, the Arrow features, the request model and
the readers all follow the one declaration and the channel registry."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trendnlp.data.record_files.channels import CHANNELS
from trendnlp.data.record_files.records import read_records, record_features
from trendnlp.data.record_files.io import RecordError
from trendnlp.data.record_files.schema import field_table, record_fields, record_model, record_schema

REPO = Path(__file__).resolve().parents[1]


def test_docs_table_is_the_declaration():
    page = (REPO / "docs" / "data.md").read_text(encoding="utf-8")
    start, end = "<!-- record-fields:start -->", "<!-- record-fields:end -->"
    assert page.split(start)[1].split(end)[0].strip() == field_table(), (
        "docs/data.md is out of date: run `python scripts/render_docs.py`")
    subprocess.run([sys.executable, str(REPO / "scripts" / "render_docs.py"), "--check"], check=True)


def test_every_channel_is_a_record_field_and_an_arrow_column():
    features = record_features()
    assert list(features) == list(record_fields())
    for name, ch in CHANNELS.items():
        kind = record_schema()[name][0]
        assert kind == ("list[float?]" if ch.nullable else "list[float]")
        assert f"`{name}`" in field_table()


def test_request_model_follows_the_declaration():
    model = record_model()
    assert set(model.model_fields) == set(record_fields())
    assert [n for n, f in model.model_fields.items() if f.is_required()] == ["product_id", "sales"]
    with pytest.raises(Exception, match="orders"):
        model.model_validate({"product_id": "a", "sales": [1], "orders": [float("nan")]})
    with pytest.raises(Exception, match="extra"):
        model.model_validate({"product_id": "a", "sales": [1], "colour": "red"})


def test_category_is_kept():
    recs = read_records([{"product_id": "a", "sales": [1], "category": "mugs"}, {"product_id": "b", "sales": [2]}])
    assert [r["category"] for r in recs] == ["mugs", None]
    with pytest.raises(RecordError, match="category"):
        read_records([{"product_id": "a", "sales": [1], "category": 5}])
