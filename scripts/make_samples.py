"""Generate the synthetic gift-shop data in `data_samples/`: order log, product text, reviews, records.

The generating process (one numpy RNG: a seed gives the same files, byte for byte). Each source of
signal is built so that only one input can see it coming:

* Calendar: 78 weeks of trading, Monday 2022-06-27 to Sunday 2023-12-24; weeks end on Sunday.
* Popularity: each product sells around its own level (log-normal, median 80 units a week) in
  wholesale packs, at one price; units are negative binomial around the week's demand.
* Sales only (momentum, mean reversion): the log demand drifts back towards the product's level,
  and now and then trends up or down for 6-14 weeks; a one-week promotion (price -25%, demand x2.5-4)
  borrows from the week after. Text never mentions either.
* Text + calendar (seasons): ~35% of products name a season in the title or description (christmas,
  halloween, valentine, easter, summer beach, back to school); their demand builds up exponentially
  before the event day and collapses after it. 26 weeks of history rarely show the last peak.
* Reviews lead demand (events): one after another, each product goes through quality problems and
  viral crazes. Complaints ("Broke after a week.") or raves ("Bought three more for friends.") start
  3 weeks before demand slides (x0.25-0.5) or jumps (x2-4) over 3 weeks; after a few weeks, praise
  for the fixed batch or boredom with the craze ("Nice but overhyped.") again comes 3 weeks before
  demand moves back. Ordinary reviews (mostly positive, some lukewarm) arrive all the time.
* Edge cases: ~12% of products launch mid-log (shorter histories), three have no text and no
  reviews, four are discontinued within the first 10 weeks (their later records are all zeros).

Records (docs/data.md) are windowed here from the weekly sums of the order log: up to 26 weeks of history
(fewer when the product's first sale, or the log's start, is more recent; never padded), the next
4 weeks as `future_sales`, the default LabelRule for `label`, the title and description, and the 5
newest reviews dated on or before the cutoff. Each product gets 4 train, 1 validation and 2 test
cutoffs, drawn from three blocks of Sundays separated by a 4-week purge (the horizon).

Usage: python scripts/make_samples.py --out data_samples --seed 0 [--products 250]
"""
from __future__ import annotations

import argparse
import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from trendnlp.labels import LabelRule
from trendnlp.data.record_files.io import write_records

START = dt.date(2022, 6, 27)  # Monday of the first week; the log ends on Sunday 2023-12-24
N_WEEKS = 78
HISTORY, HORIZON = 26, 4
# cutoff week indices (week w ends on START + 7w + 6 days); 4 weeks between parts, so no future overlaps
SPLITS = {"train": range(8, 57), "val": range(60, 65), "test": range(68, 74)}
PER_PRODUCT = {"train": 4, "val": 1, "test": 2}  # cutoffs drawn per product and split
EVENT_GAP = 3  # mean quiet weeks between a product's quality problems / viral crazes, beyond 3

ADJ = ["Vintage", "Rustic", "Classic", "Retro", "Floral", "Scandi", "Hand Painted", "Sparkle", "Cosy", "Mini",
       "Large", "Enamel", "Woodland", "Polka Dot", "Botanical", "Charming", "Antique", "Lace", "Paisley", "Striped"]
COLOUR = ["Red", "Pink", "Blue", "Sage Green", "Ivory", "Gold", "Silver", "Black", "Mustard", "Teal", "Lilac", "White"]
MATERIAL = ["ceramic", "enamel", "glass", "tin", "wooden", "cotton", "felt", "paper", "bamboo", "porcelain"]
NOUN = ["Mug", "Teacup", "Candle Holder", "Photo Frame", "Cushion Cover", "Tote Bag", "Lunch Box", "Jewellery Box",
        "Notebook", "Wall Clock", "Vase", "Doorstop", "Tea Towel", "Coaster Set", "Trinket Dish", "Hanging Heart",
        "Storage Tin", "Bunting", "Lantern", "Water Bottle", "Keyring", "Wash Bag", "Plant Pot", "Cake Stand"]
