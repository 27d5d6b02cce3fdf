"""Explanations (trendnlp.model.explain): baselines, Shapley split, Integrated Gradients, words, reviews,
faithfulness on a trained model, the CLI's JSONL + HTML and the HTML in headless Chromium."""
from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess

import numpy as np
import pytest
import torch

from trendnlp.cli import main as cli_main
from trendnlp.config import TrendConfig
from trendnlp.data.inputs.features import build_text
from trendnlp.data.record_files.io import write_records
from trendnlp.data.record_files.records import read_records
from trendnlp.evaluation.faithfulness import deletion_check
from trendnlp.data.inputs.sales_stats import sales_inputs
from trendnlp.model.explain import _Batch, explain
from trendnlp.model.classifier import TrendClassifier
from conftest import train_tiny

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def trained(tiny_config, data_files, tmp_path_factory):
    """A tiny fused (gated) model trained 3 epochs on the synthetic records, whose sales carry the trend."""
    d = tmp_path_factory.mktemp("explain")
    train_tiny(tiny_config, data_files, d / "run", epochs=3, batch_size=16, lr=5e-3)
    return TrendClassifier.from_pretrained(d / "run" / "model"), read_records(data_files["validation"]), d / "run"


def test_differentiable_sales_features_equal_the_collators(tiny_config, sample_records):
    clf = TrendClassifier(tiny_config)
    recs = copy.deepcopy(sample_records[:40])  # short histories, all-zero sales and long ones
    recs[0]["sales"] = [0.5, 0.0, 2.25]  # fractional units
    b = _Batch(clf, read_records(recs))
    c = clf.config
    sales, summary = sales_inputs(b.z, b.mask, b.extra, c.sales.scaling, c.sales.history, c.labels.K, c.labels.alpha)
    want = clf.make_collator().sales(read_records(recs))
    assert torch.allclose(sales, want["sales"], atol=1e-5)
    assert torch.allclose(summary, want["summary"], atol=1e-4)


def test_explanation_matches_the_model_and_its_baselines(trained):
    clf, recs, _ = trained
    recs = recs[:24]
    ex = explain(clf, recs)
    json.dumps(ex)  # JSON-ready for the HTTP server
    probs = clf.predict_proba(recs)
    assert np.allclose([[e["probabilities"][c] for c in clf.labels] for e in ex], probs, atol=1e-5)
    assert [e["label"] for e in ex] == clf.predict(recs)
    # coalition values are the model's own log-probabilities on the documented baseline records
    no_text = [{**r, "title": "", "description": "", "reviews": []} for r in recs]
    no_sales = [{**r, "sales": [0.0] * len(r["sales"])} for r in recs]
    neither = [{**r, "sales": [0.0] * len(r["sales"])} for r in no_text]
    for key, variant in (("sales", no_text), ("text", no_sales), ("none", neither)):
        p = clf.predict_proba(variant)
        got = [e["shapley"]["coalitions"][key] for e in ex]
        want = [np.log(p[i, clf.labels.index(e["label"])]) for i, e in enumerate(ex)]
        assert np.allclose(got, want, atol=1e-4), key
    for e in ex:
        sh = e["shapley"]
        assert sh["text"] + sh["sales"] == pytest.approx(sh["value"] - sh["base"], abs=1e-5)
        assert 0 < e["gate"] < 1
        assert len(e["sales_saliency"]) == len(e["period_ends"])
        assert all(p["saliency"] > 0 for p in e["top_periods"])


def test_integrated_gradients_are_complete(trained, tiny_config, sample_records):
    """The sales saliency sums to the change of log p_c along its path: small completeness errors."""
    clf, recs, _ = trained
    ex = explain(clf, recs, sales_steps=32)
    assert max(abs(e["ig_delta"]["sales"]) for e in ex) < 0.02
    # without summary statistics there is no zero-share step: saliency sums to v(text, sales) - v(text)
    raw = tiny_config.to_dict()
    raw["sales"]["summary_stats"] = False
    torch.manual_seed(0)
    smooth = TrendClassifier(TrendConfig.from_dict(raw)).eval()
    for e in explain(smooth, sample_records[:20], sales_steps=64):
        gap = e["shapley"]["coalitions"]["text+sales"] - e["shapley"]["coalitions"]["text"]
        assert sum(e["sales_saliency"]) == pytest.approx(gap, abs=2e-3 + 0.02 * abs(gap))


