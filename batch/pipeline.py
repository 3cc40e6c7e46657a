"""The batch ranking Beam pipeline: candidates -> features -> RunInference -> top-k per user -> Parquet or BigQuery.

::

    candidates (files / BigQuery) ─ ReadCandidates ─ Assemble (FeatureAssembler) ─ RunInference (RankerModelHandler)
      ─ top-k per chunk ─┬─ users wholly in the chunk (grouped tables) ──────────────────┬─ WriteToParquet | BigQuery
                         └─ other users ─ GroupByKey (campaign, user) ─ top-k distinct ─┘
    unreadable and malformed rows ─────────────────────────────────────────────── dead letters (JSON lines)

Example::

    summary = batch_rank(BatchRankConfig(candidates="work/examples", split="test", campaign="email_digest",
                                         out="work/batch"), BeamOptions(direct_num_workers=2))
    summary.format()

A listing that appears more than once for a user keeps its best score, so a
user's top-k holds k distinct listings. Each output row: the campaign (when
``campaign_column`` is set), the user, ``rank`` (1 = best), the listing,
``score`` and ``p_<task>`` per task. With ``grouped_by_user`` (each user's
candidates are consecutive rows) only the users at the edges of a chunk are
shuffled (:mod:`batch.topk`).
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import apache_beam as beam
import pandas as pd
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import PredictionResult, RunInference

from batch import coders  # noqa: F401  (registers the chunk coder)
from batch.candidates import DEAD_LETTERS, CandidateSource, ReadCandidates
from batch.config import BIGQUERY_SCHEME, MODULE_ROLE, BatchRankConfig
from batch.features import FeatureAssembler, StoredFeatures
from batch.inference import RankerModelHandler
from batch.topk import CAMPAIGNS_NAMESPACE, NAMESPACE, RankingLayout, chunk_top_k, ranked_rows
from components.features.options import BeamOptions
from ranker_core.cli_support import UserError, first_few
from ranker_core.schema import MODULE, FeatureSpec

__all__ = ["BatchSummary", "RankingLayout", "batch_rank", "bigquery_sink", "read_ranking"]
SPANNING = "spanning"
MAX_CAMPAIGN_NAMES = 100  # distinct campaigns counted by name per worker (the rest as OTHER_CAMPAIGNS)
OTHER_CAMPAIGNS = "(others)"
EMPTY_CAMPAIGN = "(empty)"  # a row without a campaign value (a metric's name cannot be empty)
REASON_LINES = 10_000  # dead letters read for the most common reasons of a run that ranked nothing


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
    feature_store: str = ""  # the Feast repo the stored features came from
    feature_store_model_version: str = ""  # the model version its snapshot was materialized for
    campaign: str = ""  # the campaign ranked (all when empty)
    other_campaigns: int = 0  # rows read of other campaigns, left out
    candidates: str = ""  # what was read
    campaign_column: str = ""  # the column of the campaign (or module)
    campaigns_seen: dict[str, int] = dataclasses.field(default_factory=dict)  # rows per campaign, with ``campaign``
    # the most common reasons of the dead letters (of the first REASON_LINES), when nothing was ranked
    dead_letter_reasons: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def problem(self) -> str:
        """Why a run ranked nothing although it read rows (or read none), in one line; ``""`` when it ranked."""
        if self.scored:
            return ""
        if not self.candidates_read:
            return f"read no candidate rows from {self.candidates}: nothing to rank (empty files or table)"
        if self.campaign and self.campaigns_seen and not self.campaigns_seen.get(self.campaign):
            return self._campaign_problem()
        reasons = "; ".join(f"{reason} ({count})" for reason, count in self.dead_letter_reasons.items())
        common = f"; most common reasons: {reasons}" if reasons else ""
        return f"nothing ranked: {self._dead_rows()}, in {self.dead_letter_out}{common}"

    def _dead_rows(self) -> str:
        """Which rows were all dead letters: those of the campaign, all rows read, or the one row."""
        if self.other_campaigns:
            return (
                f"the {self.dead_letters} rows of campaign {self.campaign!r} were all dead letters "
                f"({self.other_campaigns} of other campaigns left out)"
            )
        if self.dead_letters > 1:
            return f"all {self.dead_letters} rows read were dead letters"
        return "the one row read was a dead letter"

    def _campaign_problem(self) -> str:
        seen = sorted(self.campaigns_seen.items(), key=lambda item: (-item[1], item[0]))
        names = [name for name, _ in seen if name not in (OTHER_CAMPAIGNS, EMPTY_CAMPAIGN)]
        close = difflib.get_close_matches(self.campaign, names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = ", ".join(
            f"{name} ({count} rows)" if i == 0 else f"{name} ({count})" for i, (name, count) in enumerate(seen[:5])
        )
        more = f" and {len(seen) - 5} more" if len(seen) > 5 else ""
        dead = f"; {self.dead_letters} dead letters in {self.dead_letter_out}" if self.dead_letters else ""
        return (
            f"nothing ranked: no row of campaign {self.campaign!r} among the {self.candidates_read} rows read"
            f"{hint}; the campaigns in column {self.campaign_column!r}: {listed}{more}{dead}"
        )

    def format(self) -> str:
        store = (
            f"; features from {self.feature_store} (materialized for model version "
            f"{self.feature_store_model_version or '?'})"
            if self.feature_store
            else ""
        )
        other = f", {self.other_campaigns} of campaigns other than {self.campaign!r} left out" if self.campaign else ""
        return (
            f"ranked {self.scored} candidates ({self.candidates_read} rows read{other}) with {self.model_uri}: "
            f"{self.rankings} top-k lists in {self.out}; {self.dead_letters} dead letters in {self.dead_letter_out}"
            f"{store}"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"problem": self.problem}


class Assemble(beam.DoFn):
    """Chunks of candidate rows -> model inputs; malformed rows to ``dead_letters``; other campaigns dropped."""

    def __init__(self, assembler: FeatureAssembler, campaign: str = "") -> None:
        self.assembler, self.campaign = assembler, campaign
        self.other_campaigns = Metrics.counter(NAMESPACE, "other_campaigns")
        self.store = None
        self.named: set[str] = set()

    def setup(self) -> None:
        if self.assembler.stored is not None:
            self.store = self.assembler.stored.open()  # one connection and cache per worker

    def process(self, chunk: pd.DataFrame) -> Iterator[Any]:
        campaigns = self.assembler.campaigns(chunk) if self.campaign else None
        if campaigns is not None:  # None: no campaign column in the chunk, its rows are dead letters
            kept = campaigns == self.campaign
            self._count(campaigns)
            self.other_campaigns.inc(len(chunk) - int(kept.sum()))
            chunk = chunk[kept]
        good, dead = self.assembler.assemble(chunk, self.store)
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        if len(good):
            yield good

    def _count(self, campaigns: Any) -> None:
        """Rows per campaign (namespace ``CAMPAIGNS_NAMESPACE``), for the message of a ``campaign`` never seen."""
        for name, count in pd.Series(campaigns, dtype=object).value_counts().items():
            name = str(name) or EMPTY_CAMPAIGN
            if name not in self.named and len(self.named) >= MAX_CAMPAIGN_NAMES:
                name = OTHER_CAMPAIGNS
            self.named.add(name)
            Metrics.counter(CAMPAIGNS_NAMESPACE, name).inc(int(count))


class TopKPerChunk(beam.DoFn):
    """A scored chunk -> the Arrow table of its complete users' rankings (main) and its other users' candidates
    (``spanning``, keyed by (campaign, user)); see :func:`batch.topk.chunk_top_k`."""

    def __init__(self, layout: RankingLayout, k: int, grouped: bool) -> None:
        self.layout, self.k, self.grouped = layout, k, grouped
        self.rankings = Metrics.counter(NAMESPACE, "rankings")

    def process(self, result: PredictionResult) -> Iterator[Any]:
        top = chunk_top_k(result, self.layout, self.k, self.grouped)
        if top.complete is not None:
            self.rankings.inc(top.complete_users)
            yield top.complete
        for keyed in top.spanning:
            yield beam.pvalue.TaggedOutput(SPANNING, keyed)


class ParquetSink(beam.PTransform):
    """``<out>/part-*.parquet`` (``out``: ``<--out>/ranking``) with the layout's schema, from ``(tables, rows)``.

    The chunks' tables are written where they are made (``part-inner-*``): a Flatten with the
    merged rows would pickle every table across the stage boundary (measured: 0.5 s per 400k
    candidates). The merged rows are batched into Arrow tables (``part-merged-*``,
    ``WriteToParquetBatched``): ``WriteToParquet``'s per-row column appends cost 8 us a row.
    """

    def __init__(self, out: str, layout: RankingLayout) -> None:
        super().__init__()
        self.out, self.schema = out.rstrip("/"), layout.arrow_schema()

    def expand(self, ranked: tuple[beam.PCollection, beam.PCollection]) -> beam.pvalue.PDone:
        tables, rows = ranked
        tables | "WriteInner" >> self._write("part-inner")
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=1024, max_batch_size=65_536)
            | "ToArrow" >> beam.Map(_arrow_table, self.schema)
            | "WriteMerged" >> self._write("part-merged")
        )

    def _write(self, prefix: str) -> beam.PTransform:
        return beam.io.WriteToParquetBatched(f"{self.out}/{prefix}", self.schema, file_name_suffix=".parquet")


def _arrow_table(rows: list[dict[str, Any]], schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema)


class BigQuerySink(beam.PTransform):
    """:func:`bigquery_sink` fed from ``(tables, rows)``: the tables' rows join the others as dicts."""

    def __init__(self, out: str, layout: RankingLayout, options: BeamOptions) -> None:
        super().__init__()
        self.write = bigquery_sink(out, layout, options)

    def expand(self, ranked: tuple[beam.PCollection, beam.PCollection]) -> Any:
        tables, rows = ranked
        table_rows = tables | "TableRows" >> beam.FlatMap(lambda table: table.to_pylist())
        return (table_rows, rows) | "Rows" >> beam.Flatten() | "WriteBigQuery" >> self.write


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
    pipeline: beam.Pipeline,
    config: BatchRankConfig,
    options: BeamOptions,
    assembler: FeatureAssembler,
    model_uri: str,
) -> None:
    """Add the whole batch ranking to ``pipeline``, scoring with the exported ranker behind ``model_uri``."""
    spec = assembler.feature_spec
    layout = RankingLayout(assembler.user_column, assembler.item_column, assembler.campaign_column, spec.task_names)
    source = CandidateSource(config.candidates_uri, config.source_format, options.project, options.temp_location)
    require_key_columns(source, assembler)
    columns = assembler.input_columns
    if source.format == "bigquery":  # a read of a column the table lacks fails: the module from its first column
        columns = tuple(column for column in columns if column not in assembler.module_columns[1:])
    read = pipeline | "ReadCandidates" >> ReadCandidates(source, columns, spec, config.batch_size)
    assemble = beam.ParDo(Assemble(assembler, config.campaign)).with_output_types(pd.DataFrame)
    features = read.chunks | "AssembleFeatures" >> assemble.with_outputs(DEAD_LETTERS, main="chunks")
    top_k = beam.ParDo(TopKPerChunk(layout, config.top_k, config.grouped_by_user)).with_output_types(pa.Table)
    handler = RankerModelHandler(model_uri, op_threads=config.op_threads or options.cores_per_worker_process)
    top = (
        features.chunks
        | "RunInference" >> RunInference(handler).with_output_types(PredictionResult)
        | "ChunkTopK" >> top_k.with_outputs(SPANNING, main="complete")
    )
    merged = (
        top.spanning
        # GroupByKey and a sort, not Top.PerKey: its heap costs 45 us per candidate (measured), 10x this
        | "PerUser" >> beam.GroupByKey()
        | "TopKPerUser" >> beam.FlatMap(ranked_rows, layout, config.top_k)
    )
    (top.complete, merged) | "Write" >> (
        BigQuerySink(config.out, layout, options)
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
    """The feature assembly of this run: key columns from the config, else the model's id and module roles."""
    user = config.user_column or spec.roles.get("user_id", "")
    item = config.item_column or spec.roles.get("item_id", "")
    if not user or not item:
        raise UserError("the model's feature spec names no user or item column: pass --user-column and --item-column")
    campaign = config.campaign_column
    if campaign == MODULE_ROLE:  # the model's module, in the column training read it from (tab on KuaiRand)
        campaign = spec.roles.get("module") or MODULE
    assembler = FeatureAssembler(spec, user, item, campaign)
    if not config.feature_store:
        return assembler
    # the store's keys are the model's id roles; the table may name those columns otherwise (--item-column ...)
    item_key = spec.roles.get("item_id", item)
    stored = stored_features(config.feature_store, item_key, spec.feature_names, assembler.id_sources)
    return dataclasses.replace(assembler, stored=stored)


def require_key_columns(source: CandidateSource, assembler: FeatureAssembler) -> None:
    """A one-line error when no candidates file has all the columns every row needs (the user, item and campaign
    columns, the model's module where it has several): a flag's typo (``--campaign-column modul_name``) or a
    renamed id column would make every row a dead letter after a full read. When one file has them all, a file
    without one has its rows dead-lettered, as before.

    Parquet and CSV only (their schema or header; the first ``SCHEMA_FILES`` files): a TFRecord's columns are known
    when it is parsed, a BigQuery read of an absent column fails.
    """
    from components.data.validation import SCHEMA_FILES

    if source.format not in ("parquet", "csv"):
        return
    files = source.files()  # raises a one-line error when there is none
    needed = {assembler.user_column: "--user-column", assembler.item_column: "--item-column"}
    if assembler.campaign_column and not assembler.campaign_is_module:
        needed[assembler.campaign_column] = "--campaign-column"
    modules = assembler.module_columns if assembler.default_module is None else ()
    lacking: list[tuple[str, list[str]]] = []  # the files read that lack a key column, with their columns
    for path in files[:SCHEMA_FILES]:
        columns = _columns_of(path, source.format)
        if columns and not _lacks(columns, needed, modules):
            return  # a file with every key column
        if columns:  # (an empty or unreadable file is no news)
            lacking.append((path, columns))
    if not lacking:
        return
    path, columns = lacking[0]
    where = (
        f"{path} has no" if len(lacking) == 1 else f"none of {len(lacking)} candidates files read (e.g. {path}) has a"
    )
    missing = next((column for column in needed if column not in columns), modules[0] if modules else "")
    raise UserError(f"{where} {_lacks(columns, needed, modules)}{_did_you_mean(missing, columns)}")


def _lacks(columns: list[str], needed: dict[str, str], modules: tuple[str, ...]) -> str:
    """The key column ``columns`` lack (``"--item-column column 'item'"``), or ``""`` when they have them all."""
    for column, flag in needed.items():
        if column not in columns:
            return f"{flag} column {column!r}"
    if modules and not set(modules) & set(columns):
        return f"column with the model's module ({' or '.join(map(repr, modules))})"
    return ""


def _columns_of(path: str, file_format: str) -> list[str]:
    """A Parquet or CSV file's columns (``[]``: empty or unreadable, its rows are dead letters)."""
    from components.data.readers import DataSourceError, file_columns
    from components.data.spec import SourceSpec

    try:
        return list(file_columns(path, SourceSpec(format=file_format)))
    except DataSourceError:
        return []


def _did_you_mean(column: str, present: list[str]) -> str:
    """`` (did you mean 'module_name'?)``, or the file's columns when none is close."""
    import difflib

    close = difflib.get_close_matches(column, present, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (the columns: {first_few(present, 8)})"


def stored_features(
    repo: str, item_key: str, model_features: Iterable[str], columns: Mapping[str, str] | None = None
) -> StoredFeatures:
    """The feature store's features; a repo that is not one, or does not fit the model, is a one-line error.

    ``columns``: the table's column of each id it names otherwise than the store (:meth:`StoredFeatures.of`).
    """
    from serving.feature_store import NOT_A_REPO, require_fit

    try:
        stored = StoredFeatures.of(repo, item_key, columns)
    except Exception as error:  # ours (FeatureRepoError: the reason) or Feast's for a broken repo
        raise UserError(f"--feature-store {repo}: {NOT_A_REPO} ({error})") from None
    require_fit(repo, stored.names, model_features)
    return stored


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
    assembler = assembler_for(config, spec)
    rank_candidates(pipeline, config, options, assembler, worker_model_uri)
    result = pipeline.run()
    result.wait_until_finish()
    counts = _counters(result)
    summary = BatchSummary(
        model_uri=config.model_uri,
        candidates_read=counts.get("candidates_read", 0),
        dead_letters=counts.get("dead_letters", 0),
        scored=counts.get("scored", 0),
        rankings=counts.get("rankings", 0),
        out=config.ranking_path,
        dead_letter_out=config.dead_letter_path,
        feature_store=config.feature_store,
        feature_store_model_version=assembler.stored.model_version if assembler.stored else "",
        campaign=config.campaign,
        other_campaigns=counts.get("other_campaigns", 0),
        candidates=config.candidates_uri,
        campaign_column=assembler.campaign_column,
        campaigns_seen=_counters(result, CAMPAIGNS_NAMESPACE) if config.campaign else {},
    )
    if summary.candidates_read and not summary.scored and summary.dead_letters:
        summary.dead_letter_reasons = dead_letter_reasons(config.dead_letter_path)
    return summary


def dead_letter_reasons(folder: str, most: int = 3, lines: int = REASON_LINES) -> dict[str, int]:
    """The ``most`` most common reasons among the first ``lines`` dead letters in ``folder`` (local or gs://),
    each cut to one short line; ``{}`` when they cannot be read."""
    from apache_beam.io.filesystems import FileSystems

    reasons: collections.Counter[str] = collections.Counter()
    try:
        files = sorted(meta.path for meta in FileSystems.match([f"{folder.rstrip('/')}/part*.jsonl"])[0].metadata_list)
        for path in files:
            with FileSystems.open(path) as handle:
                for line in io.TextIOWrapper(handle, encoding="utf-8"):
                    reason = " ".join(str(json.loads(line).get("reason", "")).split())
                    reasons[reason if len(reason) <= 160 else reason[:157] + "..."] += 1
                    if reasons.total() >= lines:
                        return dict(reasons.most_common(most))
    except Exception:  # a detail of the summary: the reasons read so far
        pass
    return dict(reasons.most_common(most))


def _counters(result: beam.runners.runner.PipelineResult, namespace: str = NAMESPACE) -> dict[str, int]:
    """The run's counters by name, summed over the steps that count (rankings: per chunk and after the shuffle)."""
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    except (NotImplementedError, KeyError):
        return {}
    totals: collections.Counter[str] = collections.Counter()
    for counter in found:
        totals[counter.key.metric.name] += int(counter.committed or 0)
    return dict(totals)


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
    config = RegistryConfig.for_step(registry, model_name, tracking_uri, project, location)
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
    campaign_column: str = MODULE_ROLE,
    output_table: str = "",
    beam_options_json: str = "{}",
    grouped_by_user: bool = False,
    feature_store: str = "",
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
        grouped_by_user=grouped_by_user,
        feature_store=feature_store,
    )
    return batch_rank(config, BeamOptions.from_sources(beam_options_json, environ={}))  # only what the run sends