GENERIC_LINES = ["Makes a lovely gift for friends and family.", "Comes in a kraft gift box.", "Hand finished, so "
                 "each piece is slightly different.", "A useful everyday piece for the kitchen.", "Wipe clean only.",
                 "Adds a cheerful touch to any room.", "Sold individually.", "Designed in our studio."]
# season: (share of seasonal products, event month-day, weeks of build-up, weeks of decline, title words,
#          season nouns, description lines); demand peaks on the event day every year
SEASONS = {
    "christmas": (0.35, "12-20", 5, 1.2, ["Christmas", "Festive", "Santa", "Reindeer", "Snowman"],
                  ["Bauble", "Stocking", "Advent Calendar", "Tree Ornament"],
                  ["Perfect for christmas stockings and the festive table.", "A cosy christmas tree decoration."]),
    "halloween": (0.15, "10-28", 4, 1.0, ["Halloween", "Spooky", "Pumpkin"], ["Lantern", "Trick Or Treat Bag",
                  "Skull Candle"], ["Spooky fun for halloween parties.", "Ready for trick or treat night."]),
    "valentine": (0.1, "02-12", 3, 0.8, ["Valentine", "Love Heart", "Sweetheart"], ["Card Holder", "Heart Box"],
                  ["A romantic valentine's day gift for someone special."]),
    "easter": (0.1, "04-05", 3, 1.0, ["Easter", "Bunny", "Spring Chick"], ["Egg Cup", "Egg Basket"],
               ["Ideal for the easter egg hunt."]),
    "summer": (0.15, "07-15", 6, 4.0, ["Summer Beach", "Seaside", "Picnic"],
               ["Picnic Blanket", "Beach Bag", "Cool Bag"], ["Made for summer holidays, the beach and picnics."]),
    "back_to_school": (0.15, "08-28", 4, 1.2, ["Back To School", "School"], ["Pencil Case", "Lunch Box", "Ruler Set"],
                       ["Get ready for the new school term."]),
}
REVIEWS_OK = ["Lovely gift, very pleased.", "Nice colour and well made.", "Arrived quickly, as described.",
              "Exactly as pictured.", "Good value for money.", "Sweet little thing, my daughter loves it.",
              "Does the job.", "Pretty and sturdy.", "Bought as a present, went down well.", "Happy with it."]
REVIEWS_MEH = ["A bit smaller than expected.", "Fine but the colour is paler than the photo.",
               "Took a while to arrive.", "Okay for the price."]
REVIEWS_BAD = ["Broke after a week.", "Stopped working after a few days.", "Poor quality, the paint peeled off.",
               "Returned it, very disappointed.", "Cheap plastic, snapped on first use.", "Arrived cracked, "
               "second one too.", "Quality has gone downhill, not like the last one.", "Falling apart already."]
REVIEWS_FIXED = ["The new batch is much better.", "Fixed the old problem, sturdy now.", "Improved design, no issues "
                 "this time.", "Much better quality than before.", "Replacement is perfect, well done."]
REVIEWS_FADED = ["Nice but overhyped.", "Not sure what the fuss was about.", "Everyone has one now, a bit boring.",
                 "Fine, but not worth the hype.", "The craze is over, seen them everywhere."]
REVIEWS_VIRAL = ["Everyone is asking where I got it!", "Bought three more for friends.", "Saw it on tiktok and "
                 "had to have one.", "Absolutely obsessed, ordering another.", "My friends all want one now.",
                 "Selling out everywhere, grab one while you can.", "Best purchase this year, telling everyone."]


def week_ends() -> list[dt.date]:
    """The Sunday that ends each week of the log."""
    return [START + dt.timedelta(days=7 * w + 6) for w in range(N_WEEKS)]


