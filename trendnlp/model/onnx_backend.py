"""A saved model run by onnxruntime: `TrendClassifier.from_pretrained(dir, backend="onnx" | "onnx-int8")`.

Reads the graphs written by `trendnlp export --format onnx` (inference/export.py): model.onnx or
model.int8.onnx (the whole fused model; also returns pooled text embeddings) and head.onnx (sales encoder +
fusion head on pooled texts). Tokenizer, collator and config come from the folder as for the torch backend,
so records are validated, featurised and deduplicated exactly as there.

Duck-types the parts of `TrendClassifier` that prediction and batch labeling use: `config`, `labels`,
`tokenizer`, `make_collator`, `predict_proba`, `predict`, and stand-ins for `text_encoder` (pooled
embeddings of token batches), `sales_encoder` and `fusion.needs_tokens`.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from trendnlp.config import TrendConfig
from trendnlp.data.collate import TrendCollator
from trendnlp.model.text_encoder import load_tokenizer

BACKENDS = ("torch", "onnx", "onnx-int8")
_GRAPHS = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}


class OnnxTextEncoder:
    """Pooled embeddings (U, H) of token batches, from the fused graph's `pooled` output (the record-side
    inputs get one dummy record: onnxruntime needs every input, and one head row costs nothing)."""

    def __init__(self, owner: "OnnxTrendClassifier", output_dim: int):
        self.owner, self.output_dim = owner, output_dim

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask,
                "text_index": torch.zeros(1, dtype=torch.long), **self.owner.dummy_sales(1)}
        return torch.from_numpy(self.owner.run("model", feed, "pooled"))


class OnnxTrendClassifier:
    """A saved trendnlp model on onnxruntime (CPU, or CUDA when onnxruntime-gpu is installed).

    Args:
        directory: the model folder, holding the ONNX graphs written by `trendnlp export --format onnx`.
        backend: "onnx" (fp32 model.onnx) or "onnx-int8" (model.int8.onnx).
        threads: onnxruntime intra-op threads (default: torch's thread count, so both backends compare fairly).
    """

    def __init__(self, directory: str | Path, backend: str = "onnx", threads: int | None = None):
        import onnxruntime as ort

        d = Path(directory)
        if backend not in _GRAPHS:
            raise ValueError(f"backend must be one of {list(_GRAPHS)}, found {backend!r}")
        path = d / _GRAPHS[backend]
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
        self.text_encoder = None
        if c.text.enabled:  # cross attention has no pooled output: the labeler then runs the whole graph
            self.text_encoder = OnnxTextEncoder(self, self._text_dim() if self.onnx_meta.get("pooled_output") else 0)
        self.sales_encoder = True if c.sales.enabled else None  # stand-in: "this model reads sales"
        self.fusion = SimpleNamespace(needs_tokens=c.fusion.method == "cross_attention")

    def _text_dim(self) -> int:
        out = next(o for o in self.sessions["model"].get_outputs() if o.name == "pooled")
        return int(out.shape[-1])

    @property
    def labels(self) -> list[str]:
        """Class names in the order of probability columns."""
        return list(self.config.labels.names)

    def parameters(self):
        """A CPU tensor, for code that asks a model which device it runs on."""
        yield torch.empty(0)

    def eval(self) -> "OnnxTrendClassifier":
        return self

    def make_collator(self, dedup: bool = True, pad_to_max_length: bool = False) -> TrendCollator:
        """The same collator as the torch model's (tokenization, sales features)."""
        c = self.config
        return TrendCollator(self.tokenizer, c.text, c.sales, self.labels, K=c.labels.K, alpha=c.labels.alpha,
                             dedup=dedup, pad_to_max_length=pad_to_max_length)

    def dummy_sales(self, n: int) -> dict[str, torch.Tensor]:
        """Zero sales inputs for n records (only for graphs that read sales)."""
        if self.sales_encoder is None:
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

    def forward_probs(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """Probabilities (B, n_classes) of a collated batch through the whole graph. A batch without any text
        (U = 0) gets one dummy text that no record points to, so every axis stays non-empty."""
        batch = {k: v for k, v in batch.items() if k != "labels"}
        if self.text_encoder is not None and batch["input_ids"].shape[0] == 0:
            batch["input_ids"] = torch.zeros(1, 1, dtype=torch.long)
            batch["attention_mask"] = torch.ones(1, 1, dtype=torch.long)
        return self.run("model", batch)

    def predict_proba(self, records: Any, batch_size: int = 64, on_error: str = "raise", report: Any = None) -> np.ndarray:
        """Class probabilities (n, n_classes) in `labels` order; arguments as `TrendClassifier.predict_proba`.

        >>> clf = TrendClassifier.from_pretrained("runs/demo/model", backend="onnx")  # doctest: +SKIP
        >>> clf.predict_proba([{"product_id": "mug", "title": "red mug", "sales": [3, 4, 8, 12]}])  # doctest: +SKIP
        array([[0.71, 0.08, 0.21]], dtype=float32)
        """
        from trendnlp.model.classifier import length_sorted_batches

        out, batches, align = length_sorted_batches(self, records, batch_size, on_error, report)
        for idx, batch in batches:
            out[idx] = self.forward_probs(batch)
        return align(out)

    def predict(self, records: Any, batch_size: int = 64, on_error: str = "raise",
                report: Any = None) -> list[str | None]:
        """Most probable label per input record (arguments as `predict_proba`); None for a skipped record."""
        proba = self.predict_proba(records, batch_size=batch_size, on_error=on_error, report=report)
        ok = ~np.isnan(proba).any(axis=1)
        return [self.labels[i] if good else None for i, good in zip(np.nan_to_num(proba).argmax(axis=1), ok)]
