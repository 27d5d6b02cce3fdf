"""The product-grouped sampler of training, for records in memory and in Arrow alike (on int product codes).

Products are shuffled, then each product's records (shuffled) are laid out in turn; batches cut from this order
hold few distinct products, so per-batch text dedup encodes far fewer texts. Chunks of `chunk` consecutive
indices are shuffled again so a batch still mixes several products. Memory: a few bytes per record (int32
arrays), no Python object per record, so it serves millions of Arrow records too.
"""
from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np
from torch.utils.data import Sampler


def product_codes(product_ids: Iterable[str]) -> np.ndarray:
    """An int32 code per record, numbering products in the order they first appear (as the Arrow build does).

    >>> product_codes(["b", "a", "b", "c"]).tolist()
    [0, 1, 0, 2]
    """
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(p, len(codes)) for p in product_ids], dtype=np.int32)


class ProductGroupedSampler(Sampler[int]):
    """Yields record indices so that records of one product sit next to each other (see the module docstring).

    Args:
        codes: (N,) product code of each record, 0 .. P-1 numbered in first-seen order (`product_codes`, or the
            Arrow build's `product_code` column).
        seed: base seed; the order changes with `set_epoch` (`random.Random(seed + epoch)`).
        chunk: group size kept together (e.g. the batch size divided by a few).

    >>> list(ProductGroupedSampler(product_codes(["a", "b", "a", "b"]), seed=0, chunk=2))
    [0, 2, 3, 1]
    """

    def __init__(self, codes, seed: int = 0, chunk: int = 8):
        self.seed, self.chunk, self.epoch = seed, max(1, chunk), 0
        self.by_product, self.starts = _group_by_code(np.asarray(codes, dtype=np.int32))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.by_product)

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        products = np.arange(len(self.starts) - 1, dtype=np.int32)
        rng.shuffle(products)
        order, pos = np.empty_like(self.by_product), 0
        for p in products.tolist():  # each product's records, ascending, then shuffled
            records = self.by_product[self.starts[p]:self.starts[p + 1]].tolist()
            rng.shuffle(records)
            order[pos:pos + len(records)] = records
            pos += len(records)
        starts = np.arange(0, len(order), self.chunk, dtype=np.int64)  # chunk starts shuffled, sliced lazily
        rng.shuffle(starts)
        for start in starts:  # numpy scalars: no Python list of every chunk
            yield from order[start:start + self.chunk].tolist()


def _group_by_code(codes: np.ndarray, step: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """Record indices ordered by code, stable (int32), and where each code's records start (n_codes + 1)."""
    counts = np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    out, filled = np.empty(len(codes), dtype=np.int32), starts[:-1].copy()
    for lo in range(0, len(codes), step):  # a counting sort, one slice at a time
        part = codes[lo:lo + step]
        idx = np.argsort(part, kind="stable")
        c = part[idx]
        first = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])  # where each code's run starts in the slice
        within = np.arange(len(c)) - np.repeat(first, np.diff(np.r_[first, len(c)]))
        out[filled[c] + within] = lo + idx
        filled += np.bincount(c, minlength=len(filled))
    return out, starts