def make_products(rng: np.random.Generator, n: int) -> list[dict]:
    """Draw each product's text and latent parameters (season, events, launch, popularity)."""
    products = []
    for i in range(n):
        p = {"product_id": f"P{i + 1:04d}", "season": None, "launch": 0, "stop": N_WEEKS,
             "level": float(np.clip(rng.lognormal(np.log(80), 0.7), 10, 500)),
             "price": round(float(rng.choice([0.85, 1.25, 1.65, 2.10, 2.95, 3.75, 4.95, 6.75, 8.50, 12.50])), 2)}
        adj, colour, mat, noun = rng.choice(ADJ), rng.choice(COLOUR), rng.choice(MATERIAL), rng.choice(NOUN)
        lines = [f"{'An' if adj[0] in 'AEIOU' else 'A'} {adj.lower()} {noun.lower()} in {colour.lower()} {mat}."]
        title = f"{adj} {colour} {noun}"
        if rng.random() < 0.35:
            p["season"] = name = str(rng.choice(list(SEASONS), p=[v[0] for v in SEASONS.values()]))
            words, nouns, season_lines = SEASONS[name][4:]
            if rng.random() < 0.7:  # most name the season in the title, the rest only in the description
                title = f"{rng.choice(words)} {rng.choice([adj, colour])} {rng.choice(nouns + [noun])}"
            lines.append(str(rng.choice(season_lines)))
        lines.append(str(rng.choice(GENERIC_LINES)))
        p["title"], p["description"] = title, " ".join(lines)
        p["events"], w = [], int(rng.integers(0, 16))
        while w < N_WEEKS:  # quality problems and viral crazes, one at a time
            quality = rng.random() < 0.5
            ev = {"kind": "quality" if quality else "viral", "start": w, "lag": 3,
                  "size": float(np.log(rng.uniform(0.25, 0.5) if quality else rng.uniform(2.0, 4.0))),
                  "hold": int(rng.integers(2, 6))}
            ev["end"] = w + ev["lag"] + 3 + ev["hold"]  # the fix ships / the craze fades from this week
            p["events"].append(ev)
            w = ev["end"] + 3 + int(rng.geometric(1 / EVENT_GAP))
        if rng.random() < 0.12:
            p["launch"] = int(rng.integers(8, 66))
        products.append(p)
    for p in products[5:8]:  # no text at all: sales-only prediction must still work
        p["title"] = p["description"] = ""
        p["no_reviews"] = True
    for p in products[10:14]:  # discontinued early: later windows are all zeros
        p["stop"], p["launch"] = int(rng.integers(5, 10)), 0
    return products


def season_curve(name: str, ends: list[dt.date]) -> np.ndarray:
    """Shape in [0, 1] per week: exponential build-up before each event day and a quicker decay after it."""
    day, rise, fall = SEASONS[name][1:4]
    out = np.zeros(len(ends))
    for year in range(ends[0].year - 1, ends[-1].year + 2):
        weeks = np.array([(e - dt.date.fromisoformat(f"{year}-{day}")).days / 7 for e in ends])
        out = np.maximum(out, np.exp(-np.abs(weeks) / np.where(weeks < 0, rise, fall)))
    return out


def demand(rng: np.random.Generator, p: dict, ends: list[dt.date]) -> tuple[np.ndarray, np.ndarray]:
    """Expected units per week and a promotion flag per week for one product."""
    x, slope, until = np.zeros(N_WEEKS), 0.0, 0
    x[0] = rng.normal(0, 0.3)
    for t in range(1, N_WEEKS):
        if slope == 0 and rng.random() < 0.06:  # a trend: climbs or slides for 6-14 weeks, away from the extremes
            slope = float(-np.sign(x[t - 1] + rng.normal(0, 0.5)) * rng.uniform(0.06, 0.12))
            until = t + int(rng.integers(6, 15))
        elif slope != 0 and t >= until:
            slope = 0.0
        x[t] = x[t - 1] + slope - 0.02 * x[t - 1] + rng.normal(0, 0.03)
    lam = p["level"] * np.exp(x)
    if p["season"]:
        lam = lam * 0.5 * (1 + rng.uniform(4, 10) * season_curve(p["season"], ends))
    t = np.arange(N_WEEKS)
    for ev in p["events"]:  # demand moves `lag` weeks after the first reviews and takes 3 weeks to get there;
        # it moves back over 4 weeks from `end`, when the fixed batch ships or the craze fades
        up = np.clip((t - ev["start"] - ev["lag"] + 1) / 3, 0, 1)
        down = 1 - np.clip((t - ev["end"] + 1) / 4, 0, 1)
        lam = lam * np.exp(ev["size"] * np.minimum(up, down))
    promo = rng.random(N_WEEKS) < 0.01  # a price cut lifts one week and borrows from the next
    after = np.concatenate([[False], promo[:-1]])
    lam = lam * np.where(promo, rng.uniform(2.5, 4, N_WEEKS), 1.0) * np.where(after, 0.6, 1.0)
    lam[t < p["launch"]] = 0
    lam[t >= p["stop"]] = 0
    if p["launch"] > 0:  # a new product takes three weeks to reach its level
        lam[p["launch"]:p["launch"] + 3] *= [0.3, 0.6, 0.85]
    return lam, promo


