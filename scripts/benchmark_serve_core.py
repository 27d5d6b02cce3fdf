"""Where one `trendnlp serve` model call spends its CPU: 1, 8 and 64 records through each stage of the path.

The stages of a request's records, each timed alone in this process (CPU time of this process, so other jobs on
the machine change little; median of --reps calls on different records of --records):
    request body   the body parsed by the request model (its envelope; the records stay dicts)
    validate_rows  the rules every reader applies (the one check of a served record)
    Predictor      the whole prediction core with the text cache off (what a served model call runs)
      and inside it: sales features, text dedup, tokenizing, the text encoder on the distinct texts (in the
      passes of `length_groups`, and for comparison in one pass padded to the longest text, as before it),
      the neural branch in all, the boosting branch's feature matrix and the branch in all (with LightGBM)
    results+json   the response rows and their JSON
The last columns split each stage into a cost a record (at 64 records) and a cost a call (1 record minus that):
batching saves the cost a call; the cost a record bounds what any batching can reach.

    python scripts/benchmark_serve_core.py --model runs/demo/model [--reps 7]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="saved model folder")
    p.add_argument("--records", default=str(ROOT / "data_samples" / "catalog.jsonl"), help="JSONL records")
    p.add_argument("--reps", type=int, default=7, help="calls per stage and size (the median is shown)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (as `load_test.py --threads`)")
    args = p.parse_args(argv)
    import torch

    from trendnlp.data.inputs.collate import pad_token_ids, token_ids
    from trendnlp.data.record_files.records import validate_rows
    from trendnlp.inference.serve import _results, request_model
    from trendnlp.model.load import load_model
    from trendnlp.model.predict import Predictor, length_groups

    torch.set_num_threads(args.threads)
    clf = load_model(args.model)
    c, R = clf.config, args.reps
    seen, records = set(), []
    for line in Path(args.records).read_text(encoding="utf-8").splitlines():
        r = json.loads(line) if line.strip() else None
        if r and r.get("title") and (r["product_id"], r.get("cutoff")) not in seen:  # texts to encode, as a shop's
            seen.add((r["product_id"], r.get("cutoff")))
            records.append(r)
    Records = request_model()
    pred = Predictor(clf, batch_size=64, text_cache=0)

    def cpu_ms(fn) -> float:
        times = []
        for i in range(R):
            t0 = time.process_time()
            fn(i)
            times.append(time.process_time() - t0)
        return 1000 * statistics.median(times)

    table: dict[str, list[float]] = {}
    sizes = (1, 8, 64)
    for n in sizes:
        bodies = [json.dumps({"records": records[(i * 97 * n) % (len(records) - n):][:n]}) for i in range(R)]
        parsed = [Records.model_validate_json(b).records for b in bodies]
        valid = [[x for _, x in validate_rows(enumerate(p), source="request", history=c.sales.history,
                                              rule=c.labels.rule())] for p in parsed]
        stages = {
            "request body (pydantic envelope)": lambda i: Records.model_validate_json(bodies[i]).records,
            "validate_rows": lambda i: list(validate_rows(enumerate(parsed[i]), source="request",
                                                          history=c.sales.history, rule=c.labels.rule())),
            "Predictor (the model call)": lambda i: pred(valid[i]),
        }
        if clf.has_neural and c.text.enabled:
            texts = [pred.collator.texts(v)[0] for v in valid]
            ids = [token_ids(clf.tokenizer, t, c.text.max_length) for t in texts]
            pad = clf.tokenizer.pad_token_id or 0

            def encode(i):
                with torch.inference_mode():
                    for pos in length_groups([len(x) for x in ids[i]], 64):
                        clf.encode(**pad_token_ids([ids[i][u] for u in pos], pad))

            def encode_one_pass(i):  # before length_groups: every distinct text padded to the longest
                with torch.inference_mode():
                    clf.encode(**pad_token_ids(ids[i], pad))

            stages.update({"  sales features": lambda i: pred.collator.sales(valid[i]),
                           "  text dedup": lambda i: pred.collator.texts(valid[i]),
                           "  tokenizing": lambda i: token_ids(clf.tokenizer, texts[i], c.text.max_length),
                           "  text encoder (distinct texts, length_groups)": encode,
                           "  text encoder, one pass padded to the longest": encode_one_pass,
                           "  neural branch in all": lambda i: pred._neural(valid[i])})
        if clf.blend is not None:
            branch = clf.blend.branch
            stages.update({"  boosting features": lambda i: branch.matrix(valid[i]),
                           "  boosting branch in all": lambda i: branch.predict_proba(valid[i])})
        probs = [pred(v).probs for v in valid]
        stages["results + JSON"] = lambda i: json.dumps({"results": _results(valid[i], probs[i], clf.labels)})
        for name, fn in stages.items():
            table.setdefault(name, []).append(cpu_ms(fn))
    kind = getattr(clf, "kind", "neural")
    weight = f", blend weight {clf.blend.weight}" if clf.blend is not None else ""
    print(f"model {args.model} ({kind}{weight}), {args.threads} torch thread(s), CPU ms (median of {R} calls)\n")
    print("| stage | " + " | ".join(f"{n} record{'s' * (n > 1)}" for n in sizes)
          + " | a record (at 64) | a call (1 record minus a record) |")
    print("|---|" + "---:|" * (len(sizes) + 2))
    for name, ms in table.items():
        per = ms[-1] / sizes[-1]
        print(f"| {name} | " + " | ".join(f"{x:.2f}" for x in ms) + f" | {per:.2f} | {ms[0] - per:.2f} |")


if __name__ == "__main__":
    main()
