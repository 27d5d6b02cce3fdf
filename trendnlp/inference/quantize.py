"""int8 for the ONNX encoder: dynamic quantization, after smoothing calibrated on the model's own texts.

Dynamic int8 quantizes each MatMul's activations with one scale per tensor (onnxruntime's DynamicQuantizeLinear).
A few hidden channels of a BERT-family encoder are far larger than the rest, so one scale leaves the others few
levels, and the error added up over six layers moved labels (97.8% agreement with fp32 on long texts). Smoothing
(Xiao et al. 2023, "SmoothQuant") divides each input channel j of a quantized MatMul's activations by
s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) and multiplies row j of its weights by the same s_j: the fp32
product is unchanged, and the activations left to quantize have even channels. max|X_j| comes from running the
fp32 graph on calibration texts: the training records' texts (random words calibrated badly: 97.3% agreement,
docs/performance.md). The division is one elementwise Mul before each quantized node.

    model.onnx --smooth (calibrated)--> quantize_dynamic (per-channel int8 weights, MatMul / Gemm / Attention)
              --> model.int8.onnx
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["SMOOTH_ALPHA", "quantize_int8"]

SMOOTH_ALPHA = 0.8  # share of each channel's range moved into the weights; 0.7-0.8 best on validation texts
CALIBRATION_TEXTS = 1024  # distinct texts (the first in the file) whose activations set max|X_j|
CALIBRATION_BATCH = 64
_OPS = ["MatMul", "Gemm", "Attention"]


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, feeds: Iterable[dict] | None = None,
                  alpha: float = SMOOTH_ALPHA) -> dict:
    """Write the int8 graph of `fp32_path` to `int8_path`, smoothed first when calibration `feeds` are given.

    Args:
        fp32_path: the fp32 graph (model.onnx).
        int8_path: where to write the int8 graph.
        feeds: onnxruntime input dicts of calibration batches (`calibration_feeds`); None: plain dynamic int8.
        alpha: the smoothing exponent (module docstring).
    Returns:
        {"smoothed": number of smoothed nodes, "calibration_texts": texts seen}
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, info = onnx.load(str(fp32_path)), {"smoothed": 0, "calibration_texts": 0}
    if feeds is not None:
        info = _smooth(model, fp32_path, feeds, alpha)
    # per output channel weight scales; activations per batch. The fused ops are onnxruntime's own
    # (com.microsoft), which ONNX shape inference cannot type: their weights are float, said explicitly.
    quantize_dynamic(model, str(int8_path), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=_OPS, extra_options={"DefaultTensorType": 1})  # onnx.TensorProto.FLOAT
    return info


def calibration_feeds(texts: Sequence[str], tokenizer, max_length: int, extra: dict[str, np.ndarray]
                      ) -> Iterable[dict]:
    """Input batches of the fused graph over calibration texts: their tokens plus `extra` (one dummy record's
    text_index and sales inputs, whatever the graph needs besides the texts)."""
    from trendnlp.data.inputs.collate import pad_token_ids, token_ids

    for i in range(0, len(texts), CALIBRATION_BATCH):
        t = pad_token_ids(token_ids(tokenizer, texts[i:i + CALIBRATION_BATCH], max_length), tokenizer.pad_token_id,
                          left=tokenizer.padding_side == "left")
        yield {"input_ids": t["input_ids"].numpy(), "attention_mask": t["attention_mask"].numpy(), **extra}


def calibration_texts(records: str | Path, text_cfg) -> list[str]:
    """The first CALIBRATION_TEXTS distinct non-empty texts of a records file, as the model composes them."""
    from trendnlp.data.inputs.features import build_text
    from trendnlp.data.record_files.records import validate_rows
    from trendnlp.data.record_files.io import iter_raw_rows

    seen: dict[str, None] = {}
    for _, rec in validate_rows(iter_raw_rows(records), source=str(records)):
        text = build_text(rec, text_cfg)
        if text:
            seen.setdefault(text)
            if len(seen) >= CALIBRATION_TEXTS:
                break
    if not seen:
        raise ValueError(f"{records}: no record has text, so it cannot calibrate the int8 encoder; pass the "
                         "training records (--calibration train.parquet)")
    return list(seen)[:CALIBRATION_TEXTS]


def _targets(model) -> list:
    """The encoder's nodes that dynamic int8 quantizes and whose weight is a constant: (node, weight initializer)."""
    inits = {i.name: i for i in model.graph.initializer}
    return [(n, inits[n.input[1]]) for n in model.graph.node
            if n.op_type in ("MatMul", "Attention") and len(n.input) > 1 and n.input[1] in inits
            and (n.op_type == "Attention" or "text_encoder" in n.name)]


def _smooth(model, fp32_path: str | Path, feeds: Iterable[dict], alpha: float) -> dict:
    from onnx import helper, numpy_helper

    targets = _targets(model)
    amax, n_texts = _activation_ranges(fp32_path, sorted({n.input[0] for n, _ in targets}), feeds)
    nodes = list(model.graph.node)
    for node, init in targets:
        W = numpy_helper.to_array(init).astype(np.float32)  # (K, N): row j meets input channel j
        s = (np.maximum(amax[node.input[0]], 1e-5) ** alpha / np.maximum(np.abs(W).max(1), 1e-5) ** (1 - alpha))
        s = np.clip(s, 1e-2, 1e2).astype(np.float32)  # (K,)
        init.CopyFrom(numpy_helper.from_array(W * s[:, None], init.name))
        tag = f"{node.name}_smooth"
        model.graph.initializer.append(numpy_helper.from_array(1.0 / s, f"{tag}_inverse"))
        nodes.insert(nodes.index(node), helper.make_node("Mul", [node.input[0], f"{tag}_inverse"], [tag], name=tag))
        node.input[0] = tag  # only this node reads the divided copy; the residual path keeps the original
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return {"smoothed": len(targets), "calibration_texts": n_texts}


def _activation_ranges(fp32_path: str | Path, names: list[str], feeds: Iterable[dict]
                       ) -> tuple[dict[str, np.ndarray], int]:
    """max |x| per channel (last axis) of the named tensors over the calibration batches, by running the fp32
    graph with those tensors as extra outputs (graph optimizations off, so every tensor still exists)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(fp32_path))
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names if n not in outputs)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    amax: dict[str, np.ndarray] = {}
    n_texts = 0
    for feed in feeds:
        n_texts += len(feed["input_ids"])
        for name, x in zip(names, session.run(names, {k: v for k, v in feed.items() if k in wanted})):
            a = np.abs(x).reshape(-1, x.shape[-1]).max(0)
            amax[name] = np.maximum(amax[name], a) if name in amax else a
    return amax, n_texts
