"""The boosting branch: LightGBM on the registry's features (model/boosting_features.py), optionally with a PCA
of the frozen base encoder's text embeddings; saved in LightGBM's text format, never pickled.

    BoostingBranch.fit      a small grid, each point early-stopped on validation multi-logloss; the point with the
                            best validation macro-F1 is kept with its best iteration (no validation: defaults)
    BoostingBranch.refit    the chosen settings and rounds, trained again on more records (train.refit)
    predict_proba           (n, C) in `labels` order;  contributions: LightGBM's exact tree SHAP (pred_contrib)
    save / load             a folder: model.txt (LightGBM text), boosting.json (feature names, settings,
                            labels, a checksum of model.txt) and, with text, pca.safetensors (mean, components)

The benchmark's gbm_all / gbm_all_text peers are this class used alone; the hybrid model (model/hybrid.py)
blends it with the neural branch. Loading checks model.txt against its checksum before LightGBM's C++ parser
reads it, so a truncated or edited file is one error naming it, never a crash.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trendnlp.errors import ModelFolderError
from trendnlp.labels import LABELS, LabelRule
from trendnlp.model.boosting_features import feature_matrix, feature_names

BOOSTER_NAME, META_NAME, PCA_NAME = "model.txt", "boosting.json", "pca.safetensors"
TEXT_COMPONENTS = 16  # PCA components of the text embeddings (product names are short: a few directions suffice)
TEXT_MAX_LENGTH = 32  # tokens of title + description embedded for the PCA
GRID = (dict(num_leaves=15, min_data_in_leaf=100, learning_rate=0.05),
        dict(num_leaves=63, min_data_in_leaf=100, learning_rate=0.05))
DEFAULT = dict(num_leaves=31, min_data_in_leaf=100, learning_rate=0.05, rounds=300)  # without validation


def record_text(record: dict) -> str:
    """Title and description joined: the text the PCA block embeds."""
    return " ".join(t.strip() for t in (record.get("title"), record.get("description")) if t and t.strip())


_EMBEDDINGS: dict[tuple[str, str], np.ndarray] = {}  # (base model, text) -> mean-pooled embedding, per process


def text_embeddings(texts: Sequence[str], base_model: str, batch_size: int = 128) -> np.ndarray:
    """(len(texts), H) mean-pooled embeddings of the frozen base encoder (no LoRA); each distinct text encoded
    once per process (the backtest reuses them across origins).

    Args:
        texts: strings (empty ones embed the empty input).
        base_model: a base encoder name or local folder (never downloaded).
        batch_size: texts per forward pass.
    Returns:
        float32 array (len(texts), hidden size).
    """
    import torch

    from trendnlp.model.base_models import load_base_model, load_tokenizer

    todo = sorted({t for t in texts if (base_model, t) not in _EMBEDDINGS})
    if todo:
        tok, model = load_tokenizer(base_model), load_base_model(base_model).eval()
        with torch.inference_mode():
            for i in range(0, len(todo), batch_size):
                chunk = todo[i:i + batch_size]
                enc = tok(chunk, padding=True, truncation=True, max_length=TEXT_MAX_LENGTH, return_tensors="pt")
                h = model(**enc).last_hidden_state  # (B, L, H)
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, H)
                for t, v in zip(chunk, pooled.numpy()):
                    _EMBEDDINGS[(base_model, t)] = v.astype(np.float32)
    return np.stack([_EMBEDDINGS[(base_model, t)] for t in texts]) if texts else np.zeros((0, 0), np.float32)


def _macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    from trendnlp.model.calibration import macro_f1_from_predictions

    return macro_f1_from_predictions(y, pred, n_classes)


class BoostingBranch:
    """LightGBM (balanced classes) on `feature_names()` (+ TEXT_COMPONENTS text PCA directions).

    Args:
        rule: the label rule; its K and alpha shape the features.
        labels: class names in the order of the probability columns.
        history: periods a full sales history holds.
        text: add the PCA of the frozen base encoder's embeddings of title + description.
        base_model: that encoder (name or folder); needed when `text`.
        seed: LightGBM's and the PCA's seed.
        grid: LightGBM settings tried on validation; max_rounds / early_stopping: rounds per point.

    >>> branch = BoostingBranch(LabelRule(), seed=0)
    >>> branch.feature_names_[:2]
    ['log_level_recent', 'log_level_all']
    """

    def __init__(self, rule: LabelRule | None = None, labels: Sequence[str] = LABELS, history: int = 26,
                 text: bool = False, base_model: str | None = None, seed: int = 0, grid: Sequence[dict] = GRID,
                 max_rounds: int = 1000, early_stopping: int = 50):
        self.rule, self.labels, self.history = rule or LabelRule(), list(labels), history
        self.text, self.base_model, self.seed = text, base_model, seed
        self.grid, self.max_rounds, self.early_stopping = [dict(p) for p in grid], max_rounds, early_stopping
        self.feature_names_ = list(feature_names())
        self.booster_ = self.params_ = self.val_macro_f1_ = self.pca_ = None

    # ---- features ----------------------------------------------------------------------------
    def matrix(self, records: Sequence[dict]) -> np.ndarray:
        """(n, n_features) float32 features of records, columns `self.feature_names_` (+ the text PCA)."""
        X = feature_matrix(records, self.rule, self.history)
        if list(feature_names()) != self.feature_names_[:X.shape[1]]:  # a model saved with another registry
            known = {n: i for i, n in enumerate(feature_names())}
            X = np.stack([X[:, known[n]] if n in known else np.full(len(records), np.nan, np.float32)
                          for n in self._table_names()], axis=1).reshape(len(records), -1)
        if self.text:
            mean, components = self.pca_
            emb = text_embeddings([record_text(r) for r in records], self._base())
            emb = emb.reshape(len(records), -1)
            X = np.hstack([X, (emb @ components.T - mean.reshape(1, -1) @ components.T).astype(np.float32)])  # as PCA
        return X

    def _table_names(self) -> list[str]:
        return [n for n in self.feature_names_ if not n.startswith("text_pca_")]

    def _base(self) -> str:
        if not self.base_model:
            raise ValueError("the boosting branch's text PCA needs base_model (the frozen encoder it embeds with)")
        return self.base_model

    def _fit_text(self, records: Sequence[dict]) -> None:
        from sklearn.decomposition import PCA

        texts = sorted({record_text(r) for r in records})  # each product name once, not weighted by its records
        emb = text_embeddings(texts, self._base())
        k = min(TEXT_COMPONENTS, emb.shape[1], max(len(texts) - 1, 1))
        pca = PCA(n_components=k, random_state=self.seed).fit(emb)
        self.pca_ = (np.ascontiguousarray(pca.mean_, np.float32),
                     np.ascontiguousarray(pca.components_, np.float32))
        self.feature_names_ = [*self._table_names(), *(f"text_pca_{i}" for i in range(k))]

    def _y(self, records: Sequence[dict]) -> np.ndarray:
        return np.array([self.labels.index(r["label"]) for r in records], dtype=np.int64)

    def _params(self, point: dict) -> dict:
        return {"objective": "multiclass", "num_class": len(self.labels), "feature_fraction": 0.8,
                "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "num_threads": 1, "seed": self.seed,
                "deterministic": True, "force_row_wise": True, "verbosity": -1,
                **{k: v for k, v in point.items() if k != "rounds"}}

    def _dataset(self, records: Sequence[dict]):
        import lightgbm as lgb

        X, y = self.matrix(records), self._y(records)
        counts = np.bincount(y, minlength=len(self.labels))
        weight = (len(y) / (len(self.labels) * np.maximum(counts, 1)))[y]  # "balanced" classes
        return lgb.Dataset(X, y, weight=weight, feature_name=self.feature_names_, free_raw_data=False)

    # ---- training ----------------------------------------------------------------------------
    def fit(self, train_records: Sequence[dict], val_records: Sequence[dict] | None = None) -> "BoostingBranch":
        """Fit on labelled training records; the grid point and its rounds are chosen on validation.

        Args:
            train_records: labelled normalised records (the text PCA is fitted on their texts only).
            val_records: labelled records for early stopping and the grid; None: DEFAULT settings.
        Returns:
            self, with booster_, params_ (the settings and rounds) and val_macro_f1_.
        """
        import lightgbm as lgb

        if self.text:
            self._fit_text(train_records)
        data = self._dataset(train_records)
        self.val_macro_f1_ = None
        if not val_records or any(r.get("label") not in self.labels for r in val_records):
            self.params_ = dict(DEFAULT)
            self.booster_ = lgb.train(self._params(self.params_), data, num_boost_round=DEFAULT["rounds"])
            return self
        Xv, yv = self.matrix(val_records), self._y(val_records)
        valid = lgb.Dataset(Xv, yv, reference=data)
        best = (-1.0, None, None)
        for point in self.grid:
            booster = lgb.train(self._params(point), data, num_boost_round=self.max_rounds, valid_sets=[valid],
                                callbacks=[lgb.early_stopping(self.early_stopping, verbose=False)])
            pred = booster.predict(Xv, num_iteration=booster.best_iteration).argmax(1)
            if (score := _macro_f1(yv, pred, len(self.labels))) > best[0]:
                best = (score, {**point, "rounds": booster.best_iteration}, booster)
        self.val_macro_f1_, self.params_, self.booster_ = best
        return self

    def refit(self, records: Sequence[dict]) -> "BoostingBranch":
        """Train again with the chosen settings and rounds (params_) on `records` (e.g. train + validation);
        the text PCA stays the one fitted before. Returns self."""
        import lightgbm as lgb

        if self.params_ is None:
            raise ValueError("refit needs a fitted branch (call fit first)")
        self.booster_ = lgb.train(self._params(self.params_), self._dataset(records),
                                  num_boost_round=max(1, int(self.params_["rounds"])))
        return self

    # ---- prediction --------------------------------------------------------------------------
    def predict_proba(self, records: Sequence[dict]) -> np.ndarray:
        """(n, C) class probabilities in `labels` order (float64)."""
        if not len(records):
            return np.zeros((0, len(self.labels)))
        return self.booster_.predict(self.matrix(records), num_iteration=self.params_["rounds"])

    def contributions(self, records: Sequence[dict]) -> np.ndarray:
        """(n, C, F + 1) exact tree SHAP values (LightGBM pred_contrib) in raw-score (log-odds) units: per class,
        one value per feature of `feature_names_`, and the expected value last."""
        X = self.matrix(records)
        raw = self.booster_.predict(X, num_iteration=self.params_["rounds"], pred_contrib=True)
        return np.asarray(raw).reshape(len(records), len(self.labels), X.shape[1] + 1)

    # ---- save / load -------------------------------------------------------------------------
    def settings(self) -> dict:
        """What boosting.json stores besides the checksum (JSON-ready)."""
        return {"labels": self.labels, "feature_names": self.feature_names_, "history": self.history,
                "label_rule": {"K": self.rule.K, "F": self.rule.F, "alpha": self.rule.alpha, "tau": self.rule.tau},
                "text": self.text, "seed": self.seed, "params": self.params_, "val_macro_f1": self.val_macro_f1_}

    def save(self, directory: str | Path) -> None:
        """Write model.txt (LightGBM text), boosting.json and (text) pca.safetensors into `directory`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        text = self.booster_.model_to_string(num_iteration=self.params_["rounds"])
        (d / BOOSTER_NAME).write_text(text, encoding="utf-8")
        meta = {**self.settings(), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        (d / META_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if self.text:
            from safetensors.numpy import save_file

            # C order: safetensors stores the buffer as it lies, and PCA's components_ may be Fortran-ordered
            save_file({k: np.ascontiguousarray(v) for k, v in zip(("mean", "components"), self.pca_)},
                      str(d / PCA_NAME))

    @classmethod
    def load(cls, directory: str | Path, base_model: str | None = None) -> "BoostingBranch":
        """A saved branch; model.txt must match its checksum in boosting.json before LightGBM parses it.

        Args:
            directory: a folder written by `save`.
            base_model: the frozen encoder of the text PCA (the model folder's base encoder).
        Raises:
            ModelFolderError naming the file and the fix.
        """
        import lightgbm as lgb

        d = Path(directory)
        meta = _read_json(d / META_NAME)
        path = d / BOOSTER_NAME
        if not path.is_file():
            raise ModelFolderError(f"{path}: missing; the model folder is incomplete (export it again)")
        raw = path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != meta.get("sha256"):
            raise ModelFolderError(f"{path}: does not match the checksum in {META_NAME} (the file is truncated or "
                                   "was edited); train the model again or restore the folder from a copy")
        try:
            booster = lgb.Booster(model_str=raw.decode("utf-8"))
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as e:
            raise ModelFolderError(f"{path}: LightGBM cannot read it ({' '.join(str(e).split())[:160]}); train the "
                                   "model again or restore the folder") from None
        rule = meta.get("label_rule") or {}
        branch = cls(LabelRule(**rule), labels=meta["labels"], history=meta["history"], text=meta["text"],
                     base_model=base_model, seed=meta["seed"])
        branch.feature_names_, branch.params_, branch.val_macro_f1_ = meta["feature_names"], meta["params"], \
            meta.get("val_macro_f1")
        if booster.feature_name() != branch.feature_names_:
            raise ModelFolderError(f"{path}: its feature names differ from {d / META_NAME}'s; the folder mixes two "
                                   "models: train the model again or restore the folder")
        if branch.text:
            from trendnlp.model.folder import load_weights

            t = load_weights(d / PCA_NAME)
            branch.pca_ = (t["mean"].numpy(), t["components"].numpy())
        branch.booster_ = booster
        return branch


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing; the model folder is incomplete (export it again)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{path}: not valid JSON ({e}); train the model again or restore the folder") from None
    missing = [k for k in ("labels", "feature_names", "history", "text", "seed", "params", "sha256")
               if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ModelFolderError(f"{path}: missing key(s) {missing}; train the model again or restore the folder")
    return meta
