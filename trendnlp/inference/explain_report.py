"""Pictures of explanations: one PNG per product and an HTML page of many (PNGs embedded as base64).

Built on `matplotlib.figure.Figure` with the Agg canvas (never pyplot), like evaluation/plots.py.
"""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from trendnlp.evaluation.plots import _period_axis

_COLORS = {"rising": "#2a9d8f", "falling": "#e76f51", "stable": "#8d99ae"}
_PUSH, _AGAINST = "#2a9d8f", "#e76f51"


def explanation_figure(record: Mapping, explanation: Mapping) -> Figure:
    """History with the cutoff and saliency shading, the top words, the probabilities and the text/sales split.

    Args:
        record: the explained record (sales, cutoff, freq, title...).
        explanation: its `explain` dict.
    Returns:
        a matplotlib Figure (save it with `figure_png`).
    """
    sal = np.asarray(explanation["sales_saliency"], dtype=float)
    sales = np.asarray(record["sales"], dtype=float)[-len(sal):] if len(sal) else np.asarray(record["sales"], float)
    x, _ = _period_axis(record.get("cutoff"), record.get("freq") or "W", len(sales), 1)
    fig = Figure(figsize=(11, 3.3))
    ax, ax_w, ax_p = fig.subplots(1, 3, width_ratios=[3.2, 1.5, 1.2])
    fig.subplots_adjust(wspace=0.45, left=0.06, right=0.98, bottom=0.22, top=0.82)
    ax.plot(range(len(sales)), sales, marker=".", color="#264653", lw=1.5, zorder=3)
    top = float(np.abs(sal).max()) if len(sal) and np.abs(sal).max() > 0 else 1.0
    for j, v in enumerate(sal):  # a band per period: green pushed toward the prediction, red against it
        ax.axvspan(j - 0.5, j + 0.5, color=_PUSH if v > 0 else _AGAINST, alpha=0.55 * abs(v) / top, lw=0)
    ax.axvline(len(sales) - 0.5, color="black", ls=":", lw=1)
    ax.annotate("cutoff", (len(sales) - 0.5, 1), xycoords=("data", "axes fraction"), ha="right", va="top",
                fontsize=8)
    ticks = list(range(0, len(sales), max(1, len(sales) // 6)))
    ax.set_xticks(ticks, [str(x[j]) for j in ticks], rotation=25, fontsize=7)
    ax.set_xlim(-0.5, len(sales) - 0.5)
    ax.set_ylabel("units per period", fontsize=8)
    ax.grid(alpha=0.25)
    name = (record.get("title") or record.get("description") or "")[:55]
    ax.set_title(f"{record['product_id']}  {name}   (cutoff {record.get('cutoff') or '?'})\n"
                 "shading: sales saliency (green pushed toward the prediction, red against)", fontsize=9)
    words = explanation["top_words"][:8][::-1]
    if words:
        vals = [w["attribution"] for w in words]
        ax_w.barh(range(len(words)), vals, color=[_PUSH if v > 0 else _AGAINST for v in vals])
        ax_w.set_yticks(range(len(words)), [w["word"] for w in words], fontsize=8)
        ax_w.axvline(0, color="grey", lw=0.8)
        ax_w.tick_params(axis="x", labelsize=7)
        ax_w.xaxis.set_major_locator(MaxNLocator(3))  # small signed numbers: more ticks overlap
    else:
        ax_w.text(0.5, 0.5, "no text", ha="center", va="center", transform=ax_w.transAxes, fontsize=9)
        ax_w.set_xticks([])
        ax_w.set_yticks([])
    ax_w.set_title("top words (log-prob.)", fontsize=9)
    labels = list(explanation["probabilities"])
    p = [explanation["probabilities"][c] for c in labels]
    bars = ax_p.barh(labels, p, color=[_COLORS.get(c, "grey") for c in labels])
    ax_p.bar_label(bars, [f"{v:.0%}" for v in p], fontsize=8, padding=2)
    ax_p.set_xlim(0, 1.25)
    ax_p.invert_yaxis()
    ax_p.tick_params(labelsize=8)
    sh, boost = explanation["shapley"], explanation.get("boosting")
    share = f"text {sh['text']:+.2f} / sales {sh['sales']:+.2f}" if sh else "boosting only"
    if boost and sh:
        share += f"\nblend: neural weight {boost['blend_weight']:.1f}"
    ax_p.set_title(f"predicted: {explanation['label']}", fontsize=9)
    ax_p.set_xlabel(share + (f"\ngate (text) {explanation['gate']:.2f}" if explanation.get("gate") is not None
                             else ""), fontsize=8)
    return fig


def figure_png(fig: Figure, path: str | Path | None = None, dpi: int = 90) -> bytes:
    """PNG bytes of a figure (also written to `path` when given)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = buf.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def _boosting_line(b: Mapping) -> str:
    """The boosting branch's part of a card: blend weight and its strongest features (tree SHAP, raw score)."""
    feats = ", ".join(f"{f['feature']} {f['contribution']:+.3f}" for f in b["top_features"][:5])
    return (f"<br>boosting branch (neural weight {b['blend_weight']:.1f}): "
            f"{html.escape(feats)} (tree SHAP of {html.escape(b['class'])}, raw score)")


def write_explanations_html(records: Sequence[Mapping], explanations: Sequence[Mapping], path: str | Path,
                            title: str = "trendnlp explanations") -> Path:
    """A self-contained HTML page: per product its figure (base64 PNG) and a line of numbers.

    Args:
        records: the explained records.
        explanations: their `explain` dicts, same order.
        path: the .html file to write.
        title: page title.
    Returns:
        the written path.

    >>> write_explanations_html(recs, clf.explain(recs), "report.html")  # doctest: +SKIP
    """
    cards = []
    for r, e in zip(records, explanations):
        png = base64.b64encode(figure_png(explanation_figure(r, e))).decode("ascii")
        sh = e["shapley"]
        periods = ", ".join(f"{p['period_end'] or p['index']} ({p['units']:g} units)" for p in e["top_periods"])
        review = (f"<br>most influential review: &ldquo;{html.escape(e['review']['text'])}&rdquo; "
                  f"(without it p = {e['review']['p_without']:.2f})" if e.get("review") else "")
        cards.append(
            f'<section class="card"><h2>{html.escape(str(r["product_id"]))} &middot; '
            f'{html.escape((r.get("title") or "")[:80])} &middot; <span class="{html.escape(e["label"])}">'
            f'{html.escape(e["label"])} {e["probabilities"][e["label"]]:.0%}</span></h2>'
            f'<img alt="explanation of {html.escape(str(r["product_id"]))}" src="data:image/png;base64,{png}">'
            + (f'<p>log p({html.escape(e["label"])}) = {sh["value"]:.3f}; without text and sales {sh["base"]:.3f}; '
               f'Shapley: text {sh["text"]:+.3f}, sales {sh["sales"]:+.3f}' if sh else "<p>")
            + (f'; gate {e["gate"]:.2f}' if e.get("gate") is not None else "")
            + (_boosting_line(e["boosting"]) if e.get("boosting") else "")
            + (f"<br>periods that pushed toward {html.escape(e['label'])}: {html.escape(periods)}" if periods else "")
            + review + "</p></section>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 20px; color: #222; background: #fafafa; }}
.card {{ background: white; border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; margin: 0 0 14px 0;
         max-width: 1010px; }}
.card h2 {{ font-size: 15px; margin: 4px 0; }}
.card p {{ font-size: 13px; margin: 4px 0 6px 0; line-height: 1.4; }}
img {{ width: 990px; max-width: 100%; }}
.rising {{ color: #2a9d8f; }} .falling {{ color: #e76f51; }} .stable {{ color: #5c677d; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(cards)} products. Shapley values split the log-probability of the predicted class between the text and
the sales input (baselines: the model's empty-text vector, an all-zero sales history). The shading shows
Integrated Gradients over the sales history; the bars the words that moved the prediction most.</p>
{''.join(cards)}
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
