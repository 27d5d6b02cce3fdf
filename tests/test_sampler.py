"""The product-grouped sampler (trendnlp.data.inputs.sampler), one class for records in memory and in Arrow."""
from __future__ import annotations

import numpy as np

from trendnlp.data.inputs.sampler import ProductGroupedSampler, _group_by_code, product_codes

# the order the in-memory sampler gave before it and the Arrow one became one class (ids -> codes by the caller):
# the same seed still gives the same training batches
IDS = [f"p{(i * 7) % 11}" for i in range(40)] + ["solo"]
ORDER_SEED3_CHUNK4 = {
    0: [13, 2, 24, 8, 28, 17, 40, 15, 31, 3, 14, 25, 36, 27, 38, 5, 35, 22, 33, 39, 6, 30, 19, 9, 20, 23, 1, 12, 34,
        29, 18, 7, 10, 4, 26, 37, 16, 21, 32, 11, 0],
    1: [25, 31, 20, 7, 18, 2, 30, 8, 19, 32, 21, 10, 27, 34, 26, 37, 4, 29, 39, 17, 28, 6, 12, 1, 23, 38, 5, 16, 11,
        15, 36, 14, 3, 33, 0, 22, 9, 40, 24, 13, 35],
}


def test_the_order_of_a_seed_is_the_one_it_was():
    s = ProductGroupedSampler(product_codes(IDS), seed=3, chunk=4)
    for epoch, expected in ORDER_SEED3_CHUNK4.items():
        s.set_epoch(epoch)
        assert list(s) == expected


def test_a_seeded_permutation_keeping_products_together():
    codes = np.repeat(np.arange(50), 8)
    s = ProductGroupedSampler(codes, seed=1, chunk=4)
    order = list(s)
    assert sorted(order) == list(range(len(codes))) and order == list(s) and len(s) == len(codes)
    assert all(type(i) is int for i in order)  # DataLoader indices, not numpy scalars
    s.set_epoch(1)
    assert list(s) != order
    runs = sum(codes[a] != codes[b] for a, b in zip(order, order[1:]))
    assert runs < len(codes) // 2  # mostly same-product neighbours
    assert list(ProductGroupedSampler(np.zeros(0, dtype=np.int32))) == []


def test_group_by_code_is_a_stable_counting_sort():
    codes = np.random.default_rng(0).integers(0, 37, 1000).astype(np.int32)
    order, starts = _group_by_code(codes, step=64)  # many slices
    np.testing.assert_array_equal(order, np.argsort(codes, kind="stable"))
    np.testing.assert_array_equal(np.diff(starts), np.bincount(codes))
