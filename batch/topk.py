"""Top-k per user of batch ranking: per scored chunk in NumPy, then merged per user only where needed.

A chunk's best ``k`` distinct listings per (campaign, user) are found on integer
codes (no Python per candidate). A user whose candidates all lie in the chunk is
final there: when the candidates table is *grouped by user* (each user's rows are
consecutive, e.g. written ``ORDER BY user_id``), every user of a chunk but its
first and last is such a user, and their rankings leave the chunk as one Arrow
table, with no shuffle. The other users (all of them when the table is not
declared grouped) leave as ``((campaign, user), [(score, item, probabilities), ...])``
for a GroupByKey and :func:`ranked_rows`::

    top = chunk_top_k(scored_chunk, layout, k=10, grouped=True)
    top.complete   # pyarrow.Table of final output rows (or None)
    top.spanning   # [((campaign, user), [(score, item, probabilities), ...]), ...]

A chunk whose users are not consecutive although the table was declared grouped
sends all its users to the GroupByKey (counted as ``ungrouped_chunks``), so a
wrong declaration costs speed within a chunk; a user split across two chunks in
the middle of each is the one case it cannot catch (two rankings for that user).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from apache_beam.metrics import Metrics

NAMESPACE = "batch_rank"
CAMPAIGNS_NAMESPACE = "batch_rank_campaigns"  # rows read per campaign, with --campaign (batch.pipeline)
RANK = "rank"
SCORE = "score"
Key = tuple[str, str]  # (campaign, user)
Records = list[tuple[float, str, tuple[float, ...]]]  # (score, item, probabilities), best first


@dataclasses.dataclass(frozen=True)
class RankingLayout:
    """The columns of the ranking: keys of the input, and the output's column names and types."""

    user: str
    item: str
    campaign: str
    tasks: tuple[str, ...]

    def record(self, key: Key, rank: int, item: str, score: float, probabilities: tuple[float, ...]) -> dict:
        """One output row."""
        row: dict[str, Any] = {self.campaign: key[0]} if self.campaign else {}
        row |= {self.user: key[1], RANK: rank, self.item: item, SCORE: score}
        return row | {f"p_{task}": value for task, value in zip(self.tasks, probabilities, strict=True)}

    def fields(self) -> list[tuple[str, str]]:
        """(column, type) of the output: ``string``, ``int64`` or ``float64``."""
        keys = [self.campaign] if self.campaign else []
        fields = [(name, "string") for name in (*keys, self.user)] + [(RANK, "int64"), (self.item, "string")]
        return fields + [(SCORE, "float64")] + [(f"p_{task}", "float64") for task in self.tasks]

    def arrow_schema(self) -> Any:
        """The output's ``pyarrow.Schema``."""
        import pyarrow as pa

        types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
        return pa.schema([(name, types[kind]) for name, kind in self.fields()])


@dataclasses.dataclass
class ChunkTopK:
    """A chunk's top-k: final rows of the users wholly inside it, per-user candidates of the others."""

    complete: Any  # pyarrow.Table or None
    complete_users: int
    spanning: list[tuple[Key, Records]]


@dataclasses.dataclass(frozen=True)
class _Scored:
    """A scored chunk's keys and outputs as NumPy arrays."""

    campaigns: np.ndarray
    users: np.ndarray
    items: np.ndarray
    score: np.ndarray
    probabilities: np.ndarray  # (rows, tasks)

    @classmethod
    def of(cls, chunk: pd.DataFrame, outputs: dict[str, np.ndarray], layout: RankingLayout) -> _Scored:
        campaigns = chunk[layout.campaign].to_numpy() if layout.campaign else np.full(len(chunk), "", dtype=object)
        probabilities = np.column_stack([outputs[task].astype(float) for task in layout.tasks])
        return cls(campaigns, chunk[layout.user].to_numpy(), chunk[layout.item].to_numpy(),
                   outputs[SCORE].astype(float), probabilities)  # fmt: skip


def chunk_top_k(result: Any, layout: RankingLayout, k: int, grouped: bool = False) -> ChunkTopK:
    """``result``: a ``PredictionResult`` (example: the chunk, inference: the model's outputs); see the module."""
    scored = _Scored.of(result.example, result.inference, layout)
    group = _group_codes(scored.campaigns, scored.users)
    kept, rank = _best_distinct(group, pd.factorize(scored.items)[0], scored.score, k)
    complete = _complete_rows(group, grouped)[kept]
    Metrics.counter(NAMESPACE, "scored").inc(len(group))
    table = _table(scored, kept[complete], rank[complete], layout) if complete.any() else None
    users = int(_starts(group[kept[complete]]).sum())
    return ChunkTopK(table, users, list(_per_user(scored, kept[~complete], group)))


