"""Paired uncertainty over requests: bootstrap confidence intervals and a sign-flip test.

Values come as a matrix, one row per request and one column per
(model, target, cutoff); NaN marks a request excluded from a column (no
positive for that target). Every column is resampled with the SAME request
draws, so differences and ratios between columns are paired. Both procedures
are matrix products of a (draws x requests) weight matrix with the value
matrix, computed in chunks to bound memory::

    draws = bootstrap_means(ndcg_matrix, samples=1000, rng=np.random.default_rng(0))
    low, high = percentile_interval(draws[:, 1] / draws[:, 0] - 1)       # lift of column 1 over column 0
    sign_flip_p_values(ndcg_matrix[:, [1]] - ndcg_matrix[:, [0]], 1000, rng)   # H0: no difference
    auc_draws(labels, score_matrix, samples=1000, rng=rng)                     # AUCs drawn with DeLong's covariance
    minimum_detectable_effect(delta_sd=0.3, requests=2000)                     # 0.0188 (80% power, 5% level)
"""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np

CHUNK_CELLS = 8_000_000
"""Weight-matrix cells per chunk (64 MB of float64)."""
# How a bound that could not be computed (an infinite or undefined ratio: JSON holds neither) is printed, in the
# run summary, the report and the tuning record's words: "-" would read as a minus sign beside a percentage.
NO_BOUND = "n/a"


