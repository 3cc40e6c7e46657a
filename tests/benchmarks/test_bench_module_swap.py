"""The module swap benchmark's alias check: chosen on the earliest requests, judged on the later ones."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_module_swap import UNKNOWN, alias_report, choose_alias, probe_requests, swap_ndcg
from ranker_core.schema import MODULE, REQUEST_ID, TIMESTAMP, label_key

REQUESTS, ROWS = 40, 5


def held_out_columns() -> dict[str, np.ndarray]:
    """40 requests of 5 rows, one favorite each, in shuffled row order; request r was shown at time 100 r."""
    rng = np.random.default_rng(0)
    request = np.repeat(np.arange(REQUESTS), ROWS)
    favorite = np.zeros(REQUESTS * ROWS, dtype=np.int64)
    favorite[np.arange(REQUESTS) * ROWS + rng.integers(0, ROWS, REQUESTS)] = 1
    order = rng.permutation(REQUESTS * ROWS)
    return {
        REQUEST_ID: np.array([f"r{r:02d}" for r in request], dtype=object)[order],
        TIMESTAMP: (100 * request + rng.integers(0, 50, REQUESTS * ROWS))[order],
        label_key("favorite"): favorite[order],
        MODULE: np.full(REQUESTS * ROWS, "deals", dtype=object),
    }


def scorer_knowing(module: str, seed: int):
    """Ranks the favorite first under ``module``'s name, at random under any other name."""

    def score(columns):
        noise = np.random.default_rng(seed).random(len(columns[REQUEST_ID]))
        knows = columns[MODULE] == module
        return {"favorite": np.where(knows, columns[label_key("favorite")] + noise / 10, noise)}

    return score


def test_the_probe_is_the_earliest_share_of_requests_whatever_the_row_order():
    columns = held_out_columns()
    probe = probe_requests(columns, 0.25)
    ids = np.unique(columns[REQUEST_ID])  # the requests in RequestGroups order
    assert ids[probe].tolist() == [f"r{r:02d}" for r in range(10)]


def test_the_alias_is_chosen_on_the_probe_requests_only_and_ties_keep_the_unknown_name():
    probe = np.array([True, True, False, False])
    ndcg = {
        UNKNOWN: {"favorite": np.array([0.5, 0.5, 0.5, 0.5])},
        "push": {"favorite": np.array([0.6, np.nan, 0.1, 0.1])},  # best where it is chosen, not after
        "search": {"favorite": np.array([0.2, 0.2, 1.0, 1.0])},
    }
    assert choose_alias(ndcg, "favorite", probe) == "push"
    assert choose_alias({UNKNOWN: ndcg[UNKNOWN], "same": ndcg[UNKNOWN]}, "favorite", probe) == UNKNOWN


def test_each_ranker_gets_its_own_alias_and_the_lifts_are_judged_on_the_later_requests():
    columns = held_out_columns()
    names = [UNKNOWN, "push", "search"]
    rankers = {
        "mmoe": swap_ndcg(scorer_knowing("push", seed=1), columns, ["favorite"], names),
        "gbdt_global": swap_ndcg(scorer_knowing("nothing", seed=2), columns, ["favorite"], names),
    }
    assert np.nanmean(rankers["mmoe"]["push"]["favorite"]) == 1.0
    lines = alias_report(rankers, "favorite", probe_requests(columns, 0.5))
    assert lines[0].startswith("Alias chosen on the earliest 50% of the held-out requests (20)")
    assert "| mmoe, as push | 1.0000 |" in lines
    assert not any(line.startswith("| gbdt_global, as") for line in lines)  # it knows no name: it kept its own
    lift = next(line for line in lines if line.startswith("mmoe, as push vs gbdt_global, unknown name: favorite"))
    low = float(lift.split("[")[1].split("%")[0])
    assert low > 0  # a perfect ranking beats a random one with the interval above 0