def _group_codes(campaigns: np.ndarray, users: np.ndarray) -> np.ndarray:
    """One integer per distinct (campaign, user): each column factorized alone (a MultiIndex of objects costs 10x)."""
    user_codes = pd.factorize(users)[0].astype(np.int64)
    campaign_codes = pd.factorize(campaigns)[0].astype(np.int64)
    return campaign_codes * (int(user_codes.max(initial=0)) + 1) + user_codes


def _best_distinct(group: np.ndarray, items: np.ndarray, score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of each group's ``k`` best distinct items, grouped and best first, and their 0-based ranks.

    ``items``: integer codes below ``len(items)`` (``pd.factorize``). One sort, then a hashed pass that keeps
    each (group, item)'s first, so best, row (a sort by (group, item, score) and a second sort cost 2x).
    """
    order = np.lexsort((-score, group))  # each group's rows, best first
    group_rank = np.cumsum(_starts(group[order])) - 1  # 0, 1, 2... per group, in sorted order
    repeated = pd.Series(group_rank * len(items) + items[order]).duplicated().to_numpy()
    distinct = order[~repeated]
    first = np.flatnonzero(_starts(group[distinct]))
    rank = np.arange(len(distinct)) - np.repeat(first, np.diff(np.r_[first, len(distinct)]))
    return distinct[rank < k], rank[rank < k]


def _complete_rows(group: np.ndarray, grouped: bool) -> np.ndarray:
    """Rows whose user is wholly in the chunk: with ``grouped``, all but the first and last user's when each user's
    rows are consecutive here; otherwise none."""
    if not grouped or not len(group):
        return np.zeros(len(group), dtype=bool)
    if int(_starts(group).sum()) != len(np.unique(group)):  # a user's rows are not consecutive: declared wrongly
        Metrics.counter(NAMESPACE, "ungrouped_chunks").inc()
        return np.zeros(len(group), dtype=bool)
    return (group != group[0]) & (group != group[-1])


def _table(scored: _Scored, rows: np.ndarray, rank: np.ndarray, layout: RankingLayout) -> Any:
    """Final output rows as an Arrow table (``rows`` grouped by user, best first)."""
    import pyarrow as pa

    keys = [scored.campaigns[rows]] if layout.campaign else []
    columns = [*keys, scored.users[rows], rank + 1, scored.items[rows], scored.score[rows]]
    columns += list(scored.probabilities[rows].T)
    schema = layout.arrow_schema()
    arrays = [pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _per_user(scored: _Scored, rows: np.ndarray, group: np.ndarray) -> Iterator[tuple[Key, Records]]:
    """``((campaign, user), records)`` per user of ``rows`` (grouped by user, best first)."""
    records = list(zip(scored.score[rows].tolist(), scored.items[rows].tolist(),
                       map(tuple, scored.probabilities[rows].tolist()), strict=True))  # fmt: skip
    bounds = np.r_[np.flatnonzero(_starts(group[rows])), len(rows)]
    for start, stop in itertools.pairwise(bounds):
        row = rows[start]
        yield (scored.campaigns[row], scored.users[row]), records[start:stop]


def _starts(*keys: np.ndarray) -> np.ndarray:
    """Whether each position of sorted ``keys`` starts a new run of equal keys."""
    changed = np.zeros(max(len(keys[0]) - 1, 0), dtype=bool)
    for key in keys:
        changed |= key[1:] != key[:-1]
    return np.r_[len(keys[0]) > 0, changed][: len(keys[0])]


def ranked_rows(keyed: tuple[Key, Iterable[Records]], layout: RankingLayout, k: int) -> Iterator[dict[str, Any]]:
    """One user's top-k distinct listings (best first) from the chunks' candidates, as output rows with their rank."""
    key, chunks = keyed
    best: dict[str, tuple] = {}
    for score, item, probabilities in itertools.chain.from_iterable(chunks):
        if item not in best or score > best[item][0]:
            best[item] = (score, probabilities)
    top = sorted(best.items(), key=lambda entry: entry[1][0], reverse=True)[:k]
    Metrics.counter(NAMESPACE, "rankings").inc()
    for rank, (item, (score, probabilities)) in enumerate(top, start=1):
        yield layout.record(key, rank, item, score, probabilities)
