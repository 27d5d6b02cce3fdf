"""The model card: README.md in every saved model folder (docs/guide.md), written from config.json and metrics.json.

What it was trained on, the label rule, validation / test metrics when the folder has them (training writes
metrics.json beside the model and rewrites the card), calibration state, what the folder holds and how to
load it. Plain Markdown; nothing here is read back by the library.
"""
from __future__ import annotations

import json
from pathlib import Path

CARD_NAME = "README.md"


def _metrics_table(metrics: dict) -> list[str]:
    rows = ["| split | records | macro-F1 | accuracy | " + " | ".join(f"F1 {c}" for c in metrics["labels"]) + " |",
            "|---|---|---|---|" + "---|" * len(metrics["labels"])]
    for split in ("validation", "test"):
        m = metrics.get(split)
        if not m:
            continue
        f1s = [f"{m['f1'][c]:.4f}" if c in m.get("f1", {}) else "" for c in metrics["labels"]]
        rows.append(f"| {split} | {m.get('n', '')} | {m['macro_f1']:.4f} | {m['accuracy']:.4f} | "
                    + " | ".join(f1s) + " |")
    return rows


def _hybrid_lines(meta: dict) -> list[str]:
    """The model section of a hybrid or boosting-only folder: kind, blend weight, each branch's validation score."""
    h = meta.get("hybrid")
    if not h:
        return []
    scores = h.get("validation_macro_f1") or {}
    b = h.get("boosting") or {}
    params = b.get("params") or {}
    lines = ["", "## Model", "",
             f"- kind: **{h['kind']}**" + (" (LightGBM alone)" if h["kind"] == "boosting" else
                                          " (the neural network above blended with LightGBM)"),
             f"- blend: p = {h['blend_weight']:.2f} x p_neural + {1 - h['blend_weight']:.2f} x p_boosting "
             "(weight chosen on validation macro-F1), then the offsets and temperature below"
             if h["kind"] == "hybrid" else "- the offsets and temperature below apply to LightGBM's probabilities",
             "- validation macro-F1: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if v is not None),
             f"- boosting branch: LightGBM on {b.get('features')} features"
             + (" (with a text-embedding PCA)" if b.get("text") else "")
             + (f", {params.get('rounds')} rounds, {params.get('num_leaves')} leaves" if params else "")
             + "; saved in `boosting/` (LightGBM text format)"]
    if h.get("logit_bias"):
        lines.append("- offsets on the blend: " + ", ".join(f"{n} {v:+.2f}" for n, v in zip(meta["labels"],
                                                                                          h["logit_bias"]))
                     + f"; temperature {h.get('temperature', 1.0):.3f}")
    refit = meta.get("refit")
    if refit:
        lines.append(f"- refit on {refit['records']} records (train + {refit.get('extra_records', 0)} extra + "
                     "validation) with the epochs, rounds and blend chosen on validation")
    return lines


