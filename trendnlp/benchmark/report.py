"""The benchmark report: one results table (Markdown and plain text), figures, and a self-contained HTML page.

Figures (PNG, matplotlib through the Agg canvas, as in plots.py):
    confusion_matrix_fused.png    the fused model on test (first seed)
    validation_f1.png             validation macro-F1 per epoch of every neural run
    per_class_f1.png              per-class test F1 of every row, side by side
    products/*.png                a few test products: history, cutoff, true future, predicted trend
report.html embeds every figure as base64, so the one file can be mailed or archived on its own.
"""
from __future__ import annotations

import base64
import html
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from trendnlp.labels import LABELS
from trendnlp.evaluation.plots import _save, plot_confusion_matrix, plot_product_history

HIGHLIGHTED = ("trendnlp", "fused")  # the rows set in bold: the saved product, else the best fused ablation
_COLUMNS = ("name", "test accuracy", "test macro-F1", "std", "min", *(f"F1 {c}" for c in LABELS), "val macro-F1",
            "new-product macro-F1", "seeds")


def _cells(row: Mapping) -> list[str]:
    def num(x):
        return "" if x is None else f"{x:.3f}"

    neural = row.get("kind") in ("neural", "product", "branch")  # rows with several seeds
    return [row["name"], num(row["accuracy"]), num(row["macro_f1"]), num(row.get("macro_f1_std")) if neural else "",
            num(row.get("macro_f1_min")) if neural else "", *(num(row["f1_per_class"][c]) for c in LABELS),
            num(row.get("val_macro_f1")), num(row.get("slice_macro_f1")), ",".join(map(str, row.get("seeds", [])))]


def format_results_table(rows: Sequence[Mapping]) -> str:
    """The results as a plain-text table (one line per row; std / min only for the neural rows).

    >>> row = {"name": "majority", "accuracy": 0.27, "macro_f1": 0.14, "seeds": [0], "val_macro_f1": 0.14,
    ...        "f1_per_class": {"rising": 0.43, "falling": 0.0, "stable": 0.0}}
    >>> format_results_table([row]).splitlines()[1].split()[:3]
    ['majority', '0.270', '0.140']
    """
    body = [_cells(r) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(_COLUMNS, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(list(_COLUMNS))] + [line(b) for b in body])


def markdown_table(rows: Sequence[Mapping]) -> str:
    """The results as a Markdown table (same columns as `format_results_table`)."""
    out = ["| " + " | ".join(_COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(_COLUMNS) - 1)) + "|"]
    for r in rows:
        cells = _cells(r)
        cells[0] = f"**{cells[0]}**" if r["name"] in HIGHLIGHTED else cells[0]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


