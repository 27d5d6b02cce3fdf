"""Counts of a list of records (records, products, cutoffs, label shares): what `prepare` prints."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from trendnlp.labels import LABELS


@dataclass
class RecordSummary:
    """Counts of a list of records; `str()` gives a printable table."""

    n_records: int
    n_products: int
    n_cutoffs: int
    first_cutoff: str | None
    last_cutoff: str | None
    label_counts: dict[str, int]

    def __str__(self) -> str:
        span = f" ({self.first_cutoff} … {self.last_cutoff})" if self.first_cutoff else ""
        rows = [f"{'records':<10}{self.n_records:>10,}", f"{'products':<10}{self.n_products:>10,}",
                f"{'cutoffs':<10}{self.n_cutoffs:>10,}{span}", f"{'label':<10}{'count':>10}{'share':>9}"]
        for name, n in self.label_counts.items():
            rows.append(f"{name:<10}{n:>10,}{100 * n / max(self.n_records, 1):>8.1f}%")
        return "\n".join(rows)


def summarize(records: list[dict]) -> RecordSummary:
    """Counts, cutoff range and label distribution of normalised records.

    Args:
        records: record dicts (as from `prepare` or `trendnlp.data.record_files.records.read_records`).
    Returns:
        a RecordSummary; print it for a table. Labels are listed in LABELS order, then "unlabeled" if any.

    >>> summarize([{"product_id": "a", "cutoff": "2011-06-05", "label": "rising"}]).label_counts["rising"]
    1
    """
    cutoffs = sorted({r["cutoff"] for r in records if r.get("cutoff")})
    labels = pd.Series([r.get("label") or "unlabeled" for r in records], dtype=object).value_counts()
    counts = {name: int(labels.get(name, 0)) for name in LABELS}
    if labels.get("unlabeled", 0):
        counts["unlabeled"] = int(labels["unlabeled"])
    return RecordSummary(len(records), len({r["product_id"] for r in records}), len(cutoffs),
                         cutoffs[0] if cutoffs else None, cutoffs[-1] if cutoffs else None, counts)


class SummaryCounter:
    """`summarize` over Arrow tables of records that come a chunk at a time, each chunk holding whole products
    (so distinct products add up across chunks).

    >>> import pyarrow as pa
    >>> c = SummaryCounter()
    >>> c.add(pa.table({"product_id": ["a", "a"], "cutoff": ["2011-06-05", "2011-06-12"], "label": ["rising", None]}))
    >>> c.result().label_counts
    {'rising': 1, 'falling': 0, 'stable': 0, 'unlabeled': 1}
    """

    def __init__(self):
        self.n, self.products, self.cutoffs, self.labels = 0, 0, set(), {}

    def add(self, table) -> None:
        import pyarrow.compute as pc

        self.n += table.num_rows
        self.products += pc.count_distinct(table.column("product_id")).as_py()
        self.cutoffs.update(x for x in pc.unique(table.column("cutoff")).to_pylist() if x)
        labels = table.column("label").fill_null("unlabeled") if "label" in table.column_names else None
        for row in ([] if labels is None else pc.value_counts(labels).to_pylist()):
            self.labels[row["values"]] = self.labels.get(row["values"], 0) + row["counts"]
        if labels is None:
            self.labels["unlabeled"] = self.labels.get("unlabeled", 0) + table.num_rows

    def result(self) -> RecordSummary:
        cutoffs = sorted(self.cutoffs)
        counts = {name: int(self.labels.get(name, 0)) for name in LABELS}
        if self.labels.get("unlabeled", 0):
            counts["unlabeled"] = int(self.labels["unlabeled"])
        return RecordSummary(self.n, self.products, len(cutoffs), cutoffs[0] if cutoffs else None,
                             cutoffs[-1] if cutoffs else None, counts)
