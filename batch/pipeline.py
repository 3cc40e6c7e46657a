"""The batch ranking Beam pipeline: candidates -> features -> RunInference -> top-k per user -> Parquet or BigQuery.

::

    candidates (files / BigQuery) ─ ReadCandidates ─ Assemble (FeatureAssembler) ─ RunInference (RankerModelHandler)
      ─ top-k per chunk ─ GroupByKey (campaign, user) ─ top-k distinct listings ─ WriteToParquet | WriteToBigQuery
    unreadable and malformed rows ─────────────────────────────────────────────── dead letters (JSON lines)

Example::

    summary = batch_rank(BatchRankConfig(candidates="work/examples", split="test", campaign="email_digest",
                                         out="work/batch"), BeamOptions(direct_num_workers=2))
    summary.format()

A listing that appears more than once for a user keeps its best score, so a
user's top-k holds k distinct listings. Each output row: the campaign (when
``campaign_column`` is set), the user, ``rank`` (1 = best), the listing,
``score`` and ``p_<task>`` per task.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pandas as pd
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import PredictionResult, RunInference

from batch.candidates import DEAD_LETTERS, CandidateSource, ReadCandidates
from batch.config import BIGQUERY_SCHEME, BatchRankConfig
from batch.features import FeatureAssembler
from batch.inference import RankerModelHandler
from components.features.options import BeamOptions
from ranker_core.cli_support import UserError
from ranker_core.schema import FeatureSpec

NAMESPACE = "batch_rank"
RANK = "rank"
SCORE = "score"
Key = tuple[str, str]  # (campaign, user)


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


@dataclasses.dataclass
class BatchSummary:
    """What a batch ranking run did."""

    model_uri: str
    candidates_read: int
    dead_letters: int
    scored: int
    rankings: int
    out: str
    dead_letter_out: str

    def format(self) -> str:
        return (
            f"ranked {self.scored} candidates ({self.candidates_read} rows read) with {self.model_uri}: "
            f"{self.rankings} top-k lists in {self.out}; {self.dead_letters} dead letters in {self.dead_letter_out}"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Assemble(beam.DoFn):
    """Chunks of candidate rows -> model inputs; malformed rows to ``dead_letters``; other campaigns dropped."""

    def __init__(self, assembler: FeatureAssembler, campaign: str = "") -> None:
        self.assembler, self.campaign = assembler, campaign
        self.read = Metrics.counter(NAMESPACE, "candidates_read")

    def process(self, chunk: pd.DataFrame) -> Iterator[Any]:
        if self.campaign and self.assembler.campaign_column in chunk:
            chunk = chunk[chunk[self.assembler.campaign_column].astype(str) == self.campaign]
        self.read.inc(len(chunk))
        good, dead = self.assembler.assemble(chunk)
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        if len(good):
            yield good


def chunk_top_k(result: PredictionResult, layout: RankingLayout, k: int) -> Iterator[tuple[Key, list[tuple]]]:
    """A scored chunk's best ``k`` distinct listings per (campaign, user), one element per user:
    ``((campaign, user), [(score, item, probabilities), ...])``.

    The global top-k is within the union of every chunk's, so only these are shuffled. Sorting and
    de-duplicating work on integer codes (NumPy), not strings; Python touches only the rows kept.
    """
    chunk, outputs = result.example, result.inference
    campaigns = chunk[layout.campaign].to_numpy() if layout.campaign else np.full(len(chunk), "", dtype=object)
    users, items = chunk[layout.user].to_numpy(), chunk[layout.item].to_numpy()
    group = _group_codes(campaigns, users)
    item_codes = pd.factorize(items)[0]
    score = outputs[SCORE].astype(float)
    order = np.lexsort((-score, item_codes, group))  # best first within each (user, listing)
    distinct = order[_starts(group[order], item_codes[order])]
    distinct = distinct[np.lexsort((-score[distinct], group[distinct]))]  # each user's listings, best first
    first = np.flatnonzero(_starts(group[distinct]))
    rank = np.arange(len(distinct)) - np.repeat(first, np.diff(np.r_[first, len(distinct)]))
    kept = distinct[rank < k]
    Metrics.counter(NAMESPACE, "scored").inc(len(chunk))
    probabilities = np.column_stack([outputs[task].astype(float) for task in layout.tasks])[kept]
    records = list(zip(score[kept].tolist(), items[kept].tolist(), map(tuple, probabilities.tolist()), strict=True))
    bounds = np.r_[np.flatnonzero(_starts(group[kept])), len(kept)]
    for start, stop in itertools.pairwise(bounds):
        row = kept[start]
        yield (campaigns[row], users[row]), records[start:stop]


def _group_codes(campaigns: np.ndarray, users: np.ndarray) -> np.ndarray:
    """One integer per distinct (campaign, user): each column factorized alone (a MultiIndex of objects costs 10x)."""
    user_codes = pd.factorize(users)[0].astype(np.int64)
    campaign_codes = pd.factorize(campaigns)[0].astype(np.int64)
    return campaign_codes * (int(user_codes.max(initial=0)) + 1) + user_codes


def _starts(*keys: np.ndarray) -> np.ndarray:
    """Whether each position of sorted ``keys`` starts a new run of equal keys."""
    changed = np.zeros(max(len(keys[0]) - 1, 0), dtype=bool)
    for key in keys:
        changed |= key[1:] != key[:-1]
    return np.r_[len(keys[0]) > 0, changed][: len(keys[0])]


def ranked_rows(keyed: tuple[Key, Iterable[list[tuple]]], layout: RankingLayout, k: int) -> Iterator[dict[str, Any]]:
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


class ParquetSink(beam.PTransform):
    """``<out>/part-*.parquet`` (``out``: ``<--out>/ranking``) with the layout's schema.

    Rows are batched into Arrow tables (``WriteToParquetBatched``): ``WriteToParquet``'s per-row
    column appends cost more than the rest of the top-k (measured: 8 us a row).
    """

    def __init__(self, out: str, layout: RankingLayout) -> None:
        import pyarrow as pa

        super().__init__()
        types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
        self.out = out
        self.schema = pa.schema([(name, types[kind]) for name, kind in layout.fields()])

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=1024, max_batch_size=65_536)
            | "ToArrow" >> beam.Map(_arrow_table, self.schema)
            | "WriteParquet"
            >> beam.io.WriteToParquetBatched(f"{self.out.rstrip('/')}/part", self.schema, file_name_suffix=".parquet")
        )


def _arrow_table(rows: list[dict[str, Any]], schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema)


def bigquery_sink(out: str, layout: RankingLayout, options: BeamOptions) -> beam.PTransform:
    """``bq://project.dataset.table``, replaced on every run (batch file loads through the temp location)."""
    table = out.removeprefix(BIGQUERY_SCHEME)
    if table.count(".") != 2:
        raise UserError(f"--out {out}: a BigQuery table must be bq://project.dataset.table")
    kinds = {"string": "STRING", "int64": "INTEGER", "float64": "FLOAT"}
    schema = {"fields": [{"name": name, "type": kinds[kind], "mode": "NULLABLE"} for name, kind in layout.fields()]}
    return beam.io.WriteToBigQuery(
        table,
        schema=schema,
        method=beam.io.WriteToBigQuery.Method.FILE_LOADS,
        create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
        write_disposition=beam.io.BigQueryDisposition.WRITE_TRUNCATE,
        custom_gcs_temp_location=options.temp_location or None,
        project=options.project or None,
    )


