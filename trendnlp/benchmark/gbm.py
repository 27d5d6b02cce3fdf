"""The strongest peers of DESIGN §6: LightGBM on every channel of the record, with and without text.

    gbm_all        sales summary + newest units + calendar (tabular.sales_calendar_matrix), the cutoff's week
                   and month as numbers, product age, and per channel (orders, customers, market_sales, price)
                   its recent level, trends and newest values, plus units per order / customers per order /
                   share of the shop: CHANNEL_FEATURE_NAMES. A channel the records lack is NaN (LightGBM
                   routes missing values itself), so the same code serves logs without invoice or customer ids.
    gbm_all_text   the same + a PCA (fitted on the training records' texts only) of the frozen base encoder's
                   mean-pooled embeddings of the product text.

Hyper-parameters: a small grid, each point early-stopped on validation multi-logloss; the point with the best
validation macro-F1 is kept. The model never trains on validation labels. Saved, if at all, in LightGBM's text
format (`save_model`), never pickled.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from trendnlp.benchmark.tabular import (SALES_FEATURE_NAMES, _Baseline, _has_labels, _labels, _macro_f1,
                                        sales_calendar_matrix)
from trendnlp.config import DEFAULT_ENCODER
from trendnlp.labels import LABELS, LabelRule

INSTALL_HINT = "pip install 'trendnlp[boost]' (LightGBM)"
COUNT_CHANNELS = ("orders", "customers", "market_sales")  # per-period counts, summarised like units
_COUNT_STATS = ("log_recent", "log_all", "change_recent_vs_previous", "change_recent_vs_all",
                "log_t-3", "log_t-2", "log_t-1", "log_t-0")
CHANNEL_FEATURE_NAMES = (
    "week_of_year", "month", "age_periods",  # of the cutoff; periods since the product's first sale
    *(f"{c}_{s}" for c in COUNT_CHANNELS for s in _COUNT_STATS),
    "units_per_order_recent", "units_per_order_all", "customers_per_order_recent",
    "share_of_market_recent_vs_all",  # the product's units / the shop's units, newest K vs the whole history
    "price_rel_median", "price_change_recent_vs_previous",  # log price (last known) / median; recent vs earlier K
)
TEXT_COMPONENTS = 16  # PCA components of the text embeddings (the names are short: a few directions suffice)


def lightgbm_available() -> bool:
    """Whether LightGBM is importable (the `boost` extra)."""
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return False
    return True


def _stack(records: Sequence[dict], field: str, n: int) -> np.ndarray:
    """(len(records), n) float64 of a per-period field, right-aligned; NaN where missing, padded or null."""
    out = np.full((len(records), n), np.nan)
    for i, r in enumerate(records):
        v = r.get(field)
        if v is not None and len(v):
            v = np.array([np.nan if x is None else x for x in v[-n:]], dtype=np.float64)
            out[i, n - len(v):] = v
    return out


def _mean(x: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN; NaN where a row has no value (no all-NaN warning)."""
    ok = ~np.isnan(x)
    cnt = ok.sum(1)
    return np.where(cnt > 0, np.where(ok, x, 0.0).sum(1) / np.maximum(cnt, 1), np.nan)


