"""Figures as PNG files: confusion matrix, training curves, one product's history with its predicted trend.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly, never through pyplot, so
importing this module neither needs a display nor changes the backend of a notebook that imports it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trendnlp.data.inputs.features import period_ends
from trendnlp.labels import LabelRule

_TREND_COLORS = {"rising": "#2a9d8f", "falling": "#e76f51", "stable": "#8d99ae"}


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_confusion_matrix(metrics: Mapping, path: str | Path, title: str = "Confusion matrix") -> Path:
    """Confusion matrix with counts and row percentages (recall per true class).

    Args:
        metrics: a `metrics.classification_metrics` dict (uses `confusion_matrix` and `labels`).
        path: PNG file to write.
        title: figure title.
    Returns:
        the written path.

    >>> from trendnlp.evaluation.metrics import classification_metrics
    >>> m = classification_metrics([0, 1, 2], [0, 1, 1], ["rising", "falling", "stable"])
    >>> plot_confusion_matrix(m, "/tmp/cm.png").name
    'cm.png'
    """
    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    labels = list(metrics["labels"])
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    sub = f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}" if "accuracy" in metrics else ""
    ax.set_title(f"{title}\n{sub}" if sub else title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    return _save(fig, path)


def plot_training_curves(history: Sequence[Mapping], path: str | Path) -> Path:
    """Train loss and validation macro-F1 per epoch, the best epoch marked.

    Args:
        history: per-epoch dicts as written by training (`epoch`, `train_loss`, `validation` with `macro_f1`).
        path: PNG file to write.
    Returns:
        the written path.
    """
    epochs = [h["epoch"] for h in history]
    loss = [h.get("train_loss", float("nan")) for h in history]
    f1 = [h.get("validation", {}).get("macro_f1", float("nan")) for h in history]
    fig = Figure(figsize=(8, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, loss, marker="o", color="#264653")
    ax1.set_title("train loss")
    ax1.set_xlabel("epoch")
    ax2.plot(epochs, f1, marker="o", color="#2a9d8f")
    if f1 and not all(np.isnan(f1)):
        best = int(np.nanargmax(f1))
        ax2.scatter([epochs[best]], [f1[best]], s=120, facecolors="none", edgecolors="#e76f51", zorder=3,
                    label=f"best: epoch {epochs[best]} ({f1[best]:.3f})")
        ax2.legend(loc="lower right", fontsize=8)
    ax2.set_title("validation macro-F1")
    ax2.set_xlabel("epoch")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.set_xticks(epochs)
    return _save(fig, path)


def plot_product_history(record: Mapping, path: str | Path, proba: Sequence[float] | None = None,
                         labels: Sequence[str] = ("rising", "falling", "stable"), rule: LabelRule | None = None,
                         title: str | None = None) -> Path:
    """One product's sales history, its cutoff, the true future (if known) and the predicted trend.

    The future window is shaded by the label rule's zones: above the band is `rising`, below is
    `falling`, inside is `stable`, measured against the mean of the last K periods.

    Args:
        record: a normalised record (`sales`, optional `cutoff`, `freq`, `future_sales`, `label`, `title`).
        path: PNG file to write.
        proba: predicted probabilities in `labels` order (None: no prediction panel).
        labels: order of `proba`.
        rule: label rule for the zones (default rule when None).
        title: figure title (default: product id and title).
    Returns:
        the written path.
    """
    rule = rule or LabelRule()
    sales = np.asarray(record["sales"], dtype=float)
    future = np.asarray(record.get("future_sales") or [], dtype=float)
    n, h = len(sales), max(len(future), rule.F)
    x_hist, x_fut = _period_axis(record.get("cutoff"), record.get("freq") or "W", n, h)
    fig = Figure(figsize=(9, 3.6) if proba is not None else (7, 3.6))
    axes = fig.subplots(1, 2, width_ratios=[3, 1]) if proba is not None else [fig.subplots()]
    ax = axes[0]
    ax.plot(x_hist, sales, marker=".", color="#264653", label="history")
    cutoff_x = x_hist[-1]
    ax.axvline(cutoff_x, color="black", ls=":", lw=1)
    ax.annotate("cutoff", (cutoff_x, 1), xycoords=("data", "axes fraction"), ha="right", va="top", fontsize=8)
    # zones of the label rule over the horizon: (future + a) / (recent + a) vs 1 +- tau
    recent, a, thr = float(sales[-rule.K:].mean()), rule.alpha, 1 + rule.tau
    hi, lo = (recent + a) * thr - a, max((recent + a) / thr - a, 0.0)
    top = max(float(sales.max()), float(future.max()) if len(future) else 0.0, hi) * 1.1 + 1e-9
    span = x_fut[: rule.F]
    ax.fill_between(span, hi, top, color=_TREND_COLORS["rising"], alpha=0.12, step="mid")
    ax.fill_between(span, lo, hi, color=_TREND_COLORS["stable"], alpha=0.12, step="mid")
    ax.fill_between(span, 0, lo, color=_TREND_COLORS["falling"], alpha=0.12, step="mid")
    ax.plot(x_hist[-rule.K:], [recent] * min(rule.K, n), color="#e9c46a", lw=2, label=f"recent mean (K={rule.K})")
    if len(future):
        ax.plot(np.concatenate([[cutoff_x], x_fut[: len(future)]]), np.concatenate([[sales[-1]], future]),
                marker=".", ls="--", color="#6d597a", label=f"true future ({record.get('label') or '?'})")
    ax.set_ylim(0, top)
    ax.set_ylabel("units per period")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    if isinstance(x_hist[0], dt.date):
        ax.tick_params(axis="x", labelrotation=30)
    name = record.get("title") or record.get("description") or ""
    ax.set_title(title or f"{record.get('product_id', '')} {name[:60]}".strip(), fontsize=10)
    if proba is not None:
        p = np.asarray(proba, dtype=float)
        pred = labels[int(p.argmax())]
        bars = axes[1].barh(list(labels), p, color=[_TREND_COLORS.get(c, "grey") for c in labels])
        axes[1].bar_label(bars, [f"{v:.0%}" for v in p], fontsize=8, padding=2)
        axes[1].set_xlim(0, 1.15)
        axes[1].invert_yaxis()
        axes[1].set_title(f"predicted: {pred}", fontsize=10)
    return _save(fig, path)


def _period_axis(cutoff: str | None, freq: str, n: int, h: int) -> tuple[list, list]:
    """x positions of the n history periods and the h following ones: dates when cutoff is known."""
    if cutoff:
        dates = period_ends(cutoff, n, freq)
        step = {"W": dt.timedelta(weeks=1), "D": dt.timedelta(days=1)}.get(freq)
        if step is not None:
            return dates, [dates[-1] + step * (i + 1) for i in range(h)]
        fut = period_ends(_add_months(dates[-1], h), h, "M")
        return dates, fut
    return list(range(-n + 1, 1)), list(range(1, h + 1))


def _add_months(d: dt.date, k: int) -> str:
    y, m = divmod(d.month - 1 + k, 12)
    return dt.date(d.year + y, m + 1, 28).isoformat()


def plot_reliability_diagram(report: Mapping, path: str | Path, title: str = "Reliability") -> Path:
    """Accuracy against confidence per bin, before and after temperature scaling, with bin counts below.

    Args:
        report: a `model.calibration.calibration_report` dict (bins_before, bins_after, ECE, temperature).
        path: PNG file to write.
        title: figure title.
    Returns:
        the written path.

    >>> import numpy as np
    >>> from trendnlp.model.calibration import calibration_report
    >>> r = calibration_report(np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([0, 0]), temperature=1.5)
    >>> plot_reliability_diagram(r, "/tmp/rel.png").name
    'rel.png'
    """
    fig = Figure(figsize=(5.2, 5.4))
    ax, ax_n = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect calibration")
    for key, color, name in (("before", "#e76f51", "before"), ("after", "#2a9d8f", f"after (T={report['temperature']:.2f})")):
        bins = [b for b in report[f"bins_{key}"] if b["count"]]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color=color,
                label=f"{name}: ECE {report[f'ece_{key}']:.3f}, Brier {report[f'brier_{key}']:.3f}")
        mids = [(b["lo"] + b["hi"]) / 2 for b in report[f"bins_{key}"]]
        width = (report[f"bins_{key}"][0]["hi"] - report[f"bins_{key}"][0]["lo"]) / 2
        ax_n.bar([m + (width / 2 if key == "after" else -width / 2) for m in mids],
                 [b["count"] for b in report[f"bins_{key}"]], width=width, color=color, alpha=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} ({report['n_bins']} bins on top-class confidence)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    ax_n.set_xlabel("confidence of the predicted class")
    ax_n.set_ylabel("records")
    ax_n.grid(alpha=0.3)
    return _save(fig, path)


def plot_coverage_accuracy(rows: Sequence[Mapping], path: str | Path, title: str = "Coverage vs accuracy") -> Path:
    """Accuracy of the records kept and their share, as the minimum confidence P rises.

    Args:
        rows: `model.calibration.coverage_accuracy` dicts (min_confidence, coverage, accuracy).
        path: PNG file to write.
        title: figure title.
    Returns:
        the written path.

    >>> plot_coverage_accuracy([{"min_confidence": 0.0, "coverage": 1.0, "accuracy": 0.5}], "/tmp/cov.png").name
    'cov.png'
    """
    t = [r["min_confidence"] for r in rows]
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    ax.plot(t, [r["coverage"] for r in rows], marker=".", color="#264653", label="coverage (share labelled)")
    ax.plot(t, [r["accuracy"] for r in rows], marker=".", color="#2a9d8f", label="accuracy of the labelled")
    ax.set_xlabel("--min-confidence P (top probability below P: uncertain)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
