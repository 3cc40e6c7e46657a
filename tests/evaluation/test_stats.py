import numpy as np
import pytest

from components.evaluation.stats import bootstrap_means, percentile_interval, sign_flip_p_values


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
