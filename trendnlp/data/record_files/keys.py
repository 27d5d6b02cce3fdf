"""A memory-flat set of (product_id, cutoff) keys, for duplicate checks over millions of rows."""
from __future__ import annotations

import hashlib

import numpy as np


class KeySet:
    """Set of (product_id, cutoff) keys held as 8-byte hashes: ~8 bytes per row instead of ~200 for a set of
    tuples, so memory stays flat on million-row catalogs. A false duplicate needs a 64-bit blake2b collision
    (odds ~n^2 / 2^65, about 3e-8 at a million rows).

    New keys gather in a small set and are merged, every `flush` keys, into the last of a few sorted runs of at
    most `run` keys; a full run is left as it is and a new one started. So a merge copies one run, never all
    the keys (one array of every key would need twice its size at each merge: 80 MB at 5M rows), at the
    price of one binary search per run on lookup.
    """

    def __init__(self, flush: int = 1 << 16, run: int = 1 << 20):
        self.runs: list[np.ndarray] = []
        self.recent: set[int] = set()
        self.flush, self.run = flush, max(run, flush)

    def add(self, key: tuple) -> bool:
        """Add `key`; False when it was already present."""
        h = _hash(key)
        if self._has(h):
            return False
        self._insert(h)
        return True

    def add_many(self, keys: list[tuple]) -> np.ndarray:
        """Add keys in order, as `add` one by one would: (len(keys),) bool, False for each key already present
        or met earlier in `keys`. The lookups are vectorised: one sorted search per run for the whole batch."""
        h = np.fromiter((_hash(k) for k in keys), dtype=np.uint64, count=len(keys))
        new = np.zeros(len(h), dtype=bool)
        new[np.unique(h, return_index=True)[1]] = True  # the first copy of each key in the batch
        if self.recent:
            new &= ~np.isin(h, np.fromiter(self.recent, dtype=np.uint64, count=len(self.recent)))
        for run in self.runs:
            new &= run[np.minimum(np.searchsorted(run, h), len(run) - 1)] != h
        for value in h[new].tolist():
            self._insert(value)
        return new

    def _insert(self, h: int) -> None:
        self.recent.add(h)
        if len(self.recent) >= self.flush:  # the new keys are distinct and absent: merge into the last run
            new = np.fromiter(self.recent, dtype=np.uint64, count=len(self.recent))
            if self.runs and len(self.runs[-1]) + len(new) <= self.run:
                new = np.concatenate([self.runs.pop(), new])
            new.sort()
            self.runs.append(new)
            self.recent = set()

    def __contains__(self, key: tuple) -> bool:
        return self._has(_hash(key))

    def __len__(self) -> int:
        return len(self.recent) + sum(len(r) for r in self.runs)

    def _has(self, h: int) -> bool:
        if h in self.recent:
            return True
        target = np.uint64(h)
        for run in self.runs:
            i = int(np.searchsorted(run, target))
            if i < len(run) and run[i] == target:
                return True
        return False


def _hash(key: tuple) -> int:
    return int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=8).digest(), "little")