def channel_matrix(records: Sequence[dict], rule: LabelRule, history: int = 26) -> np.ndarray:
    """CHANNEL_FEATURE_NAMES per record: calendar numbers, age and the summaries of every context channel.

    Args:
        records: normalised records (channels `orders`, `customers`, `market_sales`, `price` optional).
        rule: the label rule; its K and alpha shape the recent windows and log ratios.
        history: periods a full history holds.
    Returns:
        float32 array (len(records), len(CHANNEL_FEATURE_NAMES)); NaN where a channel is absent.

    >>> rec = {"sales": [1, 2, 3, 4, 5], "orders": [1, 1, 2, 2, 3], "cutoff": "2011-06-05", "first_sale": "2011-05-08"}
    >>> X = channel_matrix([rec], LabelRule())
    >>> X.shape, float(X[0, 2]), bool(np.isnan(X[0, CHANNEL_FEATURE_NAMES.index("customers_log_recent")]))
    ((1, 33), 4.0, True)
    """
    import datetime as dt

    K, a, n = rule.K, rule.alpha, len(records)
    cols: dict[str, np.ndarray] = {}
    dates = [dt.date.fromisoformat(r["cutoff"]) if r.get("cutoff") else None for r in records]
    cols["week_of_year"] = np.array([d.isocalendar()[1] if d else np.nan for d in dates], dtype=np.float64)
    cols["month"] = np.array([d.month if d else np.nan for d in dates], dtype=np.float64)
    cols["age_periods"] = np.array(
        [(d - dt.date.fromisoformat(r["first_sale"])).days / 7 if d and r.get("first_sale") else np.nan
         for d, r in zip(dates, records)])  # weeks; the benchmark's periods
    units = _stack(records, "sales", history)
    recent_units, all_units = _mean(units[:, -K:]), _mean(units)
    recent = {}
    for c in COUNT_CHANNELS:
        x = _stack(records, c, history)
        r_, p_, all_ = _mean(x[:, -K:]), _mean(x[:, -2 * K:-K]), _mean(x)
        recent[c] = r_
        stats = (np.log1p(r_), np.log1p(all_), np.log((r_ + a) / (p_ + a)), np.log((r_ + a) / (all_ + a)),
                 *(np.log1p(x[:, -j]) for j in range(4, 0, -1)))
        cols.update({f"{c}_{s}": v for s, v in zip(_COUNT_STATS, stats)})
    cols["units_per_order_recent"] = np.log((recent_units + a) / (recent["orders"] + a))
    cols["units_per_order_all"] = np.log((all_units + a) / (_mean(_stack(records, "orders", history)) + a))
    cols["customers_per_order_recent"] = np.log((recent["customers"] + a) / (recent["orders"] + a))
    market = _stack(records, "market_sales", history)
    cols["share_of_market_recent_vs_all"] = (np.log((recent_units + a) / (recent["market_sales"] + a))
                                             - np.log((all_units + a) / (_mean(market) + a)))
    price = _stack(records, "price", history)
    price[price <= 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no price known
        median = np.nanmedian(price, axis=1)
    last_idx = np.where(~np.isnan(price), np.arange(history), -1).max(1)
    last = np.where(last_idx >= 0, price[np.arange(n), np.maximum(last_idx, 0)], np.nan)
    cols["price_rel_median"] = np.log(last / median)
    cols["price_change_recent_vs_previous"] = np.log(_mean(price[:, -K:]) / _mean(price[:, -2 * K:-K]))
    return np.stack([cols[c] for c in CHANNEL_FEATURE_NAMES], axis=1).astype(np.float32)


def all_channel_matrix(records: Sequence[dict], rule: LabelRule) -> np.ndarray:
    """The gbm_all features: sales_calendar_matrix next to channel_matrix, ALL_FEATURE_NAMES per record."""
    return np.hstack([sales_calendar_matrix(records, rule), channel_matrix(records, rule)])


ALL_FEATURE_NAMES = (*SALES_FEATURE_NAMES, *CHANNEL_FEATURE_NAMES)


# ---- text embeddings -----------------------------------------------------------------------------
_EMBEDDINGS: dict[tuple[str, str], np.ndarray] = {}  # (base model, text) -> mean-pooled embedding, per process


def text_embeddings(texts: Sequence[str], base_model: str, batch_size: int = 128) -> np.ndarray:
    """(len(texts), H) mean-pooled embeddings of the frozen base encoder; each distinct text encoded once
    per process (the backtest reuses them across origins).

    Args:
        texts: strings (empty ones embed the empty input).
        base_model: `text.base_model` (the shipped MiniLM name or a local folder; never downloaded).
        batch_size: texts per forward pass.
    Returns:
        float32 array (len(texts), hidden size).
    """
    import torch

    from trendnlp.model.text_encoder import load_base_model, load_tokenizer

    todo = sorted({t for t in texts if (base_model, t) not in _EMBEDDINGS})
    if todo:
        tok, model = load_tokenizer(base_model), load_base_model(base_model).eval()
        with torch.inference_mode():
            for i in range(0, len(todo), batch_size):
                chunk = todo[i:i + batch_size]
                enc = tok(chunk, padding=True, truncation=True, max_length=32, return_tensors="pt")
                h = model(**enc).last_hidden_state  # (B, L, H)
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, H)
                for t, v in zip(chunk, pooled.numpy()):
                    _EMBEDDINGS[(base_model, t)] = v.astype(np.float32)
    return np.stack([_EMBEDDINGS[(base_model, t)] for t in texts]) if texts else np.zeros((0, 0), np.float32)


def _text(record: dict) -> str:
    return " ".join(t.strip() for t in (record.get("title"), record.get("description")) if t and t.strip())


