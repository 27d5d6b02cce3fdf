"""ONNX export of a saved model folder: `model.onnx` (+ `model.int8.onnx`) and `head.onnx` beside it.

    model.onnx        the whole fused model, LoRA merged, eval mode (logit offsets applied):
                      input_ids, attention_mask (U, L)  U distinct texts, L tokens
                      text_index (B,)                   row of each record's text, -1: none
                      sales (B, T, C), summary (B, S)   as produced by `TrendCollator.sales`
                      -> probabilities (B, n_classes) [, pooled (U, H): the texts' pooled embeddings]
    model.int8.onnx   the same graph, dynamically quantized to int8 (onnxruntime.quantization); with calibration
                      records, the encoder's MatMuls are smoothed first so labels stay with fp32 (quantize.py)
    head.onnx         sales encoder + fusion head on already pooled texts (pooled (U, H), text_index, sales,
                      summary -> probabilities); lets the labeler reuse cached text embeddings. Not written for
                      cross-attention fusion, whose head needs token states (the labeler then runs model.onnx).
A hybrid folder's graphs are its neural branch; its booster stays beside them in LightGBM's text format
(boosting/) and the ONNX runtime blends both. Inputs a model does not use (text or sales disabled) are left out.
Batch, text and sequence axes are dynamic. The graphs are traced by torch's TorchScript-based exporter (`dynamo=False`) with the encoder
on eager attention: onnxruntime's BERT optimizer fuses that graph into its Attention, EmbedLayerNormalization
and SkipLayerNormalization kernels (and dynamic int8 then quantizes the fused Attention too), which it cannot
do on the torch.export graph (its attention stays a dozen small ops; measured on MiniLM, one CPU thread:
fused fp32 ~1.0x torch fp32 and int8 ~1.8x, against 0.6x and 1.1x unfused).
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trendnlp.outputs import exclusive_output
from trendnlp.model.classifier import TrendClassifier

__all__ = ["HEAD_ONNX", "INT8_ONNX", "MODEL_ONNX", "ONNX_META", "export_onnx", "export_model"]

MODEL_ONNX, INT8_ONNX, HEAD_ONNX, ONNX_META = "model.onnx", "model.int8.onnx", "head.onnx", "onnx.json"
OPSET, DYNAMO_OPSET = 17, 18  # the traced exporter; torch.export (its lowest opset)


class FusedGraph(nn.Module):
    """The whole model as one function of tensors: probabilities, plus pooled text embeddings when the fusion
    head works on pooled vectors (so a caller can cache them)."""

    def __init__(self, clf: TrendClassifier):
        super().__init__()
        self.clf = clf.eval()
        self.lstm = UnpackedLSTM(clf.sales_encoder.lstm) if clf.sales_encoder is not None else None

    def forward(self, input_ids=None, attention_mask=None, text_index=None, sales=None, summary=None):
        m = self.clf
        sales_vec = sales_vector(m, self.lstm, sales, summary)
        if m.text_encoder is None:
            return (torch.softmax(m.head(None, sales_vec).float(), dim=-1),)
        if not m.fusion.needs_tokens:
            pooled = m.text_encoder(input_ids, attention_mask)  # (U, H)
            text = m.record_texts(pooled, text_index)
            return torch.softmax(m.head(text, sales_vec).float(), dim=-1), pooled
        text, tokens, token_mask = m._text(input_ids, attention_mask, text_index)
        return (torch.softmax(m.head(text, sales_vec, tokens, token_mask).float(), dim=-1),)


class UnpackedLSTM(nn.Module):
    """`SalesEncoder.encode_series` without packed sequences, which neither ONNX exporter can trace.

    The same weights, split into one unidirectional LSTM per layer and direction. Series are rotated to right
    padding as in the packed path; the reverse direction reads each row's real periods flipped (a per-row
    gather that leaves padding in place), so no state ever passes through padding. Final states are read at
    position len - 1: equal to the packed LSTM's h_n.
    """

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        self.directions = 2 if lstm.bidirectional else 1
        self.cells = nn.ModuleList()
        for layer in range(lstm.num_layers):
            for d in range(self.directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w_ih = getattr(lstm, "weight_ih" + sfx)
                cell = nn.LSTM(w_ih.shape[1], lstm.hidden_size, batch_first=True)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name + "_l0").data.copy_(getattr(lstm, name + sfx).data)
                self.cells.append(cell)

    def forward(self, sales: torch.Tensor) -> torch.Tensor:
        """(B, T, C) left-padded -> (B, H * directions), as `SalesEncoder.encode_series`."""
        from trendnlp.model.sales_encoder import MASK_CHANNEL

        B, T, _ = sales.shape
        lengths = sales[:, :, MASK_CHANNEL].sum(1).round().long().clamp(1, T)  # (B,)
        t = torch.arange(T, device=sales.device).unsqueeze(0)  # (1, T)
        x = sales.gather(1, ((t + (T - lengths).unsqueeze(1)) % T).unsqueeze(-1).expand_as(sales))  # right-padded
        flip = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)  # (B, T), an involution
        last = (lengths - 1).view(B, 1, 1)
        finals = []
        for layer in range(len(self.cells) // self.directions):
            outs = []
            for d in range(self.directions):
                cell = self.cells[layer * self.directions + d]
                inp = x if d == 0 else x.gather(1, flip.unsqueeze(-1).expand_as(x))
                out, _ = cell(inp)  # (B, T, H)
                finals.append(out.gather(1, last.expand(B, 1, out.shape[-1])).squeeze(1))  # (B, H)
                outs.append(out if d == 0 else out.gather(1, flip.unsqueeze(-1).expand_as(out)))
            x = torch.cat(outs, dim=-1)
        return torch.cat(finals[-self.directions:], dim=-1)


def sales_vector(clf: TrendClassifier, lstm: UnpackedLSTM, sales, summary) -> torch.Tensor | None:
    """`SalesEncoder.forward` in eval mode with `UnpackedLSTM` for the series (summary part unchanged)."""
    from trendnlp.model.sales_encoder import SUMMARY_CLIP

    enc = clf.sales_encoder
    if enc is None:
        return None
    h = lstm(sales)
    if enc.summary_proj is not None:
        z = ((summary - enc.summary_mean) / enc.summary_std).clamp(-SUMMARY_CLIP, SUMMARY_CLIP)  # (B, S)
        h = torch.cat([h, enc.summary_proj(z)], dim=-1)
    return h


class HeadGraph(nn.Module):
    """Sales encoder + fusion head on pooled texts (U, H): the part of the model after the text encoder."""

    def __init__(self, clf: TrendClassifier):
        super().__init__()
        self.clf = clf.eval()
        self.lstm = UnpackedLSTM(clf.sales_encoder.lstm) if clf.sales_encoder is not None else None

    def forward(self, pooled, text_index, sales=None, summary=None):
        m = self.clf
        text = m.record_texts(pooled, text_index)
        sales_vec = sales_vector(m, self.lstm, sales, summary)
        return torch.softmax(m.head(text, sales_vec).float(), dim=-1)


def _example_inputs(clf: TrendClassifier) -> dict[str, torch.Tensor]:
    """Small example tensors with distinct sizes per dynamic axis (U=3 texts, L=7 tokens, B=5 records)."""
    c, out = clf.config, {}
    if clf.text_encoder is not None:
        out["input_ids"] = torch.randint(1000, 2000, (3, 7))
        out["attention_mask"] = torch.ones(3, 7, dtype=torch.long)
        out["text_index"] = torch.tensor([0, 1, -1, 2, 0])
    if clf.sales_encoder is not None:
        out["sales"] = torch.rand(5, c.sales.history, clf.sales_encoder.lstm.input_size)
        out["summary"] = torch.rand(5, clf.sales_encoder.n_summary)
    return out


def _dynamic_axes(names: list[str]) -> dict[str, dict[int, str]]:
    axes = {"input_ids": {0: "texts", 1: "tokens"}, "attention_mask": {0: "texts", 1: "tokens"},
            "text_index": {0: "records"}, "sales": {0: "records"}, "summary": {0: "records"}, "pooled": {0: "texts"},
            "probabilities": {0: "records"}}
    return {n: axes[n] for n in names if n in axes}


def _dynamic_shapes(names: list[str]) -> dict[str, dict[int, Any]]:
    dims = {name: torch.export.Dim(name, min=1) for name in ("texts", "tokens", "records")}
    return {n: {axis: dims[name] for axis, name in _dynamic_axes([n])[n].items()} for n in names}


@contextlib.contextmanager
def _quiet_exporters():
    """Hide onnxruntime's quantizer advice to pre-process: a shape-inference pass for static quantization;
    dynamic quantization of the weights does not need it. Not ours and needs no action."""
    advice = _DropMessage("pre-processing before quantization")
    logging.getLogger().addFilter(advice)  # onnxruntime logs it with logging.warning (the root logger)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(advice)


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _export(module: nn.Module, inputs: dict[str, torch.Tensor], output_names: list[str], path: Path,
            traced: bool = True) -> None:
    """traced: the TorchScript exporter (the graph onnxruntime fuses); else torch.export (`dynamo=True`), for
    the cross-attention head, whose nn.MultiheadAttention reshapes the tracer would freeze to the example sizes."""
    import warnings

    names = list(inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporters' own chatter (tracer notes); failures still raise
        if traced:
            torch.onnx.export(module, (), str(path), kwargs=inputs, input_names=names,
                              output_names=output_names, dynamic_axes=_dynamic_axes(names + output_names),
                              opset_version=OPSET, dynamo=False)
            return
        registration = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registration.level
        registration.setLevel(logging.ERROR)  # "torchvision is not installed": we export no vision ops
        try:
            program = torch.onnx.export(module, (), kwargs=inputs, input_names=names, output_names=output_names,
                                        dynamic_shapes=_dynamic_shapes(names), opset_version=DYNAMO_OPSET, dynamo=True,
                                        external_data=False, verbose=False, report=False)
        finally:
            registration.setLevel(level)
        program.save(str(path))


def _fuse_bert(path: Path, config) -> None:
    """onnxruntime's BERT graph fusions: Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu
    (basic level, so the graph stays portable across execution providers); the numbers agree with the
    unfused graph to float rounding (tests/test_export.py compares with torch)."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(path), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size, opt_level=1)
    model.save_model_to_file(str(path))


