"""Explanation cost and faithfulness on a trained model (a reproducible experiment, not a feature).

Speed: the same records labelled by the prediction core (trendnlp.model.predict.Predictor, the path of
`trendnlp label`) and explained by `TrendClassifier.explain` (Shapley split, sales IG, text LayerIG, gate);
both deduplicate texts. Faithfulness: `evaluation.faithfulness.deletion_check`, deleting (zeroing) the k most salient weeks vs
k random weeks, mean drop of the predicted class's probability.

Usage:
    python scripts/benchmark_explain.py --model runs/or/model --data ../runs-shared/or/test.parquet \
        [--n 1000] [--faithfulness-n 200] [--k 4] [--threads 1] [--seed 0]
Records are a seeded random sample of --data (not its first rows, which hold few products).
"""
from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="saved model folder")
    p.add_argument("--data", required=True, help="labelled records (.parquet, .jsonl, .csv)")
    p.add_argument("--n", type=int, default=1000, help="records timed")
    p.add_argument("--faithfulness-n", type=int, default=200, help="records in the deletion check (0: skip)")
    p.add_argument("--k", type=int, default=4, help="weeks deleted per record")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and the random weeks")
    p.add_argument("--sales-steps", type=int, default=None, help="IG steps over the sales (default: explain's)")
    p.add_argument("--text-steps", type=int, default=None, help="LayerIG steps over the text (default: explain's)")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from trendnlp.data.record_files.records import read_records
    from trendnlp.evaluation.faithfulness import deletion_check
    from trendnlp.model.predict import Predictor
    from trendnlp.model.classifier import TrendClassifier

    torch.set_num_threads(args.threads)
    clf = TrendClassifier.from_pretrained(args.model)
    recs = read_records(args.data, history=clf.config.sales.history, rule=clf.config.labels.rule())
    rng = np.random.default_rng(args.seed)
    sample = [recs[i] for i in rng.choice(len(recs), min(args.n, len(recs)), replace=False)]
    steps = {k: v for k, v in (("sales_steps", args.sales_steps), ("text_steps", args.text_steps)) if v is not None}

    clf.explain(sample[:8], **steps)  # warm-up: first calls pay for lazy imports and allocator growth
    Predictor(clf)(sample[:8])
    t0 = time.perf_counter()
    Predictor(clf)(sample)
    label_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ex = clf.explain(sample, **steps)
    explain_s = time.perf_counter() - t0
    texts = len({(r.get("title") or "") + "|" + (r.get("description") or "") for r in sample})
    delta_s = np.abs([e["ig_delta"]["sales"] for e in ex if e["ig_delta"]["sales"] is not None])
    delta_t = np.abs([e["ig_delta"]["text"] for e in ex if e["ig_delta"]["text"] is not None])
    print(f"{len(sample)} records ({texts} distinct texts), {args.threads} torch thread(s)\n")
    print("| what | seconds | ms / record |\n|---|---:|---:|")
    print(f"| label (Predictor) | {label_s:.2f} | {1000 * label_s / len(sample):.2f} |")
    print(f"| explain | {explain_s:.2f} | {1000 * explain_s / len(sample):.2f} |")
    print(f"| ratio explain / label | {explain_s / label_s:.1f}x | |")
    med_t = f"{np.median(delta_t):.4f}" if len(delta_t) else "n/a (no words)"
    print(f"\nIG completeness error |delta| (log-prob.): sales median {np.median(delta_s):.4f}, text median {med_t}")
    if args.faithfulness_n:
        sub, sub_ex = sample[:args.faithfulness_n], ex[:args.faithfulness_n]
        r = deletion_check(clf, sub, sub_ex, k=args.k, n_random=5, seed=args.seed)
        print(f"\ndeletion check, k={r['k']} weeks zeroed, {r['n']} records (random: mean of 5 draws each)\n")
        print("| weeks deleted | mean drop of p(predicted) | mean abs change |\n|---|---:|---:|")
        print(f"| {r['k']} most salient | {r['salient_drop']:.4f} | {r['salient_abs_change']:.4f} |")
        print(f"| {r['k']} random | {r['random_drop']:.4f} | {r['random_abs_change']:.4f} |")
        print(f"\nsalient drop > random drop for {r['salient_wins']:.1%} of records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
