"""A memory-flat set of (product_id, cutoff) keys, for duplicate checks over millions of rows."""
from __future__ import annotations

import hashlib

import numpy as np


class KeySet:
    """Set of (product_id, cutoff) keys held as 8-byte hashes: ~8 bytes per row instead of ~200 for a set of
    tuples, so memory stays flat on million-row catalogs. A false duplicate needs a 64-bit blake2b collision
    (odds ~n^2 / 2^65, about 3e-8 at a million rows)."""

    def __init__(self, flush: int = 1 << 16):
        self.sorted, self.recent, self.flush = np.empty(0, dtype=np.uint64), set(), flush

    def add(self, key: tuple) -> bool:
        """Add `key`; False when it was already present."""
        h = _hash(key)
        if self._has(h):
            return False
        self.recent.add(h)
        if len(self.recent) >= self.flush:  # the new keys are distinct and absent: concatenate, sort in place
            merged = np.concatenate([self.sorted, np.fromiter(self.recent, dtype=np.uint64, count=len(self.recent))])
            merged.sort()
            self.sorted, self.recent = merged, set()
        return True

    def __contains__(self, key: tuple) -> bool:
        return self._has(_hash(key))

    def _has(self, h: int) -> bool:
        if h in self.recent:
            return True
        i = int(np.searchsorted(self.sorted, np.uint64(h)))
        return i < len(self.sorted) and int(self.sorted[i]) == h


def _hash(key: tuple) -> int:
    return int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=8).digest(), "little")
