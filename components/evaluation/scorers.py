"""Everything the evaluation can rank with, behind one protocol.

A :class:`Scorer` maps example columns (``trainer.examples.read_split``) to
one score array per target: each task of the spec and ``engagement`` (the
ranking score used for graded engagement NDCG). ``outputs_probabilities``
says whether the task scores are probabilities, which calibration needs::

    scorers = [ModelScorer.load("mmoe", "work/model"), RandomScorer(seed=0)]
    scores = scorers[0](read_split("work/examples", "test", spec))
    scores["favorite"], scores["engagement"]

The GBDT baselines (``components.baseline.scoring``) follow the same protocol.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from components.data.simulator import oracle_column
from ranker_core.schema import MODULE, REQUEST_ID, FeatureSpec
from ranker_core.targets import ENGAGEMENT

GATE_USAGE_FILE = "gate_usage.json"
ORACLE_NAME = "oracle"
ORACLE_POSITION_FREE_NAME = "oracle_position_free"
RANDOM_NAME = "random"


class Scorer(Protocol):
    """A model under evaluation: ``scorer(columns) -> {target: scores}``."""

    @property
    def name(self) -> str: ...

    @property
    def outputs_probabilities(self) -> bool: ...

    def __call__(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclasses.dataclass
class RandomScorer:
    """Uniform random scores, seeded: the floor every model must clear.

    >>> RandomScorer(seed=0, targets=("click",))({"module_name": np.array(["a", "b"])})["click"].shape
    (2,)
    """

    seed: int = 0
    targets: Sequence[str] = ()
    name: str = RANDOM_NAME
    outputs_probabilities: bool = False

    def __call__(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        rows = len(columns[MODULE])
        return {target: rng.random(rows) for target in self.targets}


@dataclasses.dataclass
class ModelScorer:
    """An exported ranker (the MMoE or an alternative architecture) loaded by ``trainer.predict``.

    Its ``score`` output (the per-module weighted combination of the task
    probabilities) ranks for graded engagement.
    """

    name: str
    model_dir: str
    ranker: Any
    feature_names: Sequence[str]
    batch_size: int = 65_536
    outputs_probabilities: bool = True

    @classmethod
    def load(cls, name: str, model_dir: str | Path) -> ModelScorer:
        """Load with ``trainer.predict.load_ranker`` (local or gs://)."""
        from trainer.predict import load_ranker

        ranker = load_ranker(str(model_dir))
        return cls(name, str(model_dir), ranker, tuple(ranker.input_signature))

    def __call__(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [name for name in self.feature_names if name not in columns]
        if missing:
            raise KeyError(f"model {self.name!r} ({self.model_dir}) needs features the examples lack: {missing}")
        rows = len(columns[MODULE])
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, rows, self.batch_size):
            batch = {name: np.asarray(columns[name][start : start + self.batch_size]) for name in self.feature_names}
            for key, values in self.ranker.predict(batch).items():
                parts.setdefault(key, []).append(np.asarray(values, dtype=np.float64).reshape(-1))
        scores = {key: np.concatenate(values) for key, values in parts.items()}
        if "score" in scores:
            scores[ENGAGEMENT] = scores.pop("score")
        return scores

    def gate_usage(self) -> dict[str, Any] | None:
        """The gate weights recorded at training (``gate_usage.json``), when the model has gates."""
        import tensorflow as tf

        path = f"{self.model_dir.rstrip('/')}/{GATE_USAGE_FILE}"
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path) as handle:
            return json.loads(handle.read())


