"""Summary statistics (trendnlp.data.inputs.sales_stats): the one torch implementation against a frozen copy of the
outputs of the three implementations it replaced (numpy per series, numpy vectorised, explain's torch copy),
on ragged, short, empty and all-zero series, and its numpy adapters against each other."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trendnlp.data.inputs.sales_stats import (SUMMARY_NAMES, sales_inputs, summary_stats, summary_stats_batch,
                                       summary_stats_flat, summary_stats_many)

FROZEN = json.loads((Path(__file__).parent / "data" / "summary_stats_frozen.json").read_text(encoding="utf-8"))
CASES = FROZEN["cases"]
SERIES = FROZEN["series"]


def _f32(x):
    return np.asarray(x, dtype=np.float32)


def test_the_frozen_inputs_cover_the_edge_cases():
    lengths = {len(s) for s in SERIES}
    assert {0, 1, 2} <= lengths and max(lengths) > 26  # empty, one, two periods and longer than a history
    assert any(s and not any(s) for s in SERIES)  # all-zero
    assert any(any(v != int(v) for v in s) for s in SERIES)  # fractional units


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"history{c['history']}-K{c['K']}")
def test_numpy_callers_equal_the_old_numpy_outputs(case):
    h, K, a = case["history"], case["K"], case["alpha"]
    kept = [i for i, s in enumerate(SERIES) if s]
    old = _f32([case["numpy_clipped"][i] for i in kept])
    many = summary_stats_many([SERIES[i] for i in kept], h, K, a)
    assert many.dtype == np.float32 and many.shape == (len(kept), len(SUMMARY_NAMES))
    np.testing.assert_allclose(many, old, rtol=1e-6, atol=1e-7)
    lengths = [len(SERIES[i]) for i in kept]
    flat = summary_stats_flat(np.concatenate([SERIES[i] for i in kept]), np.r_[0, np.cumsum(lengths)], h, K, a)
    np.testing.assert_array_equal(flat, many)
    for i in kept:  # one series, not cut to the history (as the boosting features call it)
        np.testing.assert_allclose(summary_stats(np.asarray(SERIES[i]), h, K, a), _f32(case["numpy_whole"][i]),
                                   rtol=1e-6, atol=1e-7, err_msg=f"series {i}: {SERIES[i]}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"history{c['history']}-K{c['K']}")
def test_explains_sales_inputs_equal_the_old_torch_outputs(case):
    h, K, a = case["history"], case["K"], case["alpha"]
    z, mask = torch.zeros(len(SERIES), h), torch.zeros(len(SERIES), h)
    for i, s in enumerate(SERIES):
        s = s[-h:]
        if s:
            z[i, h - len(s):] = torch.log1p(torch.tensor(s, dtype=torch.float32))
            mask[i, h - len(s):] = 1
    sales, summary = sales_inputs(z, mask, torch.zeros(len(SERIES), h, 4), "log1p", h, K, a)
    assert summary.dtype == torch.float32 and sales.shape == (len(SERIES), h, 6)
    np.testing.assert_allclose(summary.numpy(), _f32(case["torch_float32"]), rtol=1e-6, atol=1e-6)
    assert torch.isfinite(summary).all()  # the empty row included


def test_gradients_are_finite_on_flat_and_empty_histories():
    z = torch.log1p(torch.tensor([[0.0, 0, 0, 0], [0, 0, 2, 2], [0, 0, 0, 5], [1, 2, 3, 4]])).requires_grad_()
    mask = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]])
    summary_stats_batch(torch.expm1(z), mask, 26, 4, 1.0, log_units=z).sum().backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[3].abs().sum() > 0


def test_padding_values_are_ignored():
    units = torch.tensor([[7.0, 9.0, 1.0, 2.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[0, 0, 1, 1, 1]])
    clean = summary_stats_batch(units * mask, mask, 26, 4, 1.0)
    np.testing.assert_array_equal(summary_stats_batch(units, mask, 26, 4, 1.0).numpy(), clean.numpy())
    np.testing.assert_allclose(clean[0].numpy(), summary_stats(np.array([1.0, 2.0, 0.0]), 26, 4, 1.0), rtol=1e-6)
