"""Vectorised ranking and classification metrics over millions of impressions.

NDCG is computed per request in one pass: rows are sorted by
``(request, -score)`` with one ``np.lexsort`` and every per-request quantity
is a segment sum (``np.bincount``/``np.add.reduceat``), no Python loop over
requests.

Ties: candidates with equal scores in a request share their positions'
discounts equally (each gets the mean discount of the tied block), which is
the expected DCG under a uniformly random tie break. The result never depends
on row order, a constant scorer gets exactly the random ranker's expectation,
and it matches ``sklearn.metrics.ndcg_score`` (``ignore_ties=False``)::

    groups = RequestGroups.from_ids(columns["request_id"])
    ndcg = ndcg_per_request(groups, gains=labels.astype(float), scores=scores, ks=(5, 10, 0))
    np.nanmean(ndcg[10])    # NDCG@10 over the requests that have a positive; k=0 is the full list

Requests whose ideal DCG is 0 (no positive) get NaN: they are excluded from
means and counted by the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

FULL_LIST = 0
"""The cutoff meaning "the whole request"."""


def metric_name(k: int) -> str:
    """``ndcg@k``, or ``ndcg`` for the full list.

    >>> metric_name(10), metric_name(FULL_LIST)
    ('ndcg@10', 'ndcg')
    """
    return "ndcg" if k == FULL_LIST else f"ndcg@{k}"


EXPECTED_PREFIX = "expected_"
"""The metric prefix of NDCG judged against the expected relevance: the position-free oracle's
probabilities (``p_<task>_position_free``; for engagement its expected gain) as graded gains instead
of the logged labels. The logged labels are one draw each, mostly 0, and were drawn at the logged
positions, so NDCG on them is noisy and rewards reproducing what the logging policy put on top.
Against the expected relevance every request counts and no ranker gains from the logged order.
The position-including oracle is left out of these rows: it ranks by the examination effect."""


def parse_metric(name: str) -> int:
    """The cutoff of an NDCG metric name (inverse of :func:`metric_name`)."""
    if name == "ndcg":
        return FULL_LIST
    prefix, _, cutoff = name.partition("@")
    if prefix != "ndcg" or not cutoff.isdigit() or int(cutoff) < 1:
        raise ValueError(f"metric {name!r} is not 'ndcg' or 'ndcg@<k>' with k >= 1")
    return int(cutoff)


@dataclasses.dataclass(frozen=True)
class RequestGroups:
    """Which request each row belongs to, with the request ids numbered 0..n_requests-1.

    >>> RequestGroups.from_ids(np.array(["b", "a", "b"])).row_request
    array([1, 0, 1])
    """

    row_request: np.ndarray
    sizes: np.ndarray
    ids: np.ndarray

    @classmethod
    def from_ids(cls, request_ids: np.ndarray) -> RequestGroups:
        ids, row_request = np.unique(np.asarray(request_ids), return_inverse=True)
        return cls(row_request.astype(np.int64), np.bincount(row_request, minlength=len(ids)), ids)

    @property
    def n_requests(self) -> int:
        return len(self.sizes)

    @property
    def offsets(self) -> np.ndarray:
        """Where each request starts once rows are sorted by request."""
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    def first_row_values(self, values: np.ndarray) -> np.ndarray:
        """One value per request (from its first row), e.g. the module of each request."""
        first_rows = np.argsort(self.row_request, kind="stable")[self.offsets]
        return np.asarray(values)[first_rows]


def ndcg_per_request(
    groups: RequestGroups,
    gains: np.ndarray,
    scores: np.ndarray,
    ks: Sequence[int],
    ideal: Mapping[int, np.ndarray] | None = None,
) -> dict[int, np.ndarray]:
    """NDCG of every request at every cutoff in ``ks`` (NaN where the request has no positive gain).

    ``ideal`` (from :func:`ideal_dcg`) saves re-sorting the gains when many models share them.
    """
    gains = np.asarray(gains, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(gains) != len(groups.row_request) or len(scores) != len(gains):
        raise ValueError(f"{len(gains)} gains and {len(scores)} scores for {len(groups.row_request)} rows")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite")
    ideal = ideal if ideal is not None else ideal_dcg(groups, gains, ks)
    actual = _dcg(groups, gains, scores, ks, average_ties=True)
    result = {}
    for k in ks:
        with np.errstate(invalid="ignore", divide="ignore"):
            result[k] = np.where(ideal[k] > 0, actual[k] / ideal[k], np.nan)
    return result


def ideal_dcg(groups: RequestGroups, gains: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """The best achievable DCG of every request at every cutoff (gains sorted in decreasing order)."""
    gains = np.asarray(gains, dtype=np.float64)
    return _dcg(groups, gains, gains, ks, average_ties=False)


def _dcg(
    groups: RequestGroups, gains: np.ndarray, scores: np.ndarray, ks: Sequence[int], average_ties: bool
) -> dict[int, np.ndarray]:
    order = np.lexsort((-scores, groups.row_request))
    request = groups.row_request[order]
    sorted_gains = gains[order]
    rank = np.arange(len(order)) - groups.offsets[request]
    discount = 1.0 / np.log2(rank + 2.0)
    blocks = _tie_blocks(request, scores[order]) if average_ties else None
    if blocks is not None and len(blocks[0]) == len(order):
        blocks = None  # no ties: nothing to average
    result = {}
    for k in ks:
        cut = discount if k == FULL_LIST else np.where(rank < k, discount, 0.0)
        if blocks is not None:
            starts, block_of_row = blocks
            sizes = np.diff(np.append(starts, len(order)))
            cut = (np.add.reduceat(cut, starts) / sizes)[block_of_row]
        result[k] = np.bincount(request, weights=sorted_gains * cut, minlength=groups.n_requests)
    return result


def _tie_blocks(request: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start of each run of equal (request, score) in sorted rows, and the run of every row."""
    new = np.ones(len(request), dtype=bool)
    new[1:] = (request[1:] != request[:-1]) | (scores[1:] != scores[:-1])
    return np.flatnonzero(new), np.cumsum(new) - 1


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half); NaN when one class is absent.

    >>> auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.5, 0.5]))
    0.875
    """
    return float(auc_per_subset(labels, scores, np.zeros(len(labels), dtype=np.int64), 1)[0])


def auc_per_subset(
    labels: np.ndarray,
    scores: np.ndarray,
    subsets: np.ndarray,
    n_subsets: int,
    score_order: np.ndarray | None = None,
) -> np.ndarray:
    """AUC within each subset (``subsets`` holds a code 0..n_subsets-1 per row), with one score sort.

    Rows are ordered by (subset, score); a row's rank within its subset is its
    offset from the subset's start, averaged over runs of tied scores.
    ``score_order`` (a stable ``np.argsort(scores)``) saves the sort when the
    same scores are split several ways.
    """
    labels = np.asarray(labels) > 0
    scores = np.asarray(scores, dtype=np.float64)
    by_score = np.argsort(scores, kind="stable") if score_order is None else score_order
    # Small integer codes sort by radix in linear time.
    codes = np.asarray(subsets).astype(np.int16 if n_subsets < 2**15 else np.int64)
    order = by_score if n_subsets == 1 else by_score[np.argsort(codes[by_score], kind="stable")]
    subsets = codes.astype(np.int64)
    subset, sorted_scores = subsets[order], scores[order]
    sizes = np.bincount(subset, minlength=n_subsets)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(1, len(order) + 1, dtype=np.float64) - starts[subset]
    if len(order):
        tie_starts, tie_of_row = _tie_blocks(subset, sorted_scores)
        tie_sizes = np.diff(np.append(tie_starts, len(order)))
        rank = (np.add.reduceat(rank, tie_starts) / tie_sizes)[tie_of_row]
    positive = labels[order]
    positives = np.bincount(subset, weights=positive, minlength=n_subsets)
    negatives = sizes - positives
    rank_sum = np.bincount(subset, weights=rank * positive, minlength=n_subsets)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), result, np.nan)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A reliability curve over equal-width probability bins and its expected calibration error."""

    ece: float
    lower: list[float]
    upper: list[float]
    mean_prediction: list[float | None]
    positive_rate: list[float | None]
    count: list[int]


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> Calibration:
    """ECE = sum over bins of (rows in bin / rows) * |mean prediction - positive rate|.

    Bins hold equal numbers of rows (edges at the predictions' quantiles), so
    the curve stays informative for rare tasks whose predictions all sit near
    0, where equal-width bins would put almost every row in the first bin.

    >>> calibration(np.array([0, 1]), np.array([0.0, 1.0]), bins=2).ece
    0.0
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(probabilities) and (probabilities.min() < 0 or probabilities.max() > 1):
        raise ValueError("calibration needs probabilities in [0, 1]")
    edges = np.unique(np.quantile(probabilities, np.linspace(0.0, 1.0, bins + 1))) if len(probabilities) else []
    if len(edges) < 2:
        edges = np.array([0.0, 1.0])
    bins = len(edges) - 1
    index = np.clip(np.searchsorted(edges, probabilities, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=probabilities, minlength=bins)
    observed = np.bincount(index, weights=(np.asarray(labels) > 0).astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prediction, rate = predicted / count, observed / count
    ece = float(np.nansum(count * np.abs(mean_prediction - rate)) / max(len(probabilities), 1))
    return Calibration(
        ece=ece,
        lower=edges[:-1].tolist(),
        upper=edges[1:].tolist(),
        mean_prediction=[None if n == 0 else float(v) for v, n in zip(mean_prediction, count, strict=True)],
        positive_rate=[None if n == 0 else float(v) for v, n in zip(rate, count, strict=True)],
        count=count.astype(int).tolist(),
    )