def rank_candidates(
    pipeline: beam.Pipeline, config: BatchRankConfig, options: BeamOptions, spec: FeatureSpec, model_uri: str
) -> None:
    """Add the whole batch ranking to ``pipeline``, scoring with the exported ranker behind ``model_uri``."""
    assembler = assembler_for(config, spec)
    layout = RankingLayout(assembler.user_column, assembler.item_column, config.campaign_column, spec.task_names)
    source = CandidateSource(config.candidates_uri, config.source_format, options.project, options.temp_location)
    read = pipeline | "ReadCandidates" >> ReadCandidates(source, assembler.input_columns, spec, config.batch_size)
    features = read.chunks | "AssembleFeatures" >> beam.ParDo(Assemble(assembler, config.campaign)).with_outputs(
        DEAD_LETTERS, main="chunks"
    )
    ranked = (
        features.chunks
        | "RunInference" >> RunInference(RankerModelHandler(model_uri))
        | "ChunkTopK" >> beam.FlatMap(chunk_top_k, layout, config.top_k)
        # GroupByKey and a sort, not Top.PerKey: its heap costs 45 us per candidate (measured), 10x this
        | "PerUser" >> beam.GroupByKey()
        | "TopKPerUser" >> beam.FlatMap(ranked_rows, layout, config.top_k)
    )
    ranked | "Write" >> (
        bigquery_sink(config.out, layout, options)
        if config.out_is_bigquery
        else ParquetSink(config.ranking_path, layout)
    )
    (
        (read.dead_letters, features.dead_letters)
        | "DeadLetters" >> beam.Flatten()
        | "CountDeadLetters" >> beam.Map(_counted)
        | "WriteDeadLetters" >> beam.io.WriteToText(f"{config.dead_letter_path}/part", file_name_suffix=".jsonl")
    )