def test_top_words_come_from_the_text_and_dedupe_is_exact_for_one_record_per_text(trained):
    clf, recs, _ = trained
    one_per_product = list({r["product_id"]: r for r in recs}.values())[:8]
    a = explain(clf, one_per_product)
    b = explain(clf, one_per_product, dedupe_text=False)
    for r, ea, eb in zip(one_per_product, a, b):
        text = build_text(r, clf.config.text).lower()
        if text.strip():
            assert ea["top_words"] and all(w["word"] in text for w in ea["top_words"])
            assert np.allclose([w["attribution"] for w in ea["top_words"]],
                               [w["attribution"] for w in eb["top_words"]], atol=1e-5)
            assert abs(ea["ig_delta"]["text"]) < 0.1
        else:
            assert ea["top_words"] == []


def test_most_influential_review_is_the_one_whose_removal_moves_p_most(trained):
    clf, recs, _ = trained
    with_reviews = [r for r in recs if len(r["reviews"]) >= 2][:4]
    assert with_reviews
    for r, e in zip(with_reviews, explain(clf, with_reviews)):
        c = clf.labels.index(e["label"])
        changes = [e["probabilities"][e["label"]] - clf.predict_proba({**r, "reviews": r["reviews"][:j] +
                                                                       r["reviews"][j + 1:]})[0, c]
                   for j in range(min(len(r["reviews"]), clf.config.text.max_reviews))]
        best = int(np.argmax(np.abs(changes)))
        assert e["review"]["index"] == best and e["review"]["change"] == pytest.approx(changes[best], abs=1e-5)


def test_deleting_salient_weeks_moves_the_prediction_more_than_random_weeks(trained, sample_records):
    clf, _, _ = trained
    recs = read_records(sample_records)  # all 200 (train and validation): the model's behaviour is explained
    ex = explain(clf, recs)
    result = deletion_check(clf, recs, ex, k=4, n_random=5, seed=0)
    print(result)
    assert result["n"] >= 100
    assert result["salient_drop"] > result["random_drop"] + 0.01
    assert result["salient_abs_change"] > result["random_abs_change"]


