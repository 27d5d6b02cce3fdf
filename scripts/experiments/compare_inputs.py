"""Does fusion help? Train one config three ways (fused, sales-only, text-only) and compare test macro-F1.

    python scripts/experiments/compare_inputs.py --config configs/default.yaml --output-dir runs/inputs [--set k=v ...]

Each variant is the same config with one input switched off (`sales.enabled=false` / `text.enabled=false`);
the table shows validation and test macro-F1 and accuracy of each variant's best epoch.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from trendnlp.config import TrendConfig
from trendnlp.evaluation.metrics import format_metrics_table
from trendnlp.training import train

VARIANTS = {"fused": [], "sales_only": ["text.enabled=false"], "text_only": ["sales.enabled=false"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--output-dir", default="runs/inputs")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    val_rows, test_rows = [], []
    for name, switch in VARIANTS.items():
        cfg = TrendConfig.from_yaml(args.config, overrides=[*args.set, *switch])
        if not cfg.data.test:
            raise SystemExit(f"{args.config}: data.test is empty; the comparison needs a test split")
        result = train(cfg, Path(args.output_dir) / name, progress=not args.no_progress)
        val_rows.append((name, result["validation"]))
        test_rows.append((name, result["test"]))
    print("\nvalidation (best epoch of each variant):")
    print(format_metrics_table(val_rows))
    print("\ntest:")
    print(format_metrics_table(test_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
