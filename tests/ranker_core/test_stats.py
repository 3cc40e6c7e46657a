import numpy as np
import pytest

from ranker_core.ranking_metrics import auc
from ranker_core.stats import (
    auc_draws,
    bootstrap_means,
    delong_covariance,
    percentile_interval,
    sign_flip_p_values,
)


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


def test_delong_gives_each_auc_and_the_bootstrap_covariance_of_the_estimates():
    rng = np.random.default_rng(8)
    labels = rng.random(3000) < 0.3
    first = np.round(rng.normal(labels * 1.0, 1.0), 1)  # rounded: ties within and across the classes
    second = first + rng.normal(0, 0.8, 3000)  # correlated with the first, weaker
    scores = np.column_stack([first, second])
    aucs, covariance = delong_covariance(labels, scores)
    np.testing.assert_allclose(aucs, [auc(labels, first), auc(labels, second)])
    resampled = []
    for _ in range(400):
        rows = rng.integers(0, 3000, 3000)
        resampled.append([auc(labels[rows], scores[rows, column]) for column in range(2)])
    np.testing.assert_allclose(covariance, np.cov(np.array(resampled).T), rtol=0.25)
    assert 0 < covariance[0, 1] < np.sqrt(covariance[0, 0] * covariance[1, 1])


def test_auc_draws_are_paired_and_centred_on_the_aucs():
    rng = np.random.default_rng(10)
    labels = rng.random(2000) < 0.25
    scores = rng.normal(labels * 1.0, 1.0)
    draws = auc_draws(labels, np.column_stack([scores, scores, -scores]), 2000, np.random.default_rng(11))
    np.testing.assert_allclose(draws[:, 0], draws[:, 1])  # the same model: no difference in any draw
    np.testing.assert_allclose(draws[:, 0] + draws[:, 2], 1.0)  # reversed scores
    assert draws[:, 0].mean() == pytest.approx(auc(labels, scores), abs=0.002)
    low, high = percentile_interval(draws[:, :1])
    assert 0.04 < high[0] - low[0] < 0.07  # AUC about 0.76 on 500 positives: standard error about 0.012


def test_auc_without_both_classes_is_nan():
    aucs, covariance = delong_covariance(np.zeros(5), np.arange(5.0))
    assert np.isnan(aucs).all() and np.isnan(covariance).all()
    assert np.isnan(auc_draws(np.ones(5), np.arange(5.0), 3, np.random.default_rng(0))).all()


def test_auc_draws_and_their_interval_stay_within_0_and_1():
    """A high AUC on few positives: the normal law's upper tail passes 1, an AUC cannot."""
    labels = np.array([1] * 8 + [0] * 22)
    scores = np.arange(30.0)[::-1] + np.where(np.arange(30) == 7, -25.0, 0.0)  # one positive ranked low
    draws = auc_draws(labels, scores, 2000, np.random.default_rng(0))
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    low, high = percentile_interval(draws)
    assert 0.0 <= low[0] < high[0] <= 1.0
