import itertools

import numpy as np
import pytest
from sklearn.metrics import ndcg_score, roc_auc_score

from ranker_core.ranking_metrics import (
    FULL_LIST,
    RequestGroups,
    auc,
    auc_per_subset,
    calibration,
    metric_name,
    ndcg_per_request,
    parse_metric,
)


def _random_requests(seed: int, n_requests: int = 60):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 13, n_requests)
    ids = np.repeat(np.arange(n_requests), sizes)
    gains = rng.integers(0, 3, len(ids)).astype(float) * (rng.random(len(ids)) < 0.5)
    scores = rng.integers(0, 4, len(ids)).astype(float)  # few distinct values: many ties
    return ids, gains, scores


@pytest.mark.parametrize("k", [1, 3, 5, FULL_LIST])
def test_ndcg_matches_sklearn_including_its_tie_averaging(k):
    ids, gains, scores = _random_requests(seed=k)
    ours = ndcg_per_request(RequestGroups.from_ids(ids), gains, scores, [k])[k]
    for request in np.unique(ids):
        rows = ids == request
        if gains[rows].sum() == 0:
            assert np.isnan(ours[request])  # excluded: sklearn would call it 0
            continue
        expected = ndcg_score([gains[rows]], [scores[rows]], k=None if k == FULL_LIST else k, ignore_ties=False)
        assert ours[request] == pytest.approx(expected)


def test_ties_score_the_expected_dcg_of_a_random_tie_break():
    gains = np.array([1.0, 0.0, 3.0, 0.0, 1.0])
    scores = np.array([0.5, 0.5, 0.5, 0.9, 0.1])  # rows 0-2 tie in positions 1-3
    ideal = sum(g / np.log2(i + 2) for i, g in enumerate(sorted(gains, reverse=True)[:3]))
    outcomes = []
    for tie_order in itertools.permutations([0, 1, 2]):
        order = [3, *tie_order, 4]
        outcomes.append(sum(gains[row] / np.log2(i + 2) for i, row in enumerate(order[:3])) / ideal)
    ours = ndcg_per_request(RequestGroups.from_ids(np.zeros(5)), gains, scores, [3])[3]
    assert ours[0] == pytest.approx(np.mean(outcomes))


def test_result_does_not_depend_on_row_order():
    ids, gains, scores = _random_requests(seed=7)
    shuffled = np.random.default_rng(0).permutation(len(ids))
    first = ndcg_per_request(RequestGroups.from_ids(ids), gains, scores, [5])[5]
    second = ndcg_per_request(RequestGroups.from_ids(ids[shuffled]), gains[shuffled], scores[shuffled], [5])[5]
    np.testing.assert_array_equal(first, second)


def test_single_candidates_requests_without_positives_and_empty_input():
    groups = RequestGroups.from_ids(np.array(["solo-positive", "solo-negative", "pair", "pair"]))
    ndcg = ndcg_per_request(groups, np.array([1.0, 0.0, 0.0, 0.0]), np.array([0.3, 0.2, 0.9, 0.1]), [10])[10]
    # ids are numbered in sorted order: pair, solo-negative, solo-positive
    assert np.isnan(ndcg[0]) and np.isnan(ndcg[1]) and ndcg[2] == 1.0
    empty = ndcg_per_request(RequestGroups.from_ids(np.array([], dtype=object)), np.array([]), np.array([]), [5, 0])
    assert empty[5].shape == (0,) and empty[0].shape == (0,)


def test_a_perfect_ranking_scores_one_and_a_reversed_one_less():
    groups = RequestGroups.from_ids(np.zeros(4))
    gains = np.array([3.0, 1.0, 0.0, 7.0])
    assert ndcg_per_request(groups, gains, gains, [2])[2][0] == 1.0
    assert ndcg_per_request(groups, gains, -gains, [2])[2][0] < 0.2


def test_bad_scores_and_lengths_are_rejected():
    groups = RequestGroups.from_ids(np.zeros(2))
    with pytest.raises(ValueError, match="1 scores are NaN or infinite"):
        ndcg_per_request(groups, np.ones(2), np.array([0.1, np.nan]), [5])
    with pytest.raises(ValueError, match="3 scores for 2 rows"):
        ndcg_per_request(groups, np.ones(2), np.ones(3), [5])


def test_first_row_values_picks_each_requests_first_row():
    groups = RequestGroups.from_ids(np.array(["b", "a", "b", "a"]))
    np.testing.assert_array_equal(groups.first_row_values(np.array(["x", "y", "z", "w"])), ["y", "x"])


def test_auc_matches_sklearn_with_ties_and_is_nan_for_one_class():
    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 2, 500), rng.integers(0, 10, 500).astype(float)
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(auc(np.zeros(3), np.arange(3.0)))


def test_calibration_measures_the_gap_per_bin():
    perfect = calibration(np.array([0, 1, 1, 0]), np.array([0.0, 1.0, 1.0, 0.0]), bins=4)
    assert perfect.ece == 0.0 and sum(perfect.count) == 4
    overconfident = calibration(np.array([1, 0, 1, 0]), np.full(4, 0.9), bins=10)
    assert overconfident.ece == pytest.approx(0.4) and overconfident.positive_rate == [0.5]


def test_calibration_bins_hold_equal_numbers_of_rows_for_rare_tasks():
    rng = np.random.default_rng(0)
    predictions = rng.uniform(0.0, 0.02, 10_000)  # a rare task: every prediction in the first tenth
    labels = rng.random(10_000) < predictions
    result = calibration(labels, predictions, bins=10)
    assert len(result.count) == 10 and min(result.count) >= 999
    assert result.upper[-1] == pytest.approx(predictions.max()) and result.ece < 0.005
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        calibration(np.array([1]), np.array([1.5]))


def test_metric_names_round_trip():
    assert [parse_metric(metric_name(k)) for k in (5, 10, FULL_LIST)] == [5, 10, FULL_LIST]
    for bad in ("ndcg@0", "map@5", "ndcg@x"):
        with pytest.raises(ValueError, match="ndcg@<k>"):
            parse_metric(bad)


def test_auc_per_subset_matches_sklearn_within_each_subset():
    rng = np.random.default_rng(4)
    labels, scores, subsets = (
        rng.integers(0, 2, 3000),
        rng.integers(0, 20, 3000).astype(float),
        rng.integers(0, 4, 3000),
    )
    per_subset = auc_per_subset(labels, scores, subsets, 5)  # subset 4 has no rows
    for subset in range(4):
        rows = subsets == subset
        assert per_subset[subset] == pytest.approx(roc_auc_score(labels[rows], scores[rows]))
    assert np.isnan(per_subset[4])


def test_a_request_in_two_modules_is_refused_naming_it_not_judged_in_its_first_rows_module():
    from components.evaluation.evaluate import request_modules
    from ranker_core.cli_support import InvalidValueError

    groups = RequestGroups.from_ids(np.array(["a", "a", "b", "b", "c"]))
    assert list(request_modules(groups, np.array(["home", "home", "cart", "cart", "home"], dtype=object))) == [
        "home",
        "cart",
        "home",
    ]
    modules = np.array(["home", "home", "cart", "search", "home"], dtype=object)
    with pytest.raises(InvalidValueError, match=r"1 of 3 requests .* request 'b' in cart and search"):
        request_modules(groups, modules)
