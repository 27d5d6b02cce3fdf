"""Classification metrics (scikit-learn) and a plain-text table to print them.

`classification_metrics` returns one JSON-ready dict; every report, benchmark row and metrics file in
trendnlp uses this shape, so tables and plots can read any of them:

    {"labels": [...], "n": int, "accuracy": float, "macro_f1": float,
     "precision": {label: float}, "recall": {label: float}, "f1": {label: float}, "support": {label: int},
     "confusion_matrix": [[int]]  # rows = true label, columns = predicted, both in `labels` order}
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def classification_metrics(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Args:
        y_true: true labels, as label strings or as indices into `labels`.
        y_pred: predicted labels, same form as y_true.
        labels: class order used for the per-class dicts and the confusion matrix.
    Returns:
        the dict described in the module docstring (plain Python numbers, JSON-ready).

    >>> m = classification_metrics(["rising", "stable"], ["rising", "falling"], ["rising", "falling", "stable"])
    >>> m["accuracy"], m["confusion_matrix"][2]
    (0.5, [0, 1, 0])
    """
    labels = [str(x) for x in labels]
    y_true, y_pred = _as_names(y_true, labels, "y_true"), _as_names(y_pred, labels, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}; they must pair up")
    if len(y_true) == 0:
        raise ValueError("no examples to score: y_true and y_pred are empty")
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "labels": labels,
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # macro over all classes, including a class absent from both y_true and y_pred (F1 0)
        "macro_f1": float(np.mean(f)),
        "precision": {c: float(v) for c, v in zip(labels, p)},
        "recall": {c: float(v) for c, v in zip(labels, r)},
        "f1": {c: float(v) for c, v in zip(labels, f)},
        "support": {c: int(v) for c, v in zip(labels, s)},
        "confusion_matrix": cm.astype(int).tolist(),
    }


def _as_names(y: Sequence, labels: list[str], name: str) -> list[str]:
    out = []
    for v in (y.tolist() if hasattr(y, "tolist") else list(y)):
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            if not 0 <= int(v) < len(labels):
                raise ValueError(f"{name}: class index {v} is outside 0..{len(labels) - 1} for labels {labels}")
            out.append(labels[int(v)])
        elif str(v) in labels:
            out.append(str(v))
        else:
            raise ValueError(f"{name}: unknown label {v!r}; expected one of {labels} or an index into them")
    return out


def format_metrics_table(metrics: Mapping | Sequence[tuple[str, Mapping]], digits: int = 3) -> str:
    """A plain-text table of metrics.

    Args:
        metrics: one `classification_metrics` dict (gives a per-class table with accuracy, macro-F1 and
            the confusion matrix), or a list of (name, metrics dict) rows (gives one comparison row per
            name: accuracy, macro-F1 and per-class F1).
        digits: decimals shown.
    Returns:
        the table as a string (monospace; print it or write it to a .txt/.md file).

    >>> m = classification_metrics([0, 1, 2], [0, 1, 1], ["rising", "falling", "stable"])
    >>> print(format_metrics_table([("model", m)]).splitlines()[0])
    name   accuracy  macro_f1  f1_rising  f1_falling  f1_stable
    """
    if isinstance(metrics, Mapping):
        return _single_table(metrics, digits)
    rows = list(metrics)
    if not rows:
        return "(no results)"
    labels = list(rows[0][1]["labels"])
    header = ["name", "accuracy", "macro_f1"] + [f"f1_{c}" for c in labels]
    body = [[str(name), _num(m["accuracy"], digits), _num(m["macro_f1"], digits)]
            + [_num(m["f1"].get(c, float("nan")), digits) for c in labels] for name, m in rows]
    return render_table(header, body)


def _single_table(m: Mapping, digits: int) -> str:
    labels = list(m["labels"])
    header = ["class", "precision", "recall", "f1", "support"]
    body = [[c, _num(m["precision"][c], digits), _num(m["recall"][c], digits), _num(m["f1"][c], digits),
             str(m["support"][c])] for c in labels]
    lines = [render_table(header, body), "",
             f"accuracy {_num(m['accuracy'], digits)}   macro-F1 {_num(m['macro_f1'], digits)}   n {m.get('n', '')}",
             "", "confusion matrix (rows: true, columns: predicted)",
             render_table(["true \\ pred"] + labels,
                          [[c] + [str(v) for v in row] for c, row in zip(labels, m["confusion_matrix"])])]
    return "\n".join(lines)


def _num(x: float, digits: int) -> str:
    return "nan" if x != x else f"{x:.{digits}f}"


def render_table(header: list[str], body: list[list[str]]) -> str:
    """A plain-text table: the first column left-aligned (names), the rest right-aligned (numbers).

    >>> print(render_table(["name", "n"], [["a", "1"], ["bb", "22"]]))
    name   n
    a      1
    bb    22
    """
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([line(header)] + [line(r) for r in body])
