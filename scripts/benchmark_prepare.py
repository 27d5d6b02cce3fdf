"""`trendnlp prepare` at scale: records, seconds, records/s and peak memory on synthetic shop logs, and a
projection to 1B order lines over N shards (a reproducible measurement, not a test).

For each --lines size: the log is generated once by scripts/make_order_log.py (Parquet, every channel's column:
price, invoice, customer), then `trendnlp prepare` runs in its own child process under `/usr/bin/time -v` (its
peak RSS is the child's own, not this driver's) for
    training   every cutoff with a complete future (history 26, horizon 4, stride 1, >= 10 units)
    as-of      one record per active product at the log's last complete period (--as-of)
    shard      the training records of one shard of --shards (0 of N), for the projection
Pinned to one core with --cpu (taskset), so records/s is a single-core figure.

Projection: every shard scans the whole log (the shop totals and period grid need every row) and windows 1/N of
the products, so a shard costs scan + window / N; both parts are solved from the one-process and the shard run
of the largest log, then scaled linearly in lines to 1B.

Usage: python scripts/benchmark_prepare.py --lines 1000000 10000000 [--work DIR] [--cpu 0] [--shards 8]
Prints a Markdown table (docs/performance.md keeps one, with the machine and what else ran).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["--product-col", "product_id", "--time-col", "timestamp", "--units-col", "units", "--price-col", "price",
           "--invoice-col", "invoice", "--customer-col", "customer_id"]


def run_measured(cmd: list[str], cpu: int | None) -> dict:
    """Run cmd under /usr/bin/time -v (pinned to one core with `cpu`): wall seconds, peak RSS (GB), output."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *pin, *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    cpu_s = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", proc.stderr).group(1))
                for kind in ("User", "System"))
    return {"seconds": wall, "cpu_s": cpu_s, "rss_gb": rss_kb / 1024 ** 2, "stdout": proc.stdout}


def prepare_row(log: Path, out: Path, cpu: int | None, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "trendnlp", "prepare", "--sales", str(log), *COLUMNS, "--no-progress", "--out",
           str(out), *extra]
    r = run_measured(cmd, cpu)
    r["records"] = int(re.search(r"wrote ([\d,]+) records", r["stdout"]).group(1).replace(",", ""))
    r["products"] = int(re.search(r"products\s+([\d,]+)", r["stdout"]).group(1).replace(",", ""))
    out.unlink(missing_ok=True)
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 10_000_000], help="log sizes")
    p.add_argument("--work", type=Path, default=Path("runs/benchmark_prepare"), help="logs and outputs")
    p.add_argument("--cpu", type=int, default=None, help="pin each prepare to this core (taskset)")
    p.add_argument("--shards", type=int, default=8, help="shards of the projection run (largest log)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for lines in args.lines:
        log = args.work / f"orders_{lines}.parquet"
        if not log.is_file():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, str(REPO / "scripts" / "make_order_log.py"), "--lines", str(lines),
                            "--out", str(log), "--seed", str(args.seed)], check=True)
            print(f"generated {log} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        modes = [("training", []), ("as-of", ["--as-of"])]
        if lines == max(args.lines) and args.shards > 1:
            modes.append((f"shard 0 of {args.shards}", ["--num-shards", str(args.shards), "--shard-index", "0"]))
        for mode, extra in modes:
            r = prepare_row(log, args.work / "records.parquet", args.cpu, extra)
            rows.append({"lines": lines, "mode": mode, **r})
            print(f"{lines:,} lines, {mode}: {r['records']:,} records in {r['seconds']:.0f} s ({r['cpu_s']:.0f} CPU s), "
                  f"peak RSS {r['rss_gb']:.2f} GB, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{'pinned to core ' + str(args.cpu) if args.cpu is not None else 'not pinned'}; load before: "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| order lines | products with records | kind | records | wall s | records/s (wall) | CPU s | records/CPU s | peak RSS |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['lines']:,} | {r['products']:,} | {r['mode']} | {r['records']:,} | {r['seconds']:.0f} | "
              f"{r['records'] / r['seconds']:,.0f} | {r['cpu_s']:.0f} | {r['records'] / r['cpu_s']:,.0f} | "
              f"{r['rss_gb']:.2f} GB |")
    big = [r for r in rows if r["lines"] == max(args.lines)]
    one = next(r for r in big if r["mode"] == "training")
    shard = next((r for r in big if r["mode"].startswith("shard")), None)
    if shard is not None:
        s = args.shards
        # CPU seconds (the wall clock of a shared machine says more about the others' jobs): t = scan + window / s
        scan = max((s * shard["cpu_s"] - one["cpu_s"]) / (s - 1), 0.0)
        window = max(one["cpu_s"] - scan, 0.0)
        scale = 1e9 / max(args.lines)
        print(f"\nprojection to 1B lines: each shard scans the log ({scan * scale / 3600:.1f} h at this rate) and "
              f"windows its products ({window * scale / 3600:.1f} h / N): over N = 100 shards "
              f"{(scan + window / 100) * scale / 3600:.1f} h each, over N = 1000 "
              f"{(scan + window / 1000) * scale / 3600:.1f} h each (from the {max(args.lines):,}-line runs: "
              f"one process {one['cpu_s']:.0f} CPU s, shard 0 of {s} {shard['cpu_s']:.0f} CPU s; peak RSS of a shard "
              f"{shard['rss_gb']:.2f} GB, which grows with the shard's products, not with N)")


if __name__ == "__main__":
    main()
