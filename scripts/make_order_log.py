"""Generate a synthetic order log shaped like a shop's, of any size, for `trendnlp prepare` at scale.

One row per order line: invoice, product_id, timestamp, units, price, customer_id (the columns of a shop's
export; `prepare --invoice-col invoice --customer-col customer_id --price-col price` reads them all). The
generating process, drawn in chunks of invoices so that 10M lines need little memory:

* Calendar: two years of trading, Monday 2022-01-03 to Sunday 2023-12-31; invoices spread evenly over it,
  in time order (chunk k covers the k-th slice of the two years).
* Invoices: ~20 lines each (geometric), one timestamp and one customer per invoice; customers are Zipf
  distributed (a few wholesale buyers place many orders), ~20% of invoices carry no customer id.
* Products: Zipf-distributed popularity (weight 1 / (rank + 10)); the catalog has `--products` items
  (default lines / 55, about the ratio of a mid-size gift shop). Each product launches somewhere in the
  first 80% of the log (a third exist from the start) and its demand grows or shrinks exponentially over
  the log (rate ~ N(0, 1.5) per two years); a line's product is drawn by popularity and kept with the
  product's relative demand at the invoice's time (rejection sampling), so products rise and fall.
* Units: 1 + geometric (mean ~4); price: a per-product list price (log-normal, median 2.5), 15% off on
  lines of 12 units or more.

Deterministic: the same --seed and --lines give the same file, byte for byte. The output format follows the
suffix (.csv or .parquet); `--texts FILE` also writes a product text table (product_id, title).

Usage: python scripts/make_order_log.py --lines 10000000 --out orders_10m.parquet [--seed 0] [--texts products.csv]
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

START = np.datetime64("2022-01-03T00:00:00")  # a Monday; the log ends on Sunday 2023-12-31
SPAN_S = 104 * 7 * 86400  # two years of weeks, in seconds
LINES_PER_INVOICE = 20
ADJ = ["Vintage", "Rustic", "Classic", "Retro", "Floral", "Scandi", "Sparkle", "Cosy", "Mini", "Large", "Enamel",
       "Woodland", "Botanical", "Antique", "Striped"]
NOUN = ["Mug", "Teacup", "Candle Holder", "Photo Frame", "Cushion Cover", "Tote Bag", "Lunch Box", "Notebook",
        "Wall Clock", "Vase", "Tea Towel", "Coaster Set", "Hanging Heart", "Storage Tin", "Lantern", "Keyring"]


class Catalog:
    """Per-product parameters, drawn once from the seed: popularity, launch, growth, price, id."""

    def __init__(self, n_products: int, rng: np.random.Generator):
        self.n = n_products
        weight = 1.0 / (np.arange(n_products) + 10.0)  # Zipf-like popularity by rank
        self.cdf = np.cumsum(weight) / weight.sum()
        launch = rng.uniform(-0.4, 0.8, n_products)
        self.launch = np.clip(launch, 0.0, None)  # fraction of the span; 0: sold from the start
        self.growth = rng.normal(0.0, 1.5, n_products)  # log demand change over the whole span
        self.price = np.round(np.exp(rng.normal(np.log(2.5), 0.8, n_products)), 2)
        # ids in a random order of popularity, so the popular products are not the first ids
        self.ids = np.array([f"P{i:06d}" for i in rng.permutation(n_products)], dtype=object)

    def draw(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n,) product ranks for lines at span fractions t: by popularity, kept with the product's relative
        demand at t (launched, and exp(growth * t) scaled to at most 1)."""
        out = np.empty(len(t), dtype=np.int64)
        todo = np.arange(len(t))
        while len(todo):
            p = np.minimum(np.searchsorted(self.cdf, rng.random(len(todo))), self.n - 1)
            g, tt = self.growth[p], t[todo]
            keep = np.exp(np.where(g > 0, g * (tt - 1.0), g * tt))  # in (0, 1]: peak demand is 1
            ok = (tt >= self.launch[p]) & (rng.random(len(todo)) < keep)
            out[todo[ok]] = p[ok]
            todo = todo[~ok]
        return out