# ---- the boosters --------------------------------------------------------------------------------
class GBMAllBaseline(_Baseline):
    """LightGBM (balanced classes) on ALL_FEATURE_NAMES; grid and boosting rounds chosen on validation.

    >>> GBMAllBaseline(LabelRule(), seed=0).name
    'gbm_all'
    """

    name = "gbm_all"
    grid = [dict(num_leaves=leaves, min_data_in_leaf=100, learning_rate=0.05) for leaves in (15, 63)]
    max_rounds = 1000
    early_stopping = 50
    default = dict(num_leaves=31, min_data_in_leaf=100, learning_rate=0.05, rounds=300)

    def _matrix(self, records: Sequence[dict]) -> np.ndarray:
        return all_channel_matrix(records, self.rule)

    def _fit_matrix(self, records: Sequence[dict]) -> np.ndarray:  # fits any transform on train only
        return self._matrix(records)

    def _params(self, point: dict) -> dict:
        return {"objective": "multiclass", "num_class": len(LABELS), "feature_fraction": 0.8,
                "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "num_threads": 1, "seed": self.seed,
                "deterministic": True, "force_row_wise": True, "verbosity": -1,
                **{k: v for k, v in point.items() if k != "rounds"}}

    def fit(self, train_records, val_records=None):
        import lightgbm as lgb

        X = self._fit_matrix(train_records)
        y = np.array([LABELS.index(lab) for lab in _labels(train_records)])
        counts = np.bincount(y, minlength=len(LABELS))
        weight = (len(y) / (len(LABELS) * np.maximum(counts, 1)))[y]  # "balanced", as sales_hgb
        data = lgb.Dataset(X, y, weight=weight, free_raw_data=False)
        self.val_macro_f1_ = None
        if not _has_labels(val_records):
            self.params_ = dict(self.default)
            self.booster_ = lgb.train(self._params(self.params_), data, num_boost_round=self.default["rounds"])
            return self
        Xv, yv = self._matrix(val_records), _labels(val_records)
        valid = lgb.Dataset(Xv, np.array([LABELS.index(lab) for lab in yv]), reference=data)
        best = (-1.0, None, None)
        for point in self.grid:
            booster = lgb.train(self._params(point), data, num_boost_round=self.max_rounds, valid_sets=[valid],
                                callbacks=[lgb.early_stopping(self.early_stopping, verbose=False)])
            pred = [LABELS[i] for i in booster.predict(Xv, num_iteration=booster.best_iteration).argmax(1)]
            if (score := _macro_f1(yv, pred)) > best[0]:
                best = (score, {**point, "rounds": booster.best_iteration}, booster)
        self.val_macro_f1_, self.params_, self.booster_ = best
        return self

    def predict_proba(self, records: Sequence[dict]) -> np.ndarray:
        """(n, 3) class probabilities in LABELS order."""
        if not len(records):
            return np.zeros((0, len(LABELS)))
        return self.booster_.predict(self._matrix(records), num_iteration=self.params_["rounds"])

    def predict(self, records):
        return [LABELS[i] for i in self.predict_proba(records).argmax(1)] if len(records) else []


class GBMAllTextBaseline(GBMAllBaseline):
    """gbm_all + TEXT_COMPONENTS PCA directions of the frozen base encoder's text embeddings (PCA fitted on
    the training records' texts only)."""

    name = "gbm_all_text"

    def __init__(self, rule: LabelRule | None = None, seed: int = 0, channels: Sequence[str] = (),
                 base_model: str | None = None):
        super().__init__(rule, seed, channels)
        self.base_model = base_model  # text.base_model of the benchmark config (None: the shipped MiniLM)

    def _embed(self, records):
        return text_embeddings([_text(r) for r in records], self.base_model or DEFAULT_ENCODER)

    def _fit_matrix(self, records):
        from sklearn.decomposition import PCA

        texts = sorted({_text(r) for r in records})  # each product name once, not weighted by its record count
        emb = text_embeddings(texts, self.base_model or DEFAULT_ENCODER)
        k = min(TEXT_COMPONENTS, emb.shape[1], max(len(texts) - 1, 1))
        self.pca_ = PCA(n_components=k, random_state=self.seed).fit(emb)
        return self._matrix(records)

    def _matrix(self, records):
        return np.hstack([super()._matrix(records), self.pca_.transform(self._embed(records)).astype(np.float32)])
