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
    bootstrap_aucs(labels, score_matrix, samples=1000, rng=rng)                # AUC per resample of the rows
    minimum_detectable_effect(delta_sd=0.3, requests=2000)                     # 0.0188 (80% power, 5% level)
"""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np

CHUNK_CELLS = 8_000_000
"""Weight-matrix cells per chunk (64 MB of float64)."""


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


def bootstrap_aucs(labels: np.ndarray, scores: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """AUC of every score column over ``samples`` resamples of the rows, shape (samples, columns).

    Every column is judged on the same resampled rows (paired, as :func:`bootstrap_means`): a row
    drawn k times counts k times, ties count one half. One sort per column; each resample is a
    weighted Mann-Whitney sum over the tied score groups.

    >>> scores = np.array([[0.1], [0.9], [0.2], [0.8]])
    >>> draws = bootstrap_aucs(np.array([0, 1, 0, 1]), scores, 3, np.random.default_rng(0))
    >>> draws.shape, bool(np.nanmin(draws) == 1.0)
    ((3, 1), True)
    """
    positive = (np.asarray(labels) > 0).astype(np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(len(positive), -1)
    orders, group_starts = [], []
    for column in scores.T:
        order = np.argsort(column, kind="stable")
        ordered = column[order]
        orders.append(order)
        group_starts.append(np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]])))
    aucs = np.empty((samples, scores.shape[1]))
    for start, stop in _chunks(samples, len(positive)):
        counts = _resample_counts(rng, stop - start, len(positive))
        for column, (order, starts) in enumerate(zip(orders, group_starts, strict=True)):
            drawn = counts[:, order]
            positives = np.add.reduceat(drawn * positive[order], starts, axis=1)
            negatives = np.add.reduceat(drawn * (1.0 - positive[order]), starts, axis=1)
            below = np.cumsum(negatives, axis=1) - negatives
            with np.errstate(invalid="ignore", divide="ignore"):
                aucs[start:stop, column] = (positives * (below + 0.5 * negatives)).sum(axis=1) / (
                    positives.sum(axis=1) * negatives.sum(axis=1)
                )
    return aucs


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
