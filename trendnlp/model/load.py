"""`load_model(dir, backend=...)`: a saved model folder on the runtime that fits, all with the same
`predict` / `predict_proba` / `predict_outputs` / `labels` (model/predict.py).

    "torch"      TrendClassifier.from_pretrained (LoRA merged for speed)
    "onnx"       model.onnx on onnxruntime            } written by `trendnlp export --format onnx [--int8]`
    "onnx-int8"  model.int8.onnx on onnxruntime       }
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

BACKENDS = ("torch", "onnx", "onnx-int8")


def load_model(directory: str | Path, backend: str = "torch", **kwargs: Any):
    """Load a saved model folder for inference.

    Args:
        directory: a folder written by `TrendClassifier.save_pretrained` (plus its ONNX graphs for the onnx ones).
        backend: "torch", "onnx" or "onnx-int8".
        **kwargs: passed on: `base_model`, `merge_lora`, `device` for torch; `threads` for onnx.
    Returns:
        a `TrendClassifier` in eval mode, or an `OnnxTrendClassifier`.

    >>> clf = load_model("runs/demo/model", backend="onnx-int8")  # doctest: +SKIP
    >>> clf.predict([{"product_id": "mug", "title": "red mug", "sales": [3, 4, 8, 12]}])  # doctest: +SKIP
    ['rising']
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, found {backend!r}")
    if backend == "torch":
        from trendnlp.model.classifier import TrendClassifier

        return TrendClassifier.from_pretrained(directory, **kwargs)
    from trendnlp.model.onnx_backend import OnnxTrendClassifier

    return OnnxTrendClassifier(directory, backend, **kwargs)