def _counted(letter: dict[str, Any]) -> str:
    Metrics.counter(NAMESPACE, "dead_letters").inc()
    return json.dumps(letter, sort_keys=True)


def assembler_for(config: BatchRankConfig, spec: FeatureSpec) -> FeatureAssembler:
    """The feature assembly of this run: key columns from the config, else the model's id roles."""
    user = config.user_column or spec.roles.get("user_id", "")
    item = config.item_column or spec.roles.get("item_id", "")
    if not user or not item:
        raise UserError("the model's feature spec names no user or item column: pass --user-column and --item-column")
    return FeatureAssembler(spec, user, item, config.campaign_column)


def batch_rank(config: BatchRankConfig, options: BeamOptions, cache_dir: str | None = None) -> BatchSummary:
    """Resolve the model, rank the candidates with Beam and return the counts."""
    from serving.model_source import ModelSourceError, resolve_model_dir
    from trainer.storage import load_feature_spec

    try:
        model_dir = resolve_model_dir(config.model_uri, cache_dir)
    except ModelSourceError as error:
        raise UserError(str(error)) from None
    spec = load_feature_spec(str(model_dir))
    # Local workers read the resolved folder; remote workers resolve the URI themselves.
    worker_model_uri = config.model_uri if options.is_dataflow else str(model_dir)
    pipeline = beam.Pipeline(options=options.pipeline_options())
    rank_candidates(pipeline, config, options, spec, worker_model_uri)
    result = pipeline.run()
    result.wait_until_finish()
    counts = _counters(result)
    return BatchSummary(
        model_uri=config.model_uri,
        candidates_read=counts.get("candidates_read", 0),
        dead_letters=counts.get("dead_letters", 0),
        scored=counts.get("scored", 0),
        rankings=counts.get("rankings", 0),
        out=config.ranking_path,
        dead_letter_out=config.dead_letter_path,
    )


def _counters(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except (NotImplementedError, KeyError):
        return {}
    return {counter.key.metric.name: int(counter.committed or 0) for counter in found}


def read_ranking(out: str | Path) -> pd.DataFrame:
    """The Parquet ranking a run wrote under the folder ``out`` (tests and tools)."""
    files = sorted((Path(out) / "ranking").glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(path) for path in files], ignore_index=True) if files else pd.DataFrame()


def model_location(
    model_uri: str, registry: str, model_name: str, tracking_uri: str, project: str, location: str
) -> str:
    """``model_uri`` when given, else where the registry's champion lives (an error when there is none)."""
    from components.registry.core import RegistryConfig, champion_model_uri

    if model_uri:
        return model_uri
    config = RegistryConfig.from_env(
        backend=registry, model_name=model_name, tracking_uri=tracking_uri, project=project, location=location
    )
    champion = champion_model_uri(config)
    if not champion:
        raise UserError(f"{model_name} has no champion in the {registry} registry: run the training pipeline first")
    return champion


def batch_rank_step(
    model_uri: str,
    candidates_uri: str,
    ranked_path: str,
    dead_letters_path: str,
    split: str = "",
    campaign: str = "",
    top_k: int = 10,
    campaign_column: str = "module_name",
    output_table: str = "",
    beam_options_json: str = "{}",
) -> BatchSummary:
    """The kfp component's body: settings from its parameters, :func:`batch_rank` run, summary out."""
    config = BatchRankConfig(
        model_uri=model_uri,
        candidates=candidates_uri,
        split=split,
        campaign=campaign,
        top_k=top_k,
        campaign_column=campaign_column,
        out=output_table or ranked_path,
        dead_letter_out=dead_letters_path,
    )
    return batch_rank(config, BeamOptions.from_sources(beam_options_json))
