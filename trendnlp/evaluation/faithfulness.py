"""Faithfulness of explanations: deleting the periods an explanation calls salient should move the prediction
more than deleting random ones (`deletion_check`; scripts/benchmark_explain.py prints it on real data)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from trendnlp.data.record_files.records import read_records


def deletion_check(model, records: Any, explanations: list[dict], k: int = 4, n_random: int = 5,
                   seed: int = 0) -> dict:
    """Deleting (zeroing the units of) the k most salient periods vs k random ones: mean drop of p_c.

    A faithful saliency moves the prediction more when its top periods are removed than random ones.
    "Deleting" a period sets its units to 0, the saliency's own baseline; records with at most k observed
    periods are left out.

    Args:
        model: the explained `TrendClassifier`.
        records: the explained records (same order as `explanations`).
        explanations: `trendnlp.model.explain.explain(model, records)`.
        k: periods deleted per record.
        n_random: random draws per record (their mean is the record's random drop).
        seed: seed of the random draws.
    Returns:
        {"k", "n", "salient_drop", "random_drop", "salient_abs_change", "random_abs_change",
         "salient_wins" (share of records where the salient drop exceeds the random one)}

    >>> deletion_check(clf, recs, explain(clf, recs), k=4)["salient_drop"]  # doctest: +SKIP
    """
    c = model.config
    recs = read_records(records, history=c.sales.history, rule=c.labels.rule())
    rng = np.random.default_rng(seed)
    variants, meta = [], []
    for i, (r, e) in enumerate(zip(recs, explanations)):
        s = np.asarray(r["sales"], dtype=np.float64)[-c.sales.history:]
        if len(s) <= k:
            continue
        top = np.argsort(e["sales_saliency"])[::-1][:k]
        for kind, drop in [("salient", top)] + [("random", rng.choice(len(s), k, replace=False))
                                                for _ in range(n_random)]:
            v = s.copy()
            v[drop] = 0.0
            variants.append({**r, "product_id": f"{r['product_id']}#{len(variants)}", "sales": v.tolist()})
            meta.append((i, kind))
    if not variants:
        return {"k": k, "n": 0}
    probs = model.predict_proba(variants)
    labels = model.labels
    drops: dict[int, dict[str, list]] = {}
    for (i, kind), p in zip(meta, probs):
        e = explanations[i]
        before = e["probabilities"][e["label"]]
        drops.setdefault(i, {"salient": [], "random": []})[kind].append(before - float(p[labels.index(e["label"])]))
    sal = np.array([np.mean(d["salient"]) for d in drops.values()])
    rnd = np.array([np.mean(d["random"]) for d in drops.values()])
    sal_abs = np.array([np.mean(np.abs(d["salient"])) for d in drops.values()])
    rnd_abs = np.array([np.mean(np.abs(d["random"])) for d in drops.values()])
    return {"k": k, "n": len(drops), "salient_drop": float(sal.mean()), "random_drop": float(rnd.mean()),
            "salient_abs_change": float(sal_abs.mean()), "random_abs_change": float(rnd_abs.mean()),
            "salient_wins": float((sal > rnd).mean()) if not math.isnan(float(sal.mean())) else None}
