import numpy as np
import pytest

from components.evaluation.stats import (
    _resample_counts,
    bootstrap_aucs,
    bootstrap_means,
    percentile_interval,
    sign_flip_p_values,
)
from ranker_core.ranking_metrics import auc


def test_bootstrap_interval_covers_the_mean_and_excludes_nan_requests():
    rng = np.random.default_rng(0)
    values = rng.normal(0.5, 0.1, size=(400, 1))
    with_gaps = values.copy()
    with_gaps[::4] = np.nan
    draws = bootstrap_means(np.hstack([values, with_gaps]), 500, np.random.default_rng(1))
    low, high = percentile_interval(draws)
    assert low[0] < values.mean() < high[0]
    assert low[1] < np.nanmean(with_gaps) < high[1]
    assert 0.01 < high[0] - low[0] < 0.04  # about 4 standard errors (0.1 / sqrt(400) = 0.005)


def test_resamples_are_paired_across_columns():
    values = np.random.default_rng(2).random((50, 1))
    draws = bootstrap_means(np.hstack([values, values + 0.1]), 200, np.random.default_rng(3))
    np.testing.assert_allclose(draws[:, 1] - draws[:, 0], 0.1)


def test_bootstrap_is_reproducible_with_a_seed():
    values = np.random.default_rng(4).random((30, 2))
    first = bootstrap_means(values, 50, np.random.default_rng(5))
    np.testing.assert_array_equal(first, bootstrap_means(values, 50, np.random.default_rng(5)))


def test_sign_flip_separates_a_real_difference_from_noise():
    rng = np.random.default_rng(6)
    real = rng.normal(0.05, 0.1, size=(300, 1))
    noise = rng.normal(0.0, 0.1, size=(300, 1))
    p_values = sign_flip_p_values(np.hstack([real, noise, np.zeros((300, 1))]), 999, np.random.default_rng(7))
    assert p_values[0] < 0.01
    assert p_values[1] > 0.05
    assert p_values[2] == pytest.approx(1.0)


def test_bootstrap_aucs_equal_the_auc_of_each_resample_and_are_paired():
    rng = np.random.default_rng(8)
    labels = rng.random(60) < 0.3
    coarse = np.round(rng.random(60) + labels * 0.3, 1)  # tied scores across both classes
    scores = np.column_stack([coarse, -coarse, rng.random(60)])
    draws = bootstrap_aucs(labels, scores, 40, np.random.default_rng(9))
    counts = _resample_counts(np.random.default_rng(9), 40, 60).astype(int)  # the same draws
    for draw, count in zip(draws, counts, strict=True):
        rows = np.repeat(np.arange(60), count)
        expected = [auc(labels[rows], scores[rows, column]) for column in range(3)]
        np.testing.assert_allclose(draw, expected)
    np.testing.assert_allclose(draws[:, 0] + draws[:, 1], 1.0)  # reversed scores on the same rows


def test_bootstrap_auc_interval_covers_the_auc():
    rng = np.random.default_rng(10)
    labels = rng.random(2000) < 0.25
    scores = rng.normal(labels * 1.0, 1.0)[:, None]
    low, high = percentile_interval(bootstrap_aucs(labels, scores, 300, np.random.default_rng(11)))
    assert low[0] < auc(labels, scores[:, 0]) < high[0]
    assert 0.02 < high[0] - low[0] < 0.08  # AUC about 0.76 on 500 positives: standard error about 0.012