def export_onnx(model: str | Path | TrendClassifier, out_dir: str | Path | None = None, int8: bool = False,
                calibration: str | Path | None = None) -> dict:
    """Export a saved model to ONNX: model.onnx, head.onnx and, with int8, model.int8.onnx (see module docstring).

    Args:
        model: a saved model folder, or a `TrendClassifier` (then out_dir is required).
        out_dir: where to write the graphs (default: the model folder itself).
        int8: also write the int8 model.int8.onnx (onnxruntime's quantize_dynamic, inference/quantize.py).
        calibration: with int8, a records file (the training records) whose texts calibrate the smoothing that
            keeps int8 labels with fp32's; None quantizes without it (labels then move more).
    Returns:
        {"files": [...written file names], "seconds": float, "dir": str, "int8_smoothed": nodes smoothed}

    >>> export_onnx("runs/demo/model", int8=True)  # doctest: +SKIP
    {'files': ['model.onnx', 'head.onnx', 'model.int8.onnx', 'onnx.json'], ...}
    """
    t0 = time.perf_counter()
    if isinstance(model, (str, Path)):
        out_dir = Path(out_dir or model)
        clf = TrendClassifier.from_pretrained(model, merge_lora=True)
        if not clf.has_neural:
            raise ValueError(f"{model}: a model.kind=boosting folder has no neural network to export to ONNX; its "
                             "LightGBM model (boosting/model.txt) is already portable: load it with "
                             "trendnlp.load_model(dir)")
    else:
        if out_dir is None:
            raise ValueError("export_onnx: pass out_dir when exporting an in-memory model")
        clf, out_dir = copy.deepcopy(model).eval(), Path(out_dir)  # merging LoRA below must not touch the caller's
    clf = clf.to("cpu").float()
    if clf.text_encoder is not None:
        clf.text_encoder.merge_lora()  # one plain encoder in the graph: W + BA folded
        clf.text_encoder.model.set_attn_implementation("eager")  # the pattern onnxruntime fuses (module docstring)
    texts = None
    if int8 and calibration and clf.text_encoder is not None:
        from trendnlp.inference.quantize import calibration_texts

        texts = calibration_texts(calibration, clf.config.text)  # a bad file fails before any graph is written
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = _example_inputs(clf)
    pooled_out = clf.text_encoder is not None and not clf.fusion.needs_tokens
    files, info = [MODEL_ONNX], {"smoothed": 0, "calibration_texts": 0}
    with _quiet_exporters():
        _write_graphs(clf, inputs, out_dir, pooled_out, int8, files, texts, info)
    meta = {"inputs": list(inputs), "pooled_output": pooled_out, "head": pooled_out, "int8": int8,
            "int8_smoothed": info["smoothed"], "int8_calibration_texts": info["calibration_texts"],
            "opset": DYNAMO_OPSET if clf.fusion.needs_tokens else OPSET,
            "labels": clf.labels, "torch": torch.__version__}
    (out_dir / ONNX_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    files.append(ONNX_META)
    return {"files": files, "seconds": round(time.perf_counter() - t0, 1), "dir": str(out_dir),
            "int8_smoothed": info["smoothed"]}


def _write_graphs(clf: TrendClassifier, inputs: dict, out_dir: Path, pooled_out: bool, int8: bool,
                  files: list[str], calibration: list[str] | None, info: dict) -> None:
    _export(FusedGraph(clf), inputs, ["probabilities"] + (["pooled"] if pooled_out else []), out_dir / MODEL_ONNX,
            traced=not clf.fusion.needs_tokens)
    if pooled_out:
        head_in = {"pooled": torch.randn(3, clf.text_encoder.output_dim), "text_index": inputs["text_index"],
                   **{k: v for k, v in inputs.items() if k in ("sales", "summary")}}
        _export(HeadGraph(clf), head_in, ["probabilities"], out_dir / HEAD_ONNX)
        files.append(HEAD_ONNX)
    if clf.text_encoder is not None and getattr(clf.text_encoder.model.config, "model_type", "") == "bert":
        _fuse_bert(out_dir / MODEL_ONNX, clf.text_encoder.model.config)
    if int8:
        from trendnlp.inference.quantize import calibration_feeds, quantize_int8

        feeds = None
        if calibration:  # one dummy record (text_index 0) beside the texts: the graph needs every input
            extra = {k: v[:1].clamp(min=0).numpy() if k == "text_index" else v[:1].numpy()
                     for k, v in inputs.items() if k in ("text_index", "sales", "summary")}
            feeds = calibration_feeds(calibration, clf.tokenizer, clf.config.text.max_length, extra)
        info.update(quantize_int8(out_dir / MODEL_ONNX, out_dir / INT8_ONNX, feeds))
        files.append(INT8_ONNX)


@exclusive_output(lambda a: (a["out"] or a["model"], "--out", None))  # two exports into one folder would mix
def export_model(model: str | Path, out: str | Path | None = None, fmt: str | None = None, int8: bool = False,
                 self_contained: bool = False, calibration: str | Path | None = None) -> dict:
    """`trendnlp export`: a self-contained copy of the folder and/or ONNX graphs.

    Args:
        model: a saved model folder.
        out: target folder (default: the model folder itself, updated in place).
        fmt: "onnx" to write the ONNX graphs; None for none.
        int8: with fmt="onnx", also the int8 graph.
        calibration: with int8, the training records, whose texts calibrate it (see `export_onnx`).
        self_contained: store the LoRA-merged encoder under `encoder/` (the folder then loads without its base).
    Returns:
        {"dir": str, "files": [...], "self_contained": bool, "seconds": float}

    >>> export_model("runs/demo/model", out="dist/model", fmt="onnx", int8=True, self_contained=True)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    out = Path(out or model)
    if fmt not in (None, "onnx"):
        raise ValueError(f"export format must be 'onnx', found {fmt!r}")
    if int8 and fmt != "onnx":
        raise ValueError("--int8 quantizes the ONNX graph: add --format onnx")
    if calibration and not int8:
        raise ValueError("--calibration calibrates the int8 graph: add --format onnx --int8")
    if not fmt and not self_contained:
        raise ValueError("nothing to export: give --format onnx and/or --self-contained")
    files = []
    if self_contained or out.resolve() != Path(model).resolve():
        clf = TrendClassifier.from_pretrained(model, merge_lora=False)
        metrics_file = Path(model) / "metrics.json"  # kept, and so the card's metrics
        metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
        clf.save_pretrained(out, self_contained=self_contained, metrics=metrics)
        files += sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    if fmt == "onnx":
        files += export_onnx(out, out, int8=int8, calibration=calibration)["files"]
    return {"dir": str(out), "files": files, "self_contained": self_contained,
            "seconds": round(time.perf_counter() - t0, 1)}
