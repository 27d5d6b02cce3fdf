"""scripts/text_signal_check.py: where a title word decides the trend, the text branch finds it and sales cannot."""
from __future__ import annotations

from pathlib import Path

import yaml

from conftest import load_script


def test_synthetic_records_carry_the_signal_in_the_title_only():
    check = load_script("text_signal_check")
    records = check.make_records(n_products=60, seed=1)
    by_signal: dict[str, list[str]] = {}
    for r in records:
        by_signal.setdefault(check.signal_of(r), []).append(r["label"])
    assert set(by_signal) == {"viral", "clearance", "none"}
    assert by_signal["viral"].count("rising") / len(by_signal["viral"]) > 0.95
    assert by_signal["clearance"].count("falling") / len(by_signal["clearance"]) > 0.95
    assert len(set(by_signal["none"])) == 3  # no word: every trend occurs
    parts = check.split_by_product(records)
    ids = {k: {r["product_id"] for r in v} for k, v in parts.items()}
    assert not ids["train"] & ids["test"] and not ids["validation"] & ids["test"]


def test_text_branch_finds_the_word_that_sales_cannot(tiny_bert_dir, tmp_path):
    """Tiny random BERT, neural kind: with text the titled products are labelled well; without, near chance."""
    check = load_script("text_signal_check")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "text": {"base_model": tiny_bert_dir, "max_length": 16, "finetune": "full"},
        "sales": {"history": 26, "hidden_size": 16},
        "fusion": {"hidden_size": 32},
        "model": {"kind": "neural"},
        "train": {"epochs": 6, "batch_size": 32, "lr": 3e-3, "encoder_lr": 3e-3, "log_with": "none"},
    }), encoding="utf-8")
    rows = check.run(config, Path(tmp_path / "run"), n_products=120)
    with_text, without = (next(r for r in rows if r["text"] is t) for t in (True, False))
    assert with_text["signal"] >= 0.85, rows
    assert without["signal"] <= 0.6, rows
    assert "| on |" in check.table(rows)