@dataclasses.dataclass
class OracleScorer:
    """True engagement probabilities (the simulator's, or an oracle file of your data): the ceiling of a ranker.

    The oracle files hold, per request and item, ``p_<task>`` of every task and
    optionally ``p_<task>_position_free``; they are joined to the examples on
    the spec's ``request_id`` and ``item_id`` source columns. :meth:`load_all`
    gives ``oracle`` (``p_<task>``: on simulated data the logged probability,
    position effect included) and, when the files have the position-free
    columns, ``oracle_position_free`` (what a ranker that cannot see the
    position can at best rank by). Engagement is ranked by the expected gain
    ``sum_g p_g * 2**(g-1)`` over task grades g, which is exactly
    E[2**grade - 1] when the tasks form a funnel (each task implies the ones
    before it) and a close upper-bound ranking otherwise.
    """

    table: pd.DataFrame  # REQUEST_ID, the item column, p_<task> of every task
    item_column: str
    task_names: Sequence[str]
    name: str = ORACLE_NAME
    outputs_probabilities: bool = True

    @classmethod
    def load_all(cls, oracle_uri: str, spec: FeatureSpec) -> list[OracleScorer]:
        """``oracle`` and, when the files have ``p_<task>_position_free`` columns, ``oracle_position_free``.

        ::

            scorers = OracleScorer.load_all("work/data/oracle", FeatureSpec.load("work/examples"))
            [scorer.name for scorer in scorers]     # ["oracle", "oracle_position_free"]
        """
        request_column, item_column = _oracle_keys(spec)
        tasks = tuple(spec.task_names)
        required = [request_column, item_column, *(oracle_column(task) for task in tasks)]
        position_free = [oracle_column(task, position_free=True) for task in tasks]
        table = _read_oracle_files(oracle_uri, required, position_free).rename(columns={request_column: REQUEST_ID})
        duplicated = table.duplicated([REQUEST_ID, item_column])
        if duplicated.any():
            first = table[duplicated].iloc[0]
            raise ValueError(
                f"oracle {oracle_uri} has {int(duplicated.sum())} duplicate ({request_column}, {item_column}) rows, "
                f"e.g. ({first[REQUEST_ID]}, {first[item_column]})"
            )
        scorers = [cls(_oracle_variant(table, item_column, tasks, position_free=False), item_column, tasks)]
        if set(position_free) <= set(table.columns):
            variant = _oracle_variant(table, item_column, tasks, position_free=True)
            scorers.append(cls(variant, item_column, tasks, ORACLE_POSITION_FREE_NAME))
        return scorers

    def __call__(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.item_column not in columns:
            raise KeyError(
                f"the examples have no {self.item_column!r} column (the spec's item_id) to join the oracle on: "
                "make it a feature of the dataset spec"
            )
        keys = pd.DataFrame(
            {REQUEST_ID: np.asarray(columns[REQUEST_ID]), self.item_column: np.asarray(columns[self.item_column])}
        )
        keys[self.item_column] = keys[self.item_column].astype(str)
        table = self.table.astype({self.item_column: str, REQUEST_ID: str})
        joined = keys.merge(table, how="left", on=[REQUEST_ID, self.item_column], validate="many_to_one")
        missing = joined[oracle_column(self.task_names[0])].isna()
        if missing.any():
            first = joined[missing].iloc[0]
            raise ValueError(
                f"{int(missing.sum())} of {len(joined)} impressions have no oracle row, "
                f"e.g. request {first[REQUEST_ID]!r} item {first[self.item_column]!r}"
            )
        scores = {task: joined[oracle_column(task)].to_numpy(np.float64) for task in self.task_names}
        scores[ENGAGEMENT] = sum(scores[task] * 2.0**grade for grade, task in enumerate(self.task_names))
        return scores


def _oracle_keys(spec: FeatureSpec) -> tuple[str, str]:
    """The oracle files' request and item columns: the source columns of the spec's request_id and item_id roles."""
    item_column = spec.roles.get("item_id")
    if not item_column:
        raise ValueError("the feature spec names no item_id role: the oracle cannot be joined to the examples")
    if not spec.has_groups:
        raise ValueError("the dataset has no request_id column: the oracle is joined on requests and items")
    return spec.roles.get("request_id", REQUEST_ID), item_column


def _oracle_variant(table: pd.DataFrame, item_column: str, tasks: Sequence[str], position_free: bool) -> pd.DataFrame:
    """The keys and one set of probability columns, named ``p_<task>``."""
    names = {oracle_column(task, position_free): oracle_column(task) for task in tasks}
    return table[[REQUEST_ID, item_column, *names]].rename(columns=names)


def _read_oracle_files(uri: str, required: Sequence[str], optional: Sequence[str]) -> pd.DataFrame:
    """The ``required`` columns of every ``part-*.parquet`` under ``uri`` (a folder, a file or a glob; local or
    gs://), and the ``optional`` ones when any file has them (then every file must have them all)."""
    import tensorflow as tf

    pattern = uri if uri.endswith(".parquet") or "*" in uri else f"{uri.rstrip('/')}/part-*.parquet"
    paths = sorted(tf.io.gfile.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no oracle parquet files match {pattern}")
    frames = {}
    for path in paths:
        with tf.io.gfile.GFile(path, "rb") as handle:
            frames[path] = pd.read_parquet(io.BytesIO(handle.read()))
    with_optional = any(set(optional) & set(frame.columns) for frame in frames.values())
    columns = [*required, *optional] if with_optional else list(required)
    for path, frame in frames.items():
        lacking = [column for column in columns if column not in frame.columns]
        if lacking:
            note = " (the position-free columns are optional, but then for every task in every file)"
            raise ValueError(f"oracle file {path} lacks columns {lacking}{note if with_optional else ''}")
    return pd.concat([frame[columns] for frame in frames.values()], ignore_index=True)