def bootstrap_means(values: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Mean of every column over ``samples`` resamples of the requests (rows), shape (samples, columns).

    A resample draws n requests with replacement; a column's mean uses the drawn
    requests it does not exclude (NaN when it excludes them all).

    >>> bootstrap_means(np.array([[1.0], [3.0]]), 4, np.random.default_rng(0)).shape
    (4, 1)
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    rows = values.shape[0]
    # Columns of one target exclude the same requests: count the drawn included requests once per pattern.
    patterns, pattern_of_column = np.unique(~np.isnan(values), axis=1, return_inverse=True)
    included = patterns.astype(np.float64)
    filled = np.nan_to_num(values, nan=0.0)
    means = np.empty((samples, values.shape[1]))
    for start, stop in _chunks(samples, rows):
        counts = _resample_counts(rng, stop - start, rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[start:stop] = (counts @ filled) / (counts @ included)[:, pattern_of_column.reshape(-1)]
    return means


def auc_draws(labels: np.ndarray, scores: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of the AUC of every score column, shape (samples, columns), paired like :func:`bootstrap_means`'s,
    each within [0, 1].

    The draws come from the normal law of the AUCs with DeLong's covariance (:func:`delong_covariance`),
    so they plug into the same intervals, lifts and p-values as bootstrap draws, at the cost of one sort
    per column instead of one pass over the rows per resample (docs/evaluation.md, "AUC").

    >>> scores = np.array([[0.1, 0.9], [0.9, 0.1], [0.2, 0.8], [0.8, 0.2]])
    >>> auc_draws(np.array([0, 1, 0, 1]), scores, 5, np.random.default_rng(0)).shape
    (5, 2)
    """
    aucs, covariance = delong_covariance(labels, scores)
    finite = np.isfinite(aucs)
    draws = np.full((samples, len(aucs)), np.nan)
    if finite.any():
        kept = covariance[np.ix_(finite, finite)]
        draws[:, finite] = rng.multivariate_normal(aucs[finite], kept, size=samples, method="eigh")
    # An AUC lies in [0, 1]: the normal law's tails do not (an AUC of 0.81 on 8 positives has a 95% interval
    # past 1), so its draws, and every interval and lift taken from them, are clipped to it.
    return np.clip(draws, 0.0, 1.0)


def delong_covariance(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The AUC of every score column and the covariance matrix of their estimates (DeLong et al., 1988).

    Each positive's (negative's) share of the negatives it outranks (positives that outrank it), ties
    counting one half, is its structural component; the AUCs' covariance is the components' covariance
    over the positives divided by their number plus the same over the negatives. NaN without both classes.

    >>> aucs, covariance = delong_covariance(np.array([0, 0, 1, 1]), np.array([[0.1], [0.4], [0.35], [0.8]]))
    >>> float(aucs[0]), float(covariance[0, 0])
    (0.75, 0.125)
    """
    positive = np.asarray(labels) > 0
    scores = np.asarray(scores, dtype=np.float64).reshape(len(positive), -1)
    m, n = int(positive.sum()), int((~positive).sum())
    columns = scores.shape[1]
    if m == 0 or n == 0:
        return np.full(columns, np.nan), np.full((columns, columns), np.nan)
    over_negatives = np.empty((columns, m))  # each positive: the share of negatives it outranks
    under_positives = np.empty((columns, n))  # each negative: the share of positives that outrank it
    for column, values in enumerate(scores.T):
        everyone = _midranks(values)
        over_negatives[column] = (everyone[positive] - _midranks(values[positive])) / n
        under_positives[column] = 1.0 - (everyone[~positive] - _midranks(values[~positive])) / m
    aucs = over_negatives.mean(axis=1)
    covariance = np.atleast_2d(np.cov(over_negatives)) / m if m > 1 else np.zeros((columns, columns))
    covariance = covariance + (np.atleast_2d(np.cov(under_positives)) / n if n > 1 else 0.0)
    return aucs, covariance


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    ends = np.append(starts[1:], len(values))
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def _resample_counts(rng: np.random.Generator, draws: int, rows: int) -> np.ndarray:
    """How many times each row is drawn in each of ``draws`` bootstrap resamples."""
    picks = rng.integers(0, rows, size=(draws, rows)) + np.arange(draws)[:, None] * rows
    return np.bincount(picks.ravel(), minlength=draws * rows).reshape(draws, rows).astype(np.float64)


def sign_flip_p_values(differences: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Two-sided p-value per column of the paired sign-flip (permutation) test of mean difference 0.

    Under H0 each request's difference is as likely to have either sign; the
    p-value is (1 + flips with |mean| >= |observed mean|) / (1 + samples).

    >>> float(sign_flip_p_values(np.ones((30, 1)), 200, np.random.default_rng(0))[0]) < 0.01
    True
    """
    differences = np.atleast_2d(np.asarray(differences, dtype=np.float64))
    rows = differences.shape[0]
    filled = np.nan_to_num(differences, nan=0.0)
    count = np.maximum((~np.isnan(differences)).sum(axis=0), 1)
    observed = np.abs(filled.sum(axis=0) / count)
    exceed = np.zeros(differences.shape[1])
    for start, stop in _chunks(samples, rows):
        signs = rng.integers(0, 2, size=(stop - start, rows)) * 2.0 - 1.0
        flipped = np.abs(signs @ filled / count)
        # A tolerance so that ties with the observed mean count as "as extreme" despite rounding.
        exceed += (flipped >= observed - 1e-12).sum(axis=0)
    return (1.0 + exceed) / (1.0 + samples)


def p_value_of_draws(differences: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from draws of a paired difference (bootstrap or :func:`auc_draws`;
    NaN draws ignored): twice the smaller share of draws on either side of 0, counted as (1 + there) / (1 + all).

    >>> p_value_of_draws(np.full(99, 0.01))
    0.02
    """
    finite = np.asarray(differences, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return math.nan
    tail = min(np.sum(finite <= 0), np.sum(finite >= 0))
    return float(min(1.0, 2.0 * (1.0 + tail) / (1.0 + len(finite))))


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of each column (NaN draws ignored)."""
    tail = (1.0 - level) / 2.0 * 100.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (no request) gives NaN, as it should
        low, high = np.nanpercentile(draws, [tail, 100.0 - tail], axis=0)
    return low, high


def minimum_detectable_effect(delta_sd: float, requests: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean paired difference a two-sided test at ``alpha`` detects with probability ``power``.

    Normal approximation over ``requests`` paired per-request differences of
    standard deviation ``delta_sd``: (z_{1-alpha/2} + z_power) * sd / sqrt(n).
    NaN when there are fewer than two requests.

    >>> round(minimum_detectable_effect(0.3, 2000), 4)
    0.0188
    """
    if requests < 2 or not math.isfinite(delta_sd):
        return math.nan
    normal = statistics.NormalDist()
    return (normal.inv_cdf(1.0 - alpha / 2.0) + normal.inv_cdf(power)) * delta_sd / math.sqrt(requests)


def _chunks(samples: int, rows: int) -> list[tuple[int, int]]:
    step = max(1, CHUNK_CELLS // max(rows, 1))
    return [(start, min(start + step, samples)) for start in range(0, samples, step)]
