"""What the boosting branch adds to prediction time: a hybrid folder's predict_proba for the neural branch alone,
the boosting branch alone and the blend, back to back in one process (a reproducible experiment, not a feature).

    python scripts/benchmark_hybrid.py --model runs/h/model --records records.parquet [--repeats 3] [--threads 1]

Prints one table row per part: records/s and seconds (min / median / max over the repeats). The neural part's
text cache is off (each call encodes its distinct texts again), as `predict_proba` runs.
"""
from __future__ import annotations

import argparse
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a hybrid model folder (model.kind=hybrid)")
    p.add_argument("--records", required=True, help="records to predict (.jsonl, .csv or .parquet)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from trendnlp import load_model
    from trendnlp.data.record_files.records import read_records

    torch.set_num_threads(args.threads)
    clf = load_model(args.model)
    if clf.kind != "hybrid":
        raise SystemExit(f"{args.model}: model.kind is {clf.kind}, this compares the parts of a hybrid")
    recs = read_records(args.records, history=clf.config.sales.history, rule=clf.config.labels.rule())
    clf.predict_proba(recs[:64])  # warm-up: first calls pay for lazy initialisation
    times: dict[str, list[float]] = {"neural": [], "boosting": [], "blend": []}
    for _ in range(args.repeats):
        for part in times:
            t0 = time.perf_counter()
            clf.predict_proba(recs, batch_size=256, branch=None if part == "blend" else part)
            times[part].append(time.perf_counter() - t0)
    print(f"{len(recs)} records, {args.threads} thread(s), {args.repeats} repeats\n")
    print("| part | records/s (median) | seconds min / median / max |\n|---|---|---|")
    for part, ts in times.items():
        med = statistics.median(ts)
        print(f"| {part} | {len(recs) / med:,.0f} | {min(ts):.2f} / {med:.2f} / {max(ts):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
