"""Baselines for the benchmark table: rules, sales-feature models and a TF-IDF text model.

Every baseline has a `name`, `fit(train_records, val_records=None) -> self` and
`predict(records) -> list[str]` on normalised record dicts (records.py). Hyper-parameters are chosen
on the validation records by macro-F1 and never on test; without validation records the defaults
are used. `run_baselines` fits them all and returns one metrics row per baseline.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from trendnlp.benchmark.gbm import INSTALL_HINT, GBMAllBaseline, GBMAllTextBaseline, lightgbm_available
from trendnlp.benchmark.tabular import _Baseline, _has_labels, _in_label_order, _labels, _macro_f1
from trendnlp.data.inputs.features import N_CALENDAR
from trendnlp.model.boosting_features import sales_calendar_matrix
from trendnlp.labels import LABELS, LabelRule
from trendnlp.evaluation.metrics import classification_metrics

_FLIP = {"rising": "falling", "falling": "rising", "stable": "stable"}


class MajorityBaseline(_Baseline):
    """Always the most frequent training label (ties go to the earlier label in LABELS)."""

    name = "majority"

    def fit(self, train_records, val_records=None):
        counts = Counter(_labels(train_records))
        self.label_ = max(LABELS, key=lambda lab: (counts[lab], -LABELS.index(lab)))
        return self

    def predict(self, records):
        return [self.label_] * len(records)


class PersistenceBaseline(_Baseline):
    """The trend continues: the label the rule gives to the newest K periods against the K before.

    >>> PersistenceBaseline().predict([{"sales": [1, 1, 1, 1, 5, 5, 5, 5]}])
    ['rising']
    """

    name = "persistence"

    def predict(self, records):
        K = self.rule.K
        recent = [np.mean(r["sales"][-K:]) for r in records]
        # a history of K periods or fewer has nothing earlier to compare with: "no change"
        prev = [np.mean(r["sales"][-2 * K : -K]) if len(r["sales"]) > K else m for r, m in zip(records, recent)]
        return self.rule.labels_vectorized(prev, recent).tolist() if len(records) else []


class MeanReversionBaseline(PersistenceBaseline):
    """The trend reverses: persistence with rising and falling swapped, stable unchanged."""

    name = "mean_reversion"

    def predict(self, records):
        return [_FLIP[lab] for lab in super().predict(records)]


class _LogRegBaseline(_Baseline):
    """Balanced logistic regression; the `grid` point with the best validation macro-F1 is kept."""

    grid: list[dict] = []
    default: dict = {}

    def _fit_matrix(self, records):  # fits any feature transform on train, then returns the train matrix
        return self._matrix(records)

    def _matrix(self, records):
        raise NotImplementedError

    def _columns(self, X, params):
        return X

    def _model(self, params):
        return LogisticRegression(C=params["C"], class_weight="balanced", max_iter=2000, random_state=self.seed)

    def fit(self, train_records, val_records=None):
        X, y = self._fit_matrix(train_records), _labels(train_records)
        has_val = _has_labels(val_records)
        Xv = self._matrix(val_records) if has_val else None
        best = (-1.0, None, None)
        for params in self.grid if has_val else [self.default]:
            model = self._model(params).fit(self._columns(X, params), y)
            score = _macro_f1(_labels(val_records), model.predict(self._columns(Xv, params))) if has_val else 0.0
            if score > best[0]:
                best = (score, params, model)
        _, self.params_, self.model_ = best
        self.val_macro_f1_ = best[0] if has_val else None
        return self

    def predict(self, records):
        return self.model_.predict(self._columns(self._matrix(records), self.params_)).tolist() if len(records) else []

    def predict_proba(self, records):
        """(n, 3) class probabilities in LABELS order."""
        return _in_label_order(self.model_, self.model_.predict_proba(self._columns(self._matrix(records),
                                                                                     self.params_)))


class SalesLogRegBaseline(_LogRegBaseline):
    """Balanced logistic regression on standardised sales summary + calendar features.

    C and whether to keep the calendar columns are chosen on validation: the benchmark's validation
    and test cutoffs fall in months the training cutoffs never cover, where the linear model
    extrapolates sin/cos of the month far outside anything it was fitted on.
    """

    name = "sales_logreg"
    grid = [dict(C=C, calendar=cal) for cal in (True, False) for C in (0.03, 0.1, 0.3, 1.0)]
    default = dict(C=1.0, calendar=True)

    def _matrix(self, records):
        return sales_calendar_matrix(records, self.rule, channels=self.channels)

    def _columns(self, X, params):
        return X if params["calendar"] else X[:, :-N_CALENDAR]

    def _model(self, params):
        return make_pipeline(StandardScaler(), super()._model(params))


class SalesHGBBaseline(_Baseline):
    """HistGradientBoosting (balanced) on sales summary + calendar features.

    The grid (learning rate x leaves x L2) and the number of boosting iterations (read off the staged
    validation predictions every `eval_every` iterations) are chosen by validation macro-F1; the
    chosen setting is then refit on train alone, so the model never sees the validation labels.
    On Online Retail the validation curve is flat after ~50 iterations, hence the short `max_iter`.
    """

    name = "sales_hgb"
    grid = [dict(learning_rate=lr, max_leaf_nodes=leaves, l2_regularization=l2)
            for lr in (0.05, 0.1) for leaves in (15, 31) for l2 in (0.0, 1.0)]
    max_iter = 150
    eval_every = 10
    default = dict(learning_rate=0.1, max_leaf_nodes=31, l2_regularization=0.0, max_iter=100)

    def _model(self, **params):
        return HistGradientBoostingClassifier(**{"max_iter": self.max_iter, **params}, class_weight="balanced",
                                              early_stopping=False, random_state=self.seed)

    def fit(self, train_records, val_records=None):
        X, y = sales_calendar_matrix(train_records, self.rule, channels=self.channels), _labels(train_records)
        self.params_, self.val_macro_f1_ = dict(self.default), None
        if _has_labels(val_records):
            Xv, yv = sales_calendar_matrix(val_records, self.rule, channels=self.channels), _labels(val_records)
            best = (-1.0, None)
            for params in self.grid:
                model = self._model(**params).fit(X, y)
                for it, pred in enumerate(model.staged_predict(Xv), start=1):
                    if it % self.eval_every == 0 and (score := _macro_f1(yv, pred)) > best[0]:
                        best = (score, {**params, "max_iter": it})
            self.val_macro_f1_, self.params_ = best
        self.model_ = self._model(**self.params_).fit(X, y)
        return self

    def predict(self, records):
        if not len(records):
            return []
        return self.model_.predict(sales_calendar_matrix(records, self.rule, channels=self.channels)).tolist()

    def predict_proba(self, records):
        """(n, 3) class probabilities in LABELS order."""
        X = sales_calendar_matrix(records, self.rule, channels=self.channels)
        return _in_label_order(self.model_, self.model_.predict_proba(X))


def record_text(record: dict) -> str:
    """Title, description and every review of a record as one string; "_empty_" when it has none.

    >>> record_text({"title": "Red mug", "reviews": ["nice"]})
    'Red mug nice'
    """
    parts = (record.get("title"), record.get("description"), *(record.get("reviews") or []))
    return " ".join(t.strip() for t in parts if t and t.strip()) or "_empty_"


def _month_onehot(records: Sequence[dict]) -> sparse.csr_matrix:
    months = [int(r["cutoff"][5:7]) - 1 if r.get("cutoff") else -1 for r in records]
    rows = [i for i, m in enumerate(months) if m >= 0]
    return sparse.csr_matrix((np.ones(len(rows)), (rows, [months[i] for i in rows])), shape=(len(records), 12))


class TextTfidfBaseline(_LogRegBaseline):
    """Balanced logistic regression on TF-IDF word 1-2-grams of the text plus the one-hot cutoff month.

    A month never seen in training keeps a zero weight: it adds nothing. C is chosen on validation.
    """

    name = "text_tfidf_logreg"
    grid = [dict(C=C) for C in (0.03, 0.1, 0.3, 1.0)]
    default = dict(C=1.0)

    def _fit_matrix(self, records):
        texts = [record_text(r) for r in records]
        try:
            self.vectorizer_ = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(texts)
        except ValueError:  # no term in two documents (tiny data): keep every term rather than fail
            self.vectorizer_ = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit(texts)
        return self._matrix(records)

    def _matrix(self, records):
        tfidf = self.vectorizer_.transform([record_text(r) for r in records])
        return sparse.hstack([tfidf, _month_onehot(records)], format="csr")  # TF-IDF rows are L2-normalised


BASELINES: dict[str, type[_Baseline]] = {cls.name: cls for cls in (
    MajorityBaseline, PersistenceBaseline, MeanReversionBaseline, SalesLogRegBaseline, SalesHGBBaseline,
    TextTfidfBaseline, GBMAllBaseline, GBMAllTextBaseline)}
NEEDS_LIGHTGBM = (GBMAllBaseline.name, GBMAllTextBaseline.name)


def default_baselines() -> list[str]:
    """Every baseline whose library is installed (the gbm rows need LightGBM: the `boost` extra)."""
    return [n for n in BASELINES if n not in NEEDS_LIGHTGBM or lightgbm_available()]


def make_baselines(rule: LabelRule, seed: int, names: Sequence[str] | None = None,
                   channels: Sequence[str] = (), base_model: str | None = None) -> list[_Baseline]:
    """Instantiate baselines (default_baselines() by default, in table order).

    Args:
        rule: the label rule of the benchmark (persistence applies it; features use its K and alpha).
        seed: random_state of the learned baselines.
        names: subset of BASELINES keys.
        channels: context channels the sales-feature baselines also get (see `sales_calendar_matrix`); the gbm
            rows use every channel of the records whatever this says.
        base_model: the text encoder whose frozen embeddings gbm_all_text uses (None: the shipped MiniLM).
    Returns:
        list of unfitted baselines.

    >>> [b.name for b in make_baselines(LabelRule(), 0, ["majority", "persistence"])]
    ['majority', 'persistence']
    """
    unknown = sorted(set(names or ()) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {list(BASELINES)}")
    if any(n in NEEDS_LIGHTGBM for n in names or ()) and not lightgbm_available():
        raise ValueError(f"baselines {list(NEEDS_LIGHTGBM)} need LightGBM: {INSTALL_HINT}")
    return [BASELINES[n](rule=rule, seed=seed, channels=channels,
                         **({"base_model": base_model} if n == GBMAllTextBaseline.name else {}))
            for n in (names or default_baselines())]


def _table_metrics(y_true: Sequence[str], y_pred: Sequence[str], slice_mask: np.ndarray | None = None) -> dict:
    m = classification_metrics(y_true, y_pred, LABELS)
    row = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "f1_per_class": m["f1"],
           "precision_per_class": m["precision"], "recall_per_class": m["recall"],
           "confusion_matrix": m["confusion_matrix"]}
    return {**row, **slice_score(y_true, y_pred, slice_mask)}


def slice_score(y_true: Sequence[str], y_pred: Sequence[str], slice_mask: np.ndarray | None) -> dict:
    """{"slice_macro_f1": macro-F1 of the label strings on the masked records} ({} without a mask or an empty one).

    >>> slice_score(["rising", "stable"], ["rising", "rising"], np.array([True, False]))
    {'slice_macro_f1': 0.3333333333333333}
    """
    if slice_mask is None or not slice_mask.any():
        return {}
    idx = np.flatnonzero(slice_mask)
    return {"slice_macro_f1": _macro_f1([y_true[i] for i in idx], [y_pred[i] for i in idx])}


def table_row(name: str, y_true: Sequence[str], y_pred: Sequence[str], slice_mask: np.ndarray | None = None,
              **extra) -> dict:
    """One table row: test metrics of `y_pred` (label strings), the new-product slice when a mask is given.

    >>> y = ["rising", "falling", "stable", "stable"]
    >>> pred = ["rising", "falling", "stable", "rising"]
    >>> table_row("x", y, pred, np.array([True, True, True, False]))["slice_macro_f1"]
    1.0
    """
    return {"name": name, **_table_metrics(list(y_true), list(y_pred), slice_mask), **extra}


def offsets_row(name: str, baseline, val: Sequence[dict], test: Sequence[dict], slice_mask=None) -> dict:
    """`<name>+offsets`: the baseline's probabilities with per-class offsets fitted on validation by
    `calibration.fit_logit_bias`, exactly as our model gets them."""
    from trendnlp.model.calibration import biased_scores, fit_logit_bias

    t0 = time.perf_counter()
    yv = np.array([LABELS.index(lab) for lab in _labels(val)])
    pv, pt = baseline.predict_proba(val), baseline.predict_proba(test)
    bias = fit_logit_bias(pv, yv)
    val_pred = [LABELS[i] for i in biased_scores(pv, bias).argmax(1)]
    test_pred = [LABELS[i] for i in biased_scores(pt, bias).argmax(1)]
    return table_row(f"{name}+offsets", _labels(test), test_pred, slice_mask,
                     val_macro_f1=_macro_f1(_labels(val), val_pred),
                     params={**(getattr(baseline, "params_", None) or {}),
                             "logit_bias": [round(float(b), 3) for b in bias]},
                     seconds=round(time.perf_counter() - t0, 3))


def run_baselines(train: Sequence[dict], val: Sequence[dict] | None, test: Sequence[dict], rule: LabelRule,
                  seed: int, progress: bool = True, names: Sequence[str] | None = None,
                  n_threads: int | None = 1, slice_mask: np.ndarray | None = None,
                  probs_out: dict | None = None, channels: Sequence[str] = (),
                  base_model: str | None = None) -> list[dict]:
    """Fit every baseline on train (choices on val) and score it on test.

    Each probabilistic baseline (sales_logreg, sales_hgb, text_tfidf_logreg) also gets a `<name>+offsets`
    row when validation is labelled.

    Args:
        train, val, test: labelled normalised records; val may be None or empty (defaults are then used).
        rule: the benchmark's label rule.
        seed: random_state of the learned baselines.
        progress: show a progress bar with the baseline being fitted.
        names: subset of BASELINES keys; all by default.
        n_threads: BLAS / OpenMP threads while fitting (None: the libraries' default). 1 because, on
            shared cores, spinning threads made the logistic regressions ~30x, the boosting ~3x slower.
        slice_mask: (len(test),) bool, the new-product slice; rows then carry `slice_macro_f1`.
        probs_out: when given, filled with {name: (validation probs, test probs)} of the probabilistic baselines
            (for the ensemble row).
        channels: context channels (e.g. orders, customers) added to the sales-feature baselines' matrix.
        base_model: the text encoder of gbm_all_text's embeddings (the benchmark config's text.base_model).
    Returns:
        one row per baseline: name, accuracy, macro_f1, f1/precision/recall_per_class ({label: value}),
        confusion_matrix (rows true, columns predicted, LABELS order), val_macro_f1 (None without val),
        params (the hyper-parameters chosen on val; None for the rule baselines) and seconds (fit + predict).
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    rows = []
    bar = tqdm(make_baselines(rule, seed, names, channels, base_model), desc="baselines", disable=not progress)
    with threadpool_limits(limits=n_threads):
        for baseline in bar:
            bar.set_postfix_str(baseline.name)
            t0 = time.perf_counter()
            baseline.fit(train, val)
            val_f1 = _macro_f1(_labels(val), baseline.predict(val)) if _has_labels(val) else None
            row = table_row(baseline.name, _labels(test), baseline.predict(test), slice_mask, val_macro_f1=val_f1,
                            params=getattr(baseline, "params_", None))
            row["seconds"] = round(time.perf_counter() - t0, 3)
            rows.append(row)
            if hasattr(baseline, "predict_proba") and _has_labels(val):
                rows.append(offsets_row(baseline.name, baseline, val, test, slice_mask))
                if probs_out is not None:
                    probs_out[baseline.name] = (baseline.predict_proba(val), baseline.predict_proba(test))
    return rows
