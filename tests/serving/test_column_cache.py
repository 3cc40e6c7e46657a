"""The feature store's in-memory cache: bounded, time-limited, column by column (no Feast needed)."""

from __future__ import annotations

import threading

import numpy as np

from serving.feature_store import ColumnCache, _distinct_keys, _match

DTYPES = {"price": np.float64, "category": object}


class Clock:
    """A settable clock for the cache's time limit."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rows(*keys: str) -> dict[str, np.ndarray]:
    """Values derived from the key, so a wrong row shows: price = the key's number, category = the key."""
    return {
        "price": np.array([float(key[1:]) for key in keys]),
        "category": np.array(list(keys), dtype=object),
    }


def test_get_returns_the_cached_rows_of_the_keys_found_in_order():
    cache = ColumnCache(DTYPES, capacity=10, ttl_s=60)
    cache.put(["l1", "l2", "l3"], rows("l1", "l2", "l3"))
    found, values = cache.get(["l3", "l9", "l1"])
    assert found.tolist() == [True, False, True]
    assert values["price"].tolist() == [3.0, 1.0]
    assert values["category"].tolist() == ["l3", "l1"]


def test_rows_expire_after_the_time_limit_and_a_refetch_renews_them():
    clock = Clock()
    cache = ColumnCache(DTYPES, capacity=10, ttl_s=60, clock=clock)
    cache.put(["l1", "l2"], rows("l1", "l2"))
    clock.now = 59.9
    assert cache.get(["l1", "l2"])[0].tolist() == [True, True]
    cache.put(["l2"], {"price": np.array([20.0]), "category": np.array(["new"], dtype=object)})
    clock.now = 60.0
    found, values = cache.get(["l1", "l2"])
    assert found.tolist() == [False, True]
    assert values["price"].tolist() == [20.0] and values["category"].tolist() == ["new"]


def test_a_full_cache_evicts_the_key_fetched_longest_ago():
    cache = ColumnCache(DTYPES, capacity=3, ttl_s=60)
    cache.put(["l1", "l2", "l3"], rows("l1", "l2", "l3"))
    cache.put(["l1"], rows("l1"))  # refetched: now the newest
    cache.put(["l4", "l5"], rows("l4", "l5"))
    assert len(cache) == 3
    found, values = cache.get(["l1", "l2", "l3", "l4", "l5"])
    assert found.tolist() == [True, False, False, True, True]
    assert values["price"].tolist() == [1.0, 4.0, 5.0], "each key still reads its own row"


def test_more_keys_than_the_capacity_keep_the_last_ones():
    cache = ColumnCache(DTYPES, capacity=2, ttl_s=60)
    cache.put(["l1", "l2", "l3"], rows("l1", "l2", "l3"))
    found, values = cache.get(["l1", "l2", "l3"])
    assert found.tolist() == [False, True, True] and values["price"].tolist() == [2.0, 3.0]


def test_the_cache_grows_past_its_first_allocation_up_to_the_capacity():
    cache = ColumnCache(DTYPES, capacity=3000, ttl_s=60)
    keys = [f"l{i}" for i in range(2500)]
    cache.put(keys, rows(*keys))
    found, values = cache.get(keys)
    assert found.all() and values["price"].tolist() == [float(i) for i in range(2500)]


def test_no_time_limit_or_no_capacity_is_no_cache():
    for capacity, ttl_s in ((10, 0.0), (0, 60.0)):
        cache = ColumnCache(DTYPES, capacity=capacity, ttl_s=ttl_s)
        cache.put(["l1"], rows("l1"))
        found, values = cache.get(["l1"])
        assert not found.any() and len(values["price"]) == 0 and len(cache) == 0


def test_concurrent_puts_and_gets_never_mix_rows():
    cache = ColumnCache(DTYPES, capacity=50, ttl_s=60)
    errors = []

    def work(offset: int) -> None:
        for round_ in range(200):
            keys = [f"l{offset + (round_ * 7 + i) % 120}" for i in range(20)]
            cache.put(keys, rows(*keys))
            found, values = cache.get(keys)
            expected = [float(key[1:]) for key, hit in zip(keys, found, strict=True) if hit]
            if values["price"].tolist() != expected:
                errors.append((keys, values["price"].tolist()))

    threads = [threading.Thread(target=work, args=(offset,)) for offset in (0, 60, 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(cache) == 50


def test_distinct_keys_map_every_row_and_build_tuples_only_for_several_key_columns():
    codes, keys = _distinct_keys(["user_id", "category"], {"user_id": "u1"}, {"category": ["a", "b", "a"]}, 3)
    assert keys == [("u1", "a"), ("u1", "b")] and codes.tolist() == [0, 1, 0]
    codes, keys = _distinct_keys(["listing_id"], {}, {"listing_id": [7, None, "7"]}, 3)
    assert keys == ["7", ""] and codes.tolist() == [0, 1, 0]
    codes, keys = _distinct_keys(["user_id"], {"user_id": None}, {"listing_id": ["l1", "l2"]}, 2)
    assert keys == [""] and codes.tolist() == [0, 0]


def test_match_flags_equal_non_empty_values():
    category = np.array(["toys", "art", ""], dtype=object)
    assert _match({"query_category": "toys"}, {"category": category}, "query_category", "category", 3).tolist() == [
        1.0,
        0.0,
        0.0,
    ]
    assert _match({}, {"category": category}, "query_category", "category", 3).tolist() == [0.0, 0.0, 0.0]
    empty = {"query_category": ""}
    assert _match(empty, {"category": category}, "query_category", "category", 3).tolist() == [0.0, 0.0, 0.0]