def simulate(rng: np.random.Generator, products: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw the order log and the reviews of every product."""
    ends = week_ends()
    orders, reviews = [], []
    for p in products:
        lam, promo = demand(rng, p, ends)
        units = rng.negative_binomial(100, 100 / (100 + lam))  # mean lam, variance lam + lam^2/100
        pack = min([2, 3, 4, 6, 12, 24, 48, 96, 144, 288, 576], key=lambda k: abs(k - 2 * p["level"]))
        for w in np.flatnonzero(units):
            left, price = int(units[w]), round(p["price"] * (0.75 if promo[w] else 1.0), 2)
            while left > 0:
                q = min(left, pack * int(rng.integers(1, 5)))
                ts = dt.datetime.combine(START + dt.timedelta(days=7 * int(w) + int(rng.integers(0, 7))),
                                         dt.time(int(rng.integers(8, 21)), int(rng.integers(0, 60))))
                orders.append((p["product_id"], ts, q, price))
                left -= q
        if not p.get("no_reviews"):
            reviews += draw_reviews(rng, p, units)
    log = pd.DataFrame(orders, columns=["product_id", "timestamp", "units", "price"]).sort_values(
        ["timestamp", "product_id"], kind="stable").reset_index(drop=True)
    log.insert(0, "order_id", np.arange(100001, 100001 + len(log)))
    # one review per product and minute, so that "newest first" has exactly one answer
    rev = pd.DataFrame(reviews, columns=["product_id", "timestamp", "text"]).sort_values(
        ["timestamp", "product_id"], kind="stable").drop_duplicates(["product_id", "timestamp"]).reset_index(drop=True)
    return log, rev


def draw_reviews(rng: np.random.Generator, p: dict, units: np.ndarray) -> list[tuple]:
    """Reviews per week: a few ordinary ones (more when more sell), plus the event reviews that lead demand."""
    out = []
    for w in range(N_WEEKS):
        n_ok = rng.poisson(0.15 + 0.0005 * units[w])
        texts = [str(rng.choice(REVIEWS_MEH if rng.random() < 0.15 else REVIEWS_OK)) for _ in range(n_ok)]
        if rng.random() < 0.0003 * units[w]:  # the odd complaint about a perfectly fine product
            texts.append(str(rng.choice(REVIEWS_BAD)))
        for ev in p["events"]:  # the reviews lead demand: complaints or raves, later praise for the fix or boredom
            onset, end = ev["start"] + ev["lag"], ev["end"]
            if ev["start"] <= w < onset:
                pool = REVIEWS_BAD if ev["kind"] == "quality" else REVIEWS_VIRAL
            elif end - ev["lag"] <= w < end:
                pool = REVIEWS_FIXED if ev["kind"] == "quality" else REVIEWS_FADED
            else:
                continue
            texts += list(rng.choice(pool, size=rng.poisson(2.5 if w in (ev["start"], end - ev["lag"]) else 1.0)))
        for text in texts:
            ts = dt.datetime.combine(START + dt.timedelta(days=7 * w + int(rng.integers(0, 7))),
                                     dt.time(int(rng.integers(7, 23)), int(rng.integers(0, 60))))
            out.append((p["product_id"], ts, str(text)))
    return out


def weekly_units(log: pd.DataFrame, ids: list[str]) -> np.ndarray:
    """(products, weeks) matrix of units summed from the order log; weeks end on Sunday."""
    week = (log["timestamp"].dt.normalize() - pd.Timestamp(START)).dt.days // 7
    table = log.assign(week=week).pivot_table(index="product_id", columns="week", values="units", aggfunc="sum")
    return table.reindex(index=ids, columns=range(N_WEEKS)).fillna(0).to_numpy(dtype=float)


def build_records(rng: np.random.Generator, products: list[dict], units: np.ndarray,
                  reviews: pd.DataFrame) -> dict[str, list[dict]]:
    """Window each product at a few cutoffs per split; only data on or before the cutoff enters a record."""
    ends, rule = week_ends(), LabelRule()
    by_product = {pid: g for pid, g in reviews.groupby("product_id")}
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for i, p in enumerate(products):
        sold = np.flatnonzero(units[i])
        first = int(sold[0]) if len(sold) else 0
        revs = by_product.get(p["product_id"])
        for name, weeks in SPLITS.items():
            eligible = [w for w in weeks if w >= first + 3]  # at least 4 weeks since the first sale
            picks = sorted(rng.choice(eligible, size=min(PER_PRODUCT[name], len(eligible)), replace=False))
            for w in picks:
                cutoff = ends[w]
                seen = [] if revs is None else revs[revs["timestamp"].dt.date <= cutoff]["text"].tolist()[::-1]
                sales, future = units[i, max(first, w - HISTORY + 1): w + 1], units[i, w + 1: w + 1 + HORIZON]
                out[name].append({"product_id": p["product_id"], "title": p["title"],
                                  "description": p["description"], "reviews": seen[:5],
                                  "sales": sales.tolist(), "cutoff": cutoff.isoformat(), "freq": "W",
                                  "label": rule.label(sales, future), "future_sales": future.tolist()})
    for name in out:
        out[name].sort(key=lambda r: (r["cutoff"], r["product_id"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data_samples", help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="numpy RNG seed")
    ap.add_argument("--products", type=int, default=250, help="number of products (at least 20)")
    args = ap.parse_args()
    if args.products < 20:
        ap.error(f"--products must be at least 20 (edge-case products use ids up to 14), got {args.products}")
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    products = make_products(rng, args.products)
    log, reviews = simulate(rng, products)
    fmt = "%Y-%m-%dT%H:%M"
    log.assign(timestamp=log["timestamp"].dt.strftime(fmt)).to_csv(out / "orders.csv", index=False)
    pd.DataFrame(products)[["product_id", "title", "description"]].to_csv(out / "products.csv", index=False)
    reviews.assign(timestamp=reviews["timestamp"].dt.strftime(fmt)).to_csv(out / "reviews.csv", index=False)

    splits = build_records(rng, products, weekly_units(log, [p["product_id"] for p in products]), reviews)
    catalog = sorted((r for recs in splits.values() for r in recs), key=lambda r: (r["cutoff"], r["product_id"]))
    write_records(catalog, out / "catalog.jsonl")
    for name, recs in splits.items():
        write_records(recs, out / f"{name}.jsonl")

    print(f"{len(products)} products, {len(log)} order lines, {int(log['units'].sum())} units, "
          f"{len(reviews)} reviews, {len(catalog)} records -> {out}")
    for name, recs in [*splits.items(), ("catalog", catalog)]:
        counts = Counter(r["label"] for r in recs)
        dist = ", ".join(f"{k} {counts[k] / max(1, len(recs)):.0%}" for k in ("rising", "falling", "stable"))
        span = f"{recs[0]['cutoff']} .. {recs[-1]['cutoff']}" if recs else "-"
        print(f"  {name:8s} {len(recs):5d} records, cutoffs {span}: {dist}")


if __name__ == "__main__":
    main()
