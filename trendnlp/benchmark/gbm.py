"""The strongest peers of the benchmark: the library's boosting branch (trendnlp/model/boosting.py) used alone.

    gbm_all        LightGBM on the registry's features (model/boosting_features.py: the sales summary, newest
                   units, calendar, product age and every context channel's summaries)
    gbm_all_text   the same + a PCA (fitted on the training records' texts only) of the frozen base encoder's
                   mean-pooled embeddings of the product text

Grid and rounds are chosen on validation exactly as the hybrid model's boosting branch chooses them, so the peer
and the saved product's branch are one piece of code.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trendnlp.benchmark.tabular import _Baseline
from trendnlp.config import DEFAULT_ENCODER
from trendnlp.labels import LABELS, LabelRule
from trendnlp.model.boosting import DEFAULT, GRID, BoostingBranch

INSTALL_HINT = "pip install lightgbm (a core dependency of trendnlp: reinstall trendnlp)"


def lightgbm_available() -> bool:
    """Whether LightGBM is importable (a core dependency; False only in a broken install)."""
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return False
    return True


class GBMAllBaseline(_Baseline):
    """The boosting branch on the gbm_all features; grid and boosting rounds chosen on validation.

    >>> GBMAllBaseline(LabelRule(), seed=0).name
    'gbm_all'
    """

    name = "gbm_all"
    grid = list(GRID)
    max_rounds = 1000
    early_stopping = 50
    default = DEFAULT
    text = False

    def __init__(self, rule: LabelRule | None = None, seed: int = 0, channels: Sequence[str] = (),
                 base_model: str | None = None):
        super().__init__(rule, seed, channels)  # channels: the branch reads every channel of the registry
        self.base_model = base_model  # the text PCA's encoder (None: the shipped MiniLM)

    def fit(self, train_records, val_records=None):
        self.branch_ = BoostingBranch(self.rule, LABELS, text=self.text, base_model=self.base_model or DEFAULT_ENCODER,
                                      seed=self.seed, grid=self.grid, max_rounds=self.max_rounds,
                                      early_stopping=self.early_stopping).fit(train_records, val_records)
        self.val_macro_f1_, self.params_ = self.branch_.val_macro_f1_, self.branch_.params_
        return self

    def predict_proba(self, records: Sequence[dict]) -> np.ndarray:
        """(n, 3) class probabilities in LABELS order."""
        return self.branch_.predict_proba(records)

    def predict(self, records):
        return [LABELS[i] for i in self.predict_proba(records).argmax(1)] if len(records) else []


class GBMAllTextBaseline(GBMAllBaseline):
    """gbm_all + the text PCA block (fitted on the training records' texts only)."""

    name = "gbm_all_text"
    text = True
