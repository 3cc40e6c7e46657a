"""Settings of a batch ranking run, read like every setting (flags > environment > file > defaults).

==================  ==============================  =====================================================
field               environment variable            default
==================  ==============================  =====================================================
model_uri           ``RANKER_BATCH_MODEL_URI``      ``models:/mmoe-ranker@champion``
candidates          ``RANKER_BATCH_CANDIDATES``     (required) file, glob, folder or ``bq://p.d.table``
candidates_format   ``RANKER_BATCH_FORMAT``         from the file names (parquet, csv, tfrecord)
split               ``RANKER_BATCH_SPLIT``          ``""`` (an extracted-examples folder: e.g. ``test``)
campaign            ``RANKER_BATCH_CAMPAIGN``       ``""`` (rank only the rows of this campaign/module)
out                 ``RANKER_BATCH_OUT``            (required) folder (``ranking/``), or ``bq://p.d.table``
dead_letter_out     ``RANKER_BATCH_DEAD_LETTER_OUT``  ``<out>/dead_letter`` (required for a BigQuery ``out``)
top_k               ``RANKER_BATCH_TOP_K``          ``10``
campaign_column     ``RANKER_BATCH_CAMPAIGN_COLUMN``  ``@module``: the model's module role (``tab`` on KuaiRand),
                                                    else ``module_name`` (``""``: one ranking per user)
user_column         ``RANKER_BATCH_USER_COLUMN``    the model's user-id role (``user_id`` on the simulator)
item_column         ``RANKER_BATCH_ITEM_COLUMN``    the model's item-id role (``listing_id``)
batch_size          ``RANKER_BATCH_BATCH_SIZE``     ``4096`` candidates per model call
grouped_by_user     ``RANKER_BATCH_GROUPED_BY_USER``  ``false`` (``true``: each user's rows are consecutive)
feature_store       ``RANKER_BATCH_FEATURE_STORE``  ``""`` (a Feast repo: the table carries ids, the store the rest)
op_threads          ``RANKER_BATCH_OP_THREADS``     ``0``: TensorFlow threads per worker process, see below
==================  ==============================  =====================================================

``op_threads`` 0 shares the cores out among the local runner's worker
processes (``multi_processing``: cores // workers each), and leaves
TensorFlow's default (one thread per core) in one process and on remote
runners. Each process sizing its pools by all cores oversubscribes them: on 2
cores, 2 workers ranked 8M candidates in 35.9 s with one thread each and in
37.3 s with TensorFlow's default, spending 10-15% less CPU (docs/benchmarks.md).

Example::

    config = BatchRankConfig.load({"candidates": "work/examples", "split": "test", "out": "work/batch"})
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import model_validator

from ranker_core.serving import MODEL_NAME
from ranker_core.settings import Settings, SettingsConfigDict

BIGQUERY_SCHEME = "bq://"
CHAMPION_URI = f"models:/{MODEL_NAME}@champion"
MODULE_ROLE = "@module"  # campaign_column: the column the model's module was read from in training
CandidatesFormat = Literal["", "parquet", "csv", "tfrecord", "bigquery"]


class BatchRankConfig(Settings):
    """What to rank, with which model, and where the top-k lists go (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="RANKER_BATCH_")

    model_uri: str = CHAMPION_URI
    candidates: str = ""
    candidates_format: CandidatesFormat = ""
    split: str = ""
    campaign: str = ""
    out: str = ""
    dead_letter_out: str = ""
    top_k: int = 10
    campaign_column: str = MODULE_ROLE
    user_column: str = ""
    item_column: str = ""
    batch_size: int = 4096
    grouped_by_user: bool = False
    feature_store: str = ""
    op_threads: int = 0

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.candidates:
            raise ValueError("no candidates: pass --candidates (a file, glob, folder or bq://project.dataset.table)")
        if not self.out:
            raise ValueError("no output: pass --out (a folder, or bq://project.dataset.table)")
        if self.top_k < 1 or self.batch_size < 1:
            raise ValueError(f"--top-k and --batch-size must be positive, got {self.top_k} and {self.batch_size}")
        if self.op_threads < 0:
            raise ValueError(f"--op-threads must be 0 (automatic) or a thread count, got {self.op_threads}")
        if self.out_is_bigquery and not self.dead_letter_out:
            raise ValueError("a BigQuery --out needs --dead-letter-out (a folder or gs:// path for the bad rows)")
        return self

    @property
    def out_is_bigquery(self) -> bool:
        return self.out.startswith(BIGQUERY_SCHEME)

    @property
    def source_format(self) -> str:
        """The candidates' format: as given, else BigQuery for ``bq://``, else from the URI's file names."""
        if self.candidates_format:
            return self.candidates_format
        if self.candidates.startswith(BIGQUERY_SCHEME):
            return "bigquery"
        if self.split or ".tfrecord" in self.candidates:
            return "tfrecord"
        return "csv" if ".csv" in self.candidates else "parquet"

    @property
    def candidates_uri(self) -> str:
        """The candidates to read: ``candidates``, or its ``split`` folder for extracted examples."""
        return f"{self.candidates.rstrip('/')}/{self.split}" if self.split else self.candidates

    @property
    def ranking_path(self) -> str:
        """Where the top-k lists go: the BigQuery table, or ``<out>/ranking`` (``part-*.parquet``)."""
        return self.out if self.out_is_bigquery else f"{self.out.rstrip('/')}/ranking"

    @property
    def dead_letter_path(self) -> str:
        """Where the rows that could not be ranked go (JSON lines with file, row and reason)."""
        return self.dead_letter_out or f"{self.out.rstrip('/')}/dead_letter"