def test_explain_cli_writes_jsonl_and_an_html_page_chromium_renders(trained, tmp_path):
    clf, recs, run = trained
    src = tmp_path / "recs.jsonl"
    write_records(recs[:6], src)
    out, page = tmp_path / "ex.jsonl", tmp_path / "ex.html"
    assert cli_main(["explain", "--model", str(run / "model"), "--input", str(src), "--output", str(out),
                     "--html", str(page)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [e["product_id"] for e in lines] == [r["product_id"] for r in recs[:6]]
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 6
    if CHROMIUM is None:
        pytest.skip("chromium not installed")
    from matplotlib.image import imread

    shot = tmp_path / "page.png"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}"]
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1100,1400", page.resolve().as_uri()],
                   check=True, timeout=120, capture_output=True)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1400, 1100) and pixels.std() > 0.05
    dom = subprocess.run([*common, "--dump-dom", page.resolve().as_uri()], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    assert dom.count("<img") == 6 and recs[0]["product_id"] in dom


def test_word_pieces_merge_by_word_ids_for_any_fast_tokenizer():
    """A BPE tokenizer marks no continuation pieces with "##": word_ids() still joins them into words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from trendnlp.model.words import merge_word_pieces as _merge_words, words_of as _words_of

    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    bpe.train_from_iterator(["glow mug red lamp ing s"] * 10, trainers.BpeTrainer(special_tokens=["[UNK]", "[PAD]"]))
    tokz = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", pad_token="[PAD]")
    text = "glowing mugs"
    ids = tokz(text)["input_ids"]
    assert len(ids) > 2  # the words are split into pieces
    values = np.arange(1, len(ids) + 1, dtype=float)
    words = _words_of(tokz, text, ids, values, np.zeros(len(ids), dtype=bool), 32)
    assert [w["word"] for w in words] == ["glowing", "mugs"]
    assert sum(w["attribution"] for w in words) == pytest.approx(values.sum())
    # the "##" rule alone would have split them into pieces
    assert len(_merge_words(tokz.convert_ids_to_tokens(ids), values, np.zeros(len(ids), dtype=bool))) > 2


@pytest.mark.parametrize("option, value, words", [
    ("--top-words", "-1", "expected a whole number >= 0, found '-1'"),  # was: exit 0, 27-29 words per record
    ("--batch-size", "0", "expected a whole number >= 1, found '0'"),  # was: "range() arg 3 must not be zero"
    ("--limit", "-1", "expected a whole number >= 0, found '-1'"),  # was: 4 of 5 records explained
    ("--text-steps", "x", "expected a whole number in 0..1,024, found 'x'"),
])
def test_bad_explain_options_are_one_line_before_the_model_loads(tmp_path, capsys, option, value, words):
    from conftest import cli_error

    out = tmp_path / "e.jsonl"
    err = cli_error(["explain", "--model", tmp_path / "no_model", "--input", tmp_path / "no.jsonl", "--output", out,
                     "--html", tmp_path / "e.html", option, value], capsys)
    assert err.startswith(f"trendnlp explain: error: argument {option}: {words}") and not out.exists()


# ---- histories with nothing to attribute: finite JSON, drawn, the same over HTTP ---------------------------
EMPTY_HISTORIES = [
    {"product_id": "zeros", "sales": [0.0] * 12, "cutoff": "2011-06-05", "title": "plain mug"},
    {"product_id": "zeros-no-text", "sales": [0.0] * 8, "cutoff": "2011-06-05"},
    {"product_id": "constant", "sales": [3.0] * 10, "cutoff": "2011-06-05", "title": "lamp"},
    {"product_id": "one-period", "sales": [5.0], "cutoff": "2011-06-05"},
    {"product_id": "one-zero", "sales": [0.0]},
]


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, float):
        yield obj


def _strict_json(line: str):
    """json.loads that refuses NaN / Infinity (they are not JSON)."""
    def refuse(token):
        raise ValueError(f"{token} is not JSON")
    return json.loads(line, parse_constant=refuse)


@pytest.fixture(scope="module")
def explain_files(world):
    inp = world / "empty_histories.jsonl"
    write_records(EMPTY_HISTORIES, inp)
    return inp


def test_explaining_empty_histories_is_finite_json_and_draws(world, explain_files, capsys):
    out, page = world / "why_empty.jsonl", world / "why_empty.html"
    assert cli_main(["explain", "--model", str(world / "model"), "--input", str(explain_files), "--output", str(out),
                 "--html", str(page), "--text-steps", "2"]) == 0, capsys.readouterr().err
    rows = [_strict_json(line) for line in out.read_text().splitlines()]
    assert [r["product_id"] for r in rows] == [r["product_id"] for r in EMPTY_HISTORIES]
    for r, rec in zip(rows, EMPTY_HISTORIES):
        assert all(math.isfinite(x) for x in _numbers(r)), r
        assert len(r["sales_saliency"]) == len(rec["sales"])
        sh = r["shapley"]
        assert 0.0 <= sh["text_share"] <= 1.0  # the split stays defined
        assert sh["text"] + sh["sales"] == pytest.approx(sh["value"] - sh["base"], abs=1e-5)
        if not any(rec["sales"]):  # an all-zero history equals its baseline: nothing to attribute to sales
            assert sh["sales"] == pytest.approx(0.0, abs=1e-6)
            assert r["sales_saliency"] == [0.0] * len(rec["sales"])
    assert page.read_text().count('<section class="card">') == len(EMPTY_HISTORIES)


def test_http_explain_of_empty_histories_agrees_with_the_cli(world, explain_files):
    import httpx

    from serving import running_server

    out = world / "why_empty_cli.jsonl"
    assert cli_main(["explain", "--model", str(world / "model"), "--input", str(explain_files), "--output", str(out),
                 "--top-words", "3", "--text-steps", "2"]) == 0
    cli = [_strict_json(line) for line in out.read_text().splitlines()]
    with running_server(world / "model") as url:
        r = httpx.post(f"{url}/v1/explain", params={"top_words": 3, "text_steps": 2},
                       json={"records": EMPTY_HISTORIES}, timeout=120)
    assert r.status_code == 200, r.text
    http = _strict_json(r.text)["results"]
    assert [h["product_id"] for h in http] == [c["product_id"] for c in cli]
    for h, c in zip(http, cli):
        assert h["label"] == c["label"] and h["shapley"]["text_share"] == pytest.approx(c["shapley"]["text_share"])
        assert np.allclose(list(_numbers(h)), list(_numbers(c)), atol=1e-5)
