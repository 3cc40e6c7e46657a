"""Top-k per chunk on codes: complete users of a grouped table leave as final rows, the others to the shuffle."""

import numpy as np
import pandas as pd
from apache_beam.ml.inference.base import PredictionResult

from batch.topk import RankingLayout, chunk_top_k, ranked_rows

LAYOUT = RankingLayout(user="user_id", item="listing_id", campaign="module_name", tasks=("click",))


def scored(users: list[str], items: list[str], scores: list[float]) -> PredictionResult:
    chunk = pd.DataFrame({"user_id": users, "listing_id": items, "module_name": "email"})
    score = np.array(scores, dtype=np.float32)
    return PredictionResult(chunk, {"score": score, "click": score / 10})


def test_a_grouped_chunk_ranks_its_inner_users_and_ships_its_edge_users():
    result = scored(
        ["u1", "u1", "u2", "u2", "u2", "u2", "u3"],
        ["a", "b", "c", "d", "c", "e", "f"],
        [0.1, 0.2, 0.5, 0.7, 0.9, 0.3, 0.4],
    )

    top = chunk_top_k(result, LAYOUT, k=2, grouped=True)

    complete = top.complete.to_pandas()
    assert complete[["user_id", "rank", "listing_id"]].values.tolist() == [["u2", 1, "c"], ["u2", 2, "d"]]
    np.testing.assert_allclose(complete["score"], [0.9, 0.7], rtol=1e-6)
    np.testing.assert_allclose(complete["p_click"], [0.09, 0.07], rtol=1e-6)
    assert top.complete_users == 1
    assert [(key, [item for _, item, _ in records]) for key, records in top.spanning] == [
        (("email", "u1"), ["b", "a"]),
        (("email", "u3"), ["f"]),
    ]


def test_users_that_are_not_consecutive_all_go_to_the_shuffle():
    result = scored(["u1", "u2", "u1", "u3"], ["a", "b", "c", "d"], [0.1, 0.2, 0.3, 0.4])

    for grouped in (False, True):
        top = chunk_top_k(result, LAYOUT, k=5, grouped=grouped)
        assert top.complete is None and top.complete_users == 0
        assert sorted(key[1] for key, _ in top.spanning) == ["u1", "u2", "u3"]


def test_a_shuffled_user_merges_its_chunks_best_distinct_listings():
    first = chunk_top_k(scored(["u1", "u1"], ["a", "b"], [0.2, 0.5]), LAYOUT, k=2, grouped=True)
    second = chunk_top_k(scored(["u1", "u1"], ["a", "c"], [0.9, 0.1]), LAYOUT, k=2, grouped=True)
    chunks = [records for top in (first, second) for _, records in top.spanning]

    rows = list(ranked_rows((("email", "u1"), chunks), LAYOUT, k=2))

    assert [(row["rank"], row["listing_id"]) for row in rows] == [(1, "a"), (2, "b")]


def test_each_users_best_distinct_listings_match_a_pandas_ranking_on_random_chunks():
    rng = np.random.default_rng(7)
    for rows in (1, 5, 300):
        chunk = pd.DataFrame(
            {
                "user_id": rng.choice([f"u{i}" for i in range(8)], rows),
                "listing_id": rng.choice([f"l{i}" for i in range(12)], rows),  # repeats within a user
                "module_name": rng.choice(["email", "push"], rows),
            }
        )
        score = rng.random(rows).astype(np.float32)
        top = chunk_top_k(PredictionResult(chunk, {"score": score, "click": score}), LAYOUT, k=3)

        expected = (
            chunk.assign(score=score)
            .sort_values("score", ascending=False, kind="stable")
            .drop_duplicates(["module_name", "user_id", "listing_id"])
            .groupby(["module_name", "user_id"])
            .head(3)
        )
        got = {key: [item for _, item, _ in records] for key, records in top.spanning}
        want = {
            key: list(group["listing_id"]) for key, group in expected.groupby(["module_name", "user_id"], sort=False)
        }
        assert got == want