# ---- figures -------------------------------------------------------------------------------------
def plot_per_class_f1(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Grouped bars: per-class test F1 (and macro-F1) of every row; neural rows carry their min..max over seeds.

    Args:
        rows: result rows (`name`, `f1_per_class`, `macro_f1`, optional `runs` with per-seed metrics).
        path: PNG file to write.
    Returns:
        the written path.
    """
    groups = [*LABELS, "macro"]
    width = 0.8 / max(len(rows), 1)
    fig = Figure(figsize=(max(8.0, 1.0 + 0.45 * len(rows) * len(groups) / 2), 4.4))
    ax = fig.add_subplot()
    cmap = _colors(len(rows))
    x = np.arange(len(groups))
    for i, r in enumerate(rows):
        vals = [r["f1_per_class"][c] for c in LABELS] + [r["macro_f1"]]
        err = None
        if r.get("runs") and len(r["runs"]) > 1:
            per = np.array([[run["f1_per_class"][c] for c in LABELS] + [run["macro_f1"]] for run in r["runs"]])
            err = np.stack([vals - per.min(0), per.max(0) - vals])
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, yerr=err, capsize=2, label=r["name"], color=cmap[i],
               edgecolor="black" if r["name"] in HIGHLIGHTED else None, linewidth=1.2)
    ax.set_xticks(x, [f"F1 {g}" if g != "macro" else "macro-F1" for g in groups])
    ax.set_ylabel("test F1")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Per-class F1 on test (neural rows: mean over seeds, bars min..max)", fontsize=10)
    return _save(fig, path)


def plot_validation_curves(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Validation macro-F1 per epoch of every neural run (one colour per variant, one line per seed)."""
    neural = [r for r in rows if r.get("runs") and r["name"] != "fused"]
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for color, r in zip(_colors(len(neural)), neural):
        for j, run in enumerate(r["runs"]):
            curve = run.get("val_curve") or []
            ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, color=color, alpha=0.9,
                    label=r["name"] if j == 0 else None)
            if run.get("best_epoch"):
                ax.scatter([run["best_epoch"]], [run["val_macro_f1"]], s=60, facecolors="none", edgecolors=color)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation macro-F1")
    ax.set_title("Validation macro-F1 per epoch (circles: the exported best epoch)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def pick_examples(records: Sequence[dict], n: int, seed: int = 0) -> list[dict]:
    """Up to n records of the latest cutoff, spread over the true labels (seeded draw, distinct products)."""
    if n <= 0 or not records:
        return []
    last = max(r.get("cutoff") or "" for r in records)
    pool = [r for r in records if (r.get("cutoff") or "") == last]
    rng = np.random.default_rng(seed)
    by_label = {c: [r for r in pool if r.get("label") == c] for c in LABELS}
    picked: list[dict] = []
    while len(picked) < min(n, len(pool)):
        for c in LABELS:
            if by_label[c] and len(picked) < n:
                picked.append(by_label[c].pop(int(rng.integers(len(by_label[c])))))
        if not any(by_label.values()):
            break
    return picked


def plot_examples(model_dir: str | Path, records: Sequence[dict], out_dir: Path, rule=None) -> list[Path]:
    """History + predicted trend plots (plots.plot_product_history) of `records` under a saved model."""
    from trendnlp.model.classifier import TrendClassifier

    if not records:
        return []
    clf = TrendClassifier.from_pretrained(model_dir)
    proba = clf.predict_proba(list(records))
    paths = []
    for i, (rec, p) in enumerate(zip(records, proba)):
        name = "".join(ch if ch.isalnum() else "_" for ch in str(rec["product_id"]))
        paths.append(plot_product_history(rec, out_dir / f"{i:02d}_{name}.png", proba=p, labels=clf.labels,
                                          rule=rule or clf.config.labels.rule()))
    return paths


# ---- the whole report ----------------------------------------------------------------------------
def write_report(results: Mapping, parts: Mapping[str, Sequence[dict]], out_dir: str | Path, n_examples: int = 6,
                 timings: Mapping[str, float] | None = None) -> dict[str, Path]:
    """Write results.md, the figures and report.html for a benchmark's results.

    Args:
        results: {"rows": [...], "seeds", ...} as built by benchmark.run_benchmark.
        parts: the split records ("test" is used for the product examples).
        out_dir: the benchmark folder.
        n_examples: test products plotted with the fused model's prediction.
        timings: stage -> seconds, listed in the report.
    Returns:
        {figure or file name: path}.
    """
    out = Path(out_dir)
    rows = list(results["rows"])
    files: dict[str, Path] = {}
    files["per_class_f1"] = plot_per_class_f1(rows, out / "per_class_f1.png")
    neural = [r for r in rows if r.get("runs")]
    if neural:
        files["validation_f1"] = plot_validation_curves(rows, out / "validation_f1.png")
        best = next((r for n in HIGHLIGHTED for r in rows if r["name"] == n), None) or max(
            neural, key=lambda r: r["val_macro_f1"])
        first = best["runs"][0]
        metrics = {"labels": list(LABELS), "confusion_matrix": first["confusion_matrix"],
                   "accuracy": first["accuracy"], "macro_f1": first["macro_f1"]}
        files["confusion_matrix"] = plot_confusion_matrix(
            metrics, out / "confusion_matrix_fused.png", f"{best['name']} ({best.get('variant', best['name'])}), "
            f"test, seed {first['seed']}")
        shutil.rmtree(out / "products", ignore_errors=True)  # an earlier run's examples
        for i, p in enumerate(plot_examples(first["model_dir"], pick_examples(parts["test"], n_examples),
                                            out / "products")):
            files[f"product_{i}"] = p
    (out / "results.md").write_text(results_markdown(results, timings), encoding="utf-8")
    files["results.md"] = out / "results.md"
    files["report.html"] = write_html(results, files, out / "report.html", timings)
    return files


def results_markdown(results: Mapping, timings: Mapping[str, float] | None = None) -> str:
    """results.md: the table, what `fused` is, the record counts, the stage times."""
    rows = results["rows"]
    lines = ["# Benchmark results", "", markdown_table(rows), ""]
    fused = next((r for r in rows if r["name"] == "fused"), None)
    if fused:
        lines.append(f"`fused` is `{fused['variant']}`, chosen by {fused['selected_by']}.")
    product = next((r for r in rows if r["name"] == "trendnlp"), None)
    if product:
        w = [run["blend_weight"] for run in product.get("runs", []) if run.get("blend_weight") is not None]
        lines.append("`trendnlp` is the saved model exactly as `trendnlp train` builds it; `trendnlp:neural` and "
                     "`trendnlp:boosting` are its branches alone" + (
                         "; the neural branch's blend weight per seed: " + ", ".join(f"{x:.2f}" for x in w)
                         if w else "") + ".")
    lines.append(f"Neural rows: mean over seeds {results.get('seeds')}; std and min of test macro-F1 over seeds. "
                 "Baselines choose their hyper-parameters on validation.")
    calib = calibration_lines(rows)
    if calib:
        lines += ["", "Calibration on test (ECE: 15 equal-width bins on top-class confidence; mean over seeds):", "",
                  *calib, ""]
    if results.get("slice"):
        lines.append(f"New-product macro-F1: {results['slice']}.")
    lines += [f"Note: {n}" for n in results.get("notes", [])]
    for r in rows:
        if r.get("change_mae") is not None and r["name"] != "fused":
            lines.append(f"`{r['name']}` change head: test MAE of `expected_change` {r['change_mae']:.3f}, "
                         f"persistence (change = 0) {r['persistence_change_mae']:.3f}.")
    if results.get("records"):
        lines.append("Records: " + ", ".join(f"{k} {v:,}" for k, v in results["records"].items()) + ".")
    if timings:
        lines += ["", "| stage | seconds |", "|---|---:|"] + [f"| {k} | {v:.1f} |" for k, v in timings.items()]
        lines.append(f"| total | {sum(timings.values()):.1f} |")
    return "\n".join(lines) + "\n"


def calibration_lines(rows: Sequence[Mapping]) -> list[str]:
    """A markdown table of test ECE and Brier score before / after temperature scaling (neural rows that have it)."""
    rows = [r for r in rows if "ece_after" in r]
    if not rows:
        return []
    return ["| name | ECE before | ECE after | Brier before | Brier after |", "|---|---:|---:|---:|---:|"] + [
        f"| {r['name']} | {r['ece_before']:.4f} | {r['ece_after']:.4f} | {r['brier_before']:.4f} | "
        f"{r['brier_after']:.4f} |" for r in rows]


def write_html(results: Mapping, files: Mapping[str, Path], path: Path,
               timings: Mapping[str, float] | None = None) -> Path:
    """A self-contained HTML page: the table, the timings and every PNG embedded as a base64 data URI."""
    rows = results["rows"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
    body = "".join("<tr" + (' class="fused"' if r["name"] in HIGHLIGHTED else "") + ">" +
                   "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>" for r in rows)
    figures = []
    for key, p in files.items():
        if Path(p).suffix == ".png":
            data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
            figures.append(f'<figure><img alt="{html.escape(key)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{html.escape(Path(p).name)}</figcaption></figure>")
    times = ""
    if timings:
        times = "<h2>Time per stage</h2><table><tr><th>stage</th><th>seconds</th></tr>" + "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.1f}</td></tr>" for k, v in timings.items()) + \
            f"<tr><td>total</td><td>{sum(timings.values()):.1f}</td></tr></table>"
    calib = [r for r in rows if "ece_after" in r]
    if calib:  # test ECE / Brier before and after temperature scaling
        times = ("<h2>Calibration on test (temperature scaling)</h2><table><tr><th>name</th><th>ECE before</th>"
                 "<th>ECE after</th><th>Brier before</th><th>Brier after</th></tr>" + "".join(
                     f"<tr><td>{html.escape(r['name'])}</td>" + "".join(f"<td>{r[k]:.4f}</td>" for k in (
                         "ece_before", "ece_after", "brier_before", "brier_after")) + "</tr>" for r in calib)
                 + "</table>" + times)
    fused = next((r for r in rows if r["name"] == "fused"), None)
    note = f"<p><code>fused</code> is <code>{html.escape(fused['variant'])}</code>, chosen by " \
           f"{html.escape(fused['selected_by'])}.</p>" if fused else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>trendnlp benchmark</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 12px 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.fused {{ font-weight: bold; background: #eef6f4; }}
figure {{ display: inline-block; margin: 8px; vertical-align: top; }}
img {{ max-width: 1100px; border: 1px solid #eee; }}
</style></head><body>
<h1>trendnlp benchmark</h1>
<p>Test metrics; neural rows are the mean over seeds {html.escape(str(results.get('seeds')))} with the std and
min of macro-F1. Every choice (baseline hyper-parameters, best epoch, fusion method) uses validation only.</p>
<table><tr>{head}</tr>{body}</table>
{note}
{times}
<h2>Figures</h2>
{''.join(figures)}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