def model_card(meta: dict, metrics: dict | None = None, files: list[str] | None = None) -> str:
    """The card's Markdown text.

    Args:
        meta: the folder's config.json as a dict.
        metrics: the folder's metrics.json ({"validation": {...}, "test": {...}, "best_epoch": ...}) or None.
        files: the folder's file names (for the contents list and the load instructions).
    Returns:
        Markdown text.

    >>> meta = {"config": {"text": {"enabled": False}, "sales": {"enabled": True, "history": 26},
    ...         "fusion": {"method": "concat"}, "data": {}}, "labels": ["rising", "falling", "stable"],
    ...         "label_rule": {"K": 4, "F": 4, "alpha": 1.0, "tau": 0.25}, "versions": {}}
    >>> "rising if change >= log(1 + 0.25)" in model_card(meta)
    True
    """
    c, rule, labels = meta["config"], meta["label_rule"], meta["labels"]
    files = files or []
    text, sales = c.get("text", {}), c.get("sales", {})
    parts = [("text " + f"({text.get('base_model')}, {text.get('finetune')}"
              + (f", LoRA r={text.get('lora_r')}" if text.get("finetune") == "lora" else "") + ")")
             if text.get("enabled", True) else None,
             f"sales history ({sales.get('history')} periods, LSTM)" if sales.get("enabled", True) else None]
    boosting_only = (meta.get("hybrid") or {}).get("kind") == "boosting"
    if boosting_only:
        parts = [f"summaries of the sales history and every channel ({sales.get('history')} periods, LightGBM)"]
    data = c.get("data", {})
    lines = [
        "# trendnlp trend classifier", "",
        f"Predicts whether a product's sales will be **{'**, **'.join(labels)}** over the next "
        f"{rule['F']} periods, from " + " + ".join(p for p in parts if p) +
        ("." if boosting_only else f", fused by `{c.get('fusion', {}).get('method')}`."), "",
        "## Training data", "",
        f"- train: `{data.get('train') or 'n/a (in-memory records)'}`",
        f"- validation: `{data.get('validation') or 'held out from train by cutoff'}`",
        f"- test: `{data.get('test') or 'none'}`",
        f"- seed {c.get('train', {}).get('seed')}, {c.get('train', {}).get('epochs')} epoch(s) at most", "",
        "## Label rule", "",
        "```",
        f"recent = mean(sales[-{rule['K']}:]);  future = mean(future_sales[:{rule['F']}])",
        f"change = log((future + {rule['alpha']}) / (recent + {rule['alpha']}))",
        f"rising if change >= log(1 + {rule['tau']}); falling if change <= -log(1 + {rule['tau']}); else stable",
        "```", "",
        "## Metrics", ""]
    if metrics and (metrics.get("validation") or metrics.get("test")):
        epoch = f" (best epoch {metrics['best_epoch']})" if metrics.get("best_epoch") else ""
        lines += [f"On the records above{epoch}:", ""] + _metrics_table({**metrics, "labels": labels})
    else:
        lines += ["Not measured yet: `trendnlp evaluate --model DIR --data records.jsonl` reports them."]
    lines += _hybrid_lines(meta)
    bias = (meta.get("calibration") or {}).get("logit_bias")
    temperature = float((meta.get("calibration") or {}).get("temperature", 1.0))
    lines += ["", "## Calibration", "",
              ("Per-class logit offsets fitted on validation macro-F1, applied at inference: "
               + ", ".join(f"{n} {b:+.2f}" for n, b in zip(labels, bias)) if bias and any(bias)
               else "No logit offsets (all zero)")
              + (f"; then temperature {temperature:.3f} (fitted on validation NLL), so probabilities are calibrated."
                 if temperature != 1.0 else "; no temperature scaling (T = 1)."), ""]
    sc = meta.get("self_contained")
    lines += ["## Files", "",
              "- `config.json`: configuration, label order and rule, feature scaling, versions",
              *([] if boosting_only else ["- `model.safetensors`: sales encoder, fusion head, offsets"])]
    if "adapter" in files:
        lines.append(f"- `adapter/`: LoRA adapter on `{text.get('base_model')}` (peft format)")
    if "encoder" in files:
        lines.append("- `encoder/`: the " + ("LoRA-merged " if text.get("finetune") == "lora" else "")
                     + "text encoder (safetensors): the folder loads without its base model")
    if "tokenizer" in files:
        lines.append("- `tokenizer/`: tokenizer files")
    if "boosting" in files:
        lines.append("- `boosting/`: the LightGBM branch (`model.txt` in LightGBM's text format, `boosting.json`)")
    onnx = [f for f in ("model.onnx", "model.int8.onnx", "head.onnx") if f in files]
    if onnx:
        lines.append(f"- {', '.join(f'`{f}`' for f in onnx)}: ONNX graphs for onnxruntime")
    lines += ["", "## How to load", "", "```python", "from trendnlp import TrendClassifier", "",
              'clf = TrendClassifier.from_pretrained("path/to/this/folder")'
              + ("" if sc or not text.get("enabled", True) else "  # needs the base encoder named above"),
              'clf.predict([{"product_id": "mug-1", "title": "red mug", "sales": [3, 4, 8, 12]}])', "```", "",
              "Batch labeling: `trendnlp label --model DIR --input catalog.parquet --output labels.csv`"
              + (" (`--backend onnx` / `onnx-int8` for the ONNX graphs)." if onnx else "."),
              "", f"Versions: {', '.join(f'{k} {v}' for k, v in meta.get('versions', {}).items() if v)}.", ""]
    return "\n".join(lines)


def write_model_card(directory: str | Path) -> Path:
    """Write (or rewrite) DIR/README.md from DIR/config.json and, when present, DIR/metrics.json.

    Args:
        directory: a saved model folder.
    Returns:
        the card's path.

    >>> write_model_card("runs/demo/model")  # doctest: +SKIP
    PosixPath('runs/demo/model/README.md')
    """
    d = Path(directory)
    meta = json.loads((d / "config.json").read_text(encoding="utf-8"))
    metrics = json.loads((d / "metrics.json").read_text(encoding="utf-8")) if (d / "metrics.json").is_file() else None
    card = model_card(meta, metrics, sorted(p.name for p in d.iterdir()))
    (d / CARD_NAME).write_text(card, encoding="utf-8")
    return d / CARD_NAME
