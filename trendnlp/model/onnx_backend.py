"""A saved model run by onnxruntime: `trendnlp.load_model(dir, backend="onnx" | "onnx-int8")`.

Reads the graphs written by `trendnlp export --format onnx` (inference/export.py): model.onnx or
model.int8.onnx (the whole fused model; also returns pooled text embeddings) and head.onnx (sales encoder +
fusion head on pooled texts). Tokenizer and config come from the folder as for the torch model, and every
prediction runs through the same core (model/predict.py), so records are validated, featurised, deduplicated
and batched exactly as there; this class only supplies the runtime primitives. The graphs carry no change head.
A hybrid folder's graphs are its neural branch; the booster (boosting/, LightGBM text) is loaded beside them and
the prediction core blends the two as for the torch model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trendnlp.config import TrendConfig
from trendnlp.model.folder import resolve_stored_path
from trendnlp.model.hybrid import load_blend
from trendnlp.model.predict import Runtime
from trendnlp.model.base_models import load_tokenizer

GRAPHS = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}


class OnnxTrendClassifier(Runtime):
    """A saved trendnlp model on onnxruntime (CPU, or CUDA when onnxruntime-gpu is installed).

    Args:
        directory: the model folder, holding the ONNX graphs written by `trendnlp export --format onnx`.
        backend: "onnx" (fp32 model.onnx) or "onnx-int8" (model.int8.onnx).
        threads: onnxruntime intra-op threads (default: torch's thread count, so both backends compare fairly).
    """

    def __init__(self, directory: str | Path, backend: str = "onnx", threads: int | None = None):
        import onnxruntime as ort

        d = Path(directory)
        if backend not in GRAPHS:
            raise ValueError(f"backend must be one of {list(GRAPHS)}, found {backend!r}")
        path = d / GRAPHS[backend]
        if not path.is_file():
            flag = " --int8" if backend == "onnx-int8" else ""
            raise FileNotFoundError(f"{path}: no ONNX graph for backend {backend!r}; write it with `trendnlp export "
                                    f"--model {d} --format onnx{flag}`")
        meta = json.loads((d / "config.json").read_text(encoding="utf-8"))
        self.config = TrendConfig.from_dict(meta["config"], source=str(d / "config.json"))
        self.onnx_meta = json.loads((d / "onnx.json").read_text(encoding="utf-8"))
        self.backend, self.directory = backend, d
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: no graph-optimizer notes on stderr
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.sessions = {"model": ort.InferenceSession(str(path), opts, providers=providers)}
        if self.onnx_meta.get("head"):
            self.sessions["head"] = ort.InferenceSession(str(d / "head.onnx"), opts, providers=providers)
        self.inputs = {k: {i.name for i in s.get_inputs()} for k, s in self.sessions.items()}
        c = self.config
        self.tokenizer = load_tokenizer(str(d / "tokenizer")) if c.text.enabled else None
        n_channels, n_summary = meta.get("n_sales_channels"), len((meta.get("feature_scaling") or {}).get(
            "summary_names", []))
        self._sales_shape = (c.sales.history, n_channels, n_summary)
        self.device = torch.device("cpu")  # inputs are handed over as arrays
        # a hybrid folder: the booster (LightGBM text, beside the graphs) blended in the prediction core
        self.blend = load_blend(d, meta, resolve_stored_path(d, c.text.base_model))
        self.text_dim = self._text_dim() if c.text.enabled and self.onnx_meta.get("pooled_output") else 0

    def _text_dim(self) -> int:
        out = next(o for o in self.sessions["model"].get_outputs() if o.name == "pooled")
        return int(out.shape[-1])

    def dummy_sales(self, n: int) -> dict[str, torch.Tensor]:
        """Zero sales inputs for n records (only for graphs that read sales)."""
        if not self.config.sales.enabled:
            return {}
        T, C, S = self._sales_shape
        return {"sales": torch.zeros(n, T, C), "summary": torch.zeros(n, S)}

    def run(self, graph: str, feed: dict[str, Any], output: str = "probabilities") -> np.ndarray:
        """One onnxruntime call; `feed` may hold torch tensors or arrays; inputs the graph lacks are dropped."""
        names = self.inputs[graph]
        arrays = {k: (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in feed.items()
                  if k in names}
        for k, v in arrays.items():
            arrays[k] = v.astype(np.int64) if v.dtype.kind in "iu" else v.astype(np.float32)
        return self.sessions[graph].run([output], arrays)[0]

    # ---- the prediction primitives (model/predict.py) ----------------------------------------
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        """Pooled texts (U, H) from the fused graph's `pooled` output (the record-side inputs get one dummy
        record: onnxruntime needs every input, and one head row costs nothing)."""
        feed = {"input_ids": input_ids, "attention_mask": attention_mask,
                "text_index": torch.zeros(1, dtype=torch.long), **self.dummy_sales(1)}
        return self.run("model", feed, "pooled")

    def head_outputs(self, pooled: torch.Tensor | None, text_index: torch.Tensor, sales: dict):
        """Probabilities (B, C) from head.onnx on pooled texts (the whole graph for a sales-only model)."""
        if pooled is None:
            return self.run("model", {"text_index": text_index, **sales}), None
        return self.run("head", {"pooled": pooled, "text_index": text_index, **sales}), None

    def batch_outputs(self, batch: dict[str, torch.Tensor]):
        """Probabilities (B, C) of a collated batch through the whole graph. A batch without any text
        (U = 0) gets one dummy text that no record points to, so every axis stays non-empty."""
        batch = {k: v for k, v in batch.items() if k != "labels"}
        if self.config.text.enabled and batch["input_ids"].shape[0] == 0:
            batch["input_ids"] = torch.zeros(1, 1, dtype=torch.long)
            batch["attention_mask"] = torch.ones(1, 1, dtype=torch.long)
        return self.run("model", batch), None