def chunk_frame(cat: Catalog, k: int, n_chunks: int, n_lines: int, first_invoice: int, n_customers: int,
                seed: int) -> pd.DataFrame:
    """The k-th chunk: `n_lines` order lines of whole invoices (the last one cut at n_lines), times in the
    k-th of `n_chunks` slices of the span, in time order."""
    rng = np.random.default_rng([seed, k])
    sizes = rng.geometric(1.0 / LINES_PER_INVOICE, n_lines // LINES_PER_INVOICE + 64)
    while sizes.sum() < n_lines:
        sizes = np.concatenate([sizes, rng.geometric(1.0 / LINES_PER_INVOICE, 64)])
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_lines) + 1]
    sizes[-1] -= sizes.sum() - n_lines
    n_inv = len(sizes)
    t_inv = np.sort((k + rng.random(n_inv)) / n_chunks)  # span fraction of each invoice
    cust = np.minimum(np.floor(rng.pareto(1.2, n_inv) * n_customers / 20), n_customers - 1).astype(np.int64)
    inv = np.repeat(np.arange(n_inv), sizes)
    t = t_inv[inv]
    product = cat.draw(t, rng)
    units = rng.geometric(0.25, n_lines)  # 1, 2, ... with mean 4
    price = np.where(units >= 12, np.round(cat.price[product] * 0.85, 2), cat.price[product])
    stamp = START + (t * SPAN_S).astype("timedelta64[s]")
    has_customer = rng.random(n_inv) >= 0.2
    customer = np.where(has_customer, np.char.add("C", (10000 + cust).astype(str)), None)[inv]
    return pd.DataFrame({"invoice": (first_invoice + inv).astype(str),
                         "product_id": cat.ids[product], "timestamp": stamp, "units": units.astype(np.int64),
                         "price": price, "customer_id": customer})


def write_log(out: Path, lines: int, seed: int, products: int | None, chunk: int, texts: Path | None) -> dict:
    """Write the order log (and optional text table) chunk by chunk; returns counts for the summary line."""
    rng = np.random.default_rng(seed)
    cat = Catalog(products or max(lines // 55, 10), rng)
    n_customers = max(lines // 170, 10)
    n_chunks = max(1, -(-lines // chunk))
    fmt = out.suffix.lower()
    if fmt not in (".csv", ".parquet"):
        raise SystemExit(f"--out {out}: use a .csv or .parquet file")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer, seen, first_invoice = None, np.zeros(cat.n, dtype=bool), 500000
    with open(out, "w", encoding="utf-8") if fmt == ".csv" else contextlib.nullcontext() as fh:
        for k in range(n_chunks):
            n = min(chunk, lines - k * chunk)
            df = chunk_frame(cat, k, n_chunks, n, first_invoice, n_customers, seed)
            first_invoice += int(df["invoice"].nunique())
            seen[pd.Index(cat.ids).get_indexer(df["product_id"].unique())] = True
            if fmt == ".csv":
                df["timestamp"] = df["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
                df.to_csv(fh, index=False, header=k == 0)
            else:
                table = pa.Table.from_pandas(df, preserve_index=False)
                writer = writer or pq.ParquetWriter(out, table.schema)
                writer.write_table(table)
    if writer is not None:
        writer.close()
    if texts is not None:
        rank = np.arange(cat.n)
        title = [f"{ADJ[r % len(ADJ)]} {NOUN[(r // len(ADJ)) % len(NOUN)]} {r}" for r in rank.tolist()]
        pd.DataFrame({"product_id": cat.ids, "title": title}).sort_values("product_id").to_csv(texts, index=False)
    return {"lines": lines, "products": int(seen.sum()), "invoices": first_invoice - 500000}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, required=True, help="order lines to write")
    p.add_argument("--out", type=Path, required=True, help="order log: .csv or .parquet")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--products", type=int, default=None, help="catalog size (default lines / 55)")
    p.add_argument("--chunk", type=int, default=1_000_000, help="lines generated and written at a time")
    p.add_argument("--texts", type=Path, default=None, help="also write a product text table (.csv)")
    args = p.parse_args()
    t0 = time.perf_counter()
    counts = write_log(args.out, args.lines, args.seed, args.products, args.chunk, args.texts)
    print(f"wrote {counts['lines']:,} order lines ({counts['products']:,} products sold, {counts['invoices']:,} "
          f"invoices) to {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
