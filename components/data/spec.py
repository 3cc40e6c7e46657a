"""The dataset spec: which raw columns play which role, and how to read, label, featurize and split them.

A spec is a YAML file (reference: ``docs/data.md``). It is loaded from a local
path, a ``gs://`` URI or the name of a spec shipped in ``components/data/specs``
(:data:`SHIPPED_SPECS`: ``simulator``, ``ali_ccp``, ``kuairand``, ``uci_adult``), and validated on its own before it
is checked against any data::

    spec = load_dataset_spec("simulator")
    spec.task_names          # ("click", "favorite", "add_to_cart", "purchase")
    spec.required_columns    # every raw column extraction reads

Every error names the spec file and the offending key or column.
"""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import re
from pathlib import Path
from typing import Any, Literal

import yaml

from components.data.expressions import ExpressionError, LabelExpression
from ranker_core.cli_support import UserError, first_few
from ranker_core.feature_store import HISTORY_PREFIX, MATCH_PREFIX
from ranker_core.schema import (
    HELDOUT_SPLIT,
    MODULE,
    POSITION,
    REQUEST_ID,
    SPLITS,
    TIMESTAMP,
    FeatureSpec,
    Task,
    serving_name_clashes,
)
from ranker_core.settings import known_keys_hint

SPECS_DIR = Path(__file__).resolve().parent / "specs"
SHIPPED_SPECS = tuple(sorted(path.stem for path in SPECS_DIR.glob("*.yaml")))

SourceFormat = Literal["parquet", "csv", "jsonl", "bigquery"]
SplitMethod = Literal["time", "hash", "files"]
DuplicatePolicy = Literal["drop", "keep"]
FORMATS = ("parquet", "csv", "jsonl", "bigquery")
DUPLICATE_POLICIES = ("drop", "keep")
DEFAULT_PATTERNS = {"parquet": "*.parquet", "csv": "*.csv", "jsonl": "*.jsonl*"}
TRANSFORMS = ("none", "log1p")
ENCODINGS = ("normalize", "quantile", "pwl")
# Id roles may name the same column (a session id that is also the user id); the others need their own.
SHAREABLE_ROLES = ("request_id", "user_id", "item_id")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DatasetSpecError(UserError, ValueError):
    """A dataset spec is invalid; the message names the spec file and every problem."""


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """Where rows come from: files of one format, or a BigQuery table or query."""

    format: SourceFormat = "parquet"
    pattern: str = ""  # glob applied when the data URI is a folder; default by format
    table: str = ""  # bigquery: project.dataset.table
    query: str = ""  # bigquery: a standard-SQL query
    delimiter: str = ","  # csv
    # csv files without a header line: their columns, in order (empty: the first line names them)
    column_names: tuple[str, ...] = ()
    list_separator: str = "|"  # list-valued columns given as one string (csv)
    # csv cells read as missing; None: pyarrow's (and pandas') usual markers: "", NA, N/A, NULL, null, NaN, nan, ...
    null_values: tuple[str, ...] | None = None
    # Rows of one request equal in every column read: `drop` dead-letters all copies but the first (by file and
    # row), `keep` keeps them; both count them. A copy inflates its request and repeats its (request, item) pair.
    duplicates: DuplicatePolicy = "drop"

    @property
    def file_pattern(self) -> str:
        return self.pattern or DEFAULT_PATTERNS.get(self.format, "*")


@dataclasses.dataclass(frozen=True)
class ColumnRoles:
    """Raw column name of each role; every role is optional (tabular data may have none).

    One column may serve several id roles (:data:`SHAREABLE_ROLES`) and be a feature too.
    """

    user_id: str | None = None  # no user: no user history
    item_id: str | None = None  # no item: no oracle join, no candidate ids in serving responses
    request_id: str | None = None  # no groups: every row is its own request, AUC only
    timestamp: str | None = None  # no time: no history features, split by hash or files
    module: str | None = None  # no module: every row is in ranker_core.schema.DEFAULT_MODULE
    position: str | None = None  # no position: 0


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A task and its positive rule: a 0/1 ``column`` or a boolean ``expression`` over columns."""

    name: str
    column: str | None = None
    expression: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,) if self.column else LabelExpression(self.expression or "").columns

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The columns the expression compares with text (``event == 'purchase'``): read as text, not numbers."""
        return LabelExpression(self.expression).text_columns if self.expression else ()


@dataclasses.dataclass(frozen=True)
class VocabularySpec:
    """How a categorical or list feature's vocabulary is chosen from the train split."""

    max_size: int = 10_000
    min_count: int = 1


@dataclasses.dataclass(frozen=True)
class NumericSpec:
    """A numeric feature's transform (applied by the model) and encoding."""

    transform: Literal["none", "log1p"] = "none"
    encoding: Literal["normalize", "quantile", "pwl"] = "normalize"


@dataclasses.dataclass(frozen=True)
class FeaturesSpec:
    """Raw columns used as model features, by kind."""

    categorical: dict[str, VocabularySpec] = dataclasses.field(default_factory=dict)
    hashed: dict[str, int] = dataclasses.field(default_factory=dict)
    numeric: dict[str, NumericSpec] = dataclasses.field(default_factory=dict)
    list: dict[str, VocabularySpec] = dataclasses.field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.categorical, *self.hashed, *self.numeric, *self.list)


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """The user's recent positives of one task as a list feature: the values of ``column`` (the
    listing, its shop, its category, ...) of the last ``length`` impressions of the user with a
    positive ``task`` label strictly before each impression, most recent first."""

    task: str
    column: str
    length: int = 20
    max_size: int = VocabularySpec.max_size  # the list feature's vocabulary, chosen on the train split
    min_count: int = VocabularySpec.min_count

    @property
    def feature(self) -> str:
        return f"{HISTORY_PREFIX}user_recent_{self.task}_{self.column}"

    @property
    def match_feature(self) -> str:
        """How many of the sequence's values equal the candidate's ``column`` (the user clicked this listing,
        this shop, ... n times lately): what a tree can use of a sequence."""
        return f"{MATCH_PREFIX}recent_{self.task}_{self.column}"


@dataclasses.dataclass(frozen=True)
class HistorySpec:
    """Point-in-time aggregates: engagement before each impression, per entity.

    ``entities`` are item-side columns (item, shop, category, ...); ``user_by``
    are columns the user's history is broken down by (the user's history in the
    candidate's category); ``match`` pairs of columns become 0/1 "equal" flags.
    ``item_features`` and ``user_features`` are raw feature columns that belong to
    the item (its category, price, ...) or the user: the feature store keeps their
    latest value with the entity's history, so a request sends the ids only (not a feature that changes
    with time, such as an age: its stored value goes stale, so the request sends it).
    ``sequences`` are the user's behaviour sequences (:class:`SequenceSpec`), list
    features kept with the user's history.
    """

    entities: tuple[str, ...] = ()
    user_by: tuple[str, ...] = ()
    user: bool = True  # the user's overall history
    match: tuple[tuple[str, str], ...] = ()
    prior_strength: float = 10.0  # pseudo-impressions of the smoothing prior
    item_features: tuple[str, ...] = ()
    user_features: tuple[str, ...] = ()
    sequences: tuple[SequenceSpec, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.entities or self.user_by or self.user)

    def entity_keys(self, user_column: str | None) -> list[tuple[str, tuple[str, ...]]]:
        """(name, key columns) of every entity: each item-side column, ``user``, ``user_<column>``
        (the user's entities only with a ``user_column``)."""
        keys = [(column, (column,)) for column in self.entities]
        if not user_column:
            return keys
        if self.user:
            keys.append(("user", (user_column,)))
        return keys + [(f"user_{column}", (user_column, column)) for column in self.user_by]


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """How rows are split: by time quantiles, by a hash of the request, or by source files."""

    by: SplitMethod = "time"
    eval_fraction: float = 0.1
    test_fraction: float = 0.1
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # split -> glob on the file name


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A validated dataset spec. Build it with :func:`load_dataset_spec` or :func:`parse_dataset_spec`."""

    name: str
    source: SourceSpec
    columns: ColumnRoles
    tasks: tuple[TaskSpec, ...]
    features: FeaturesSpec
    history: HistorySpec = HistorySpec(user=False)
    split: SplitSpec = SplitSpec()
    # module -> {trait: value}: what each surface is (layout, channel, ...), so that a module the model
    # did not train on is embedded from the traits it shares with the others
    module_traits: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    origin: str = "<inline>"

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(task.name for task in self.tasks)

    @property
    def has_groups(self) -> bool:
        return self.columns.request_id is not None

    @property
    def history_enabled(self) -> bool:
        return self.history.enabled and self.columns.timestamp is not None

    def outline(self) -> FeatureSpec:
        """The feature spec's tasks, grouping and roles as extraction will write them, without statistics.

        Enough to check settings against the data before any step runs::

            EvaluationConfig().primary(load_dataset_spec("ali_ccp").outline())   # click auc
        """
        tasks = [Task(task.name, task.column or task.expression or "") for task in self.tasks]
        return FeatureSpec(
            tasks=tasks,
            features=[],
            modules=[],
            has_groups=self.has_groups,
            roles=self.role_names(),
            dataset=self.name,
            module_traits={module: dict(traits) for module, traits in self.module_traits.items()},
        )

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Every raw column extraction reads, in a stable order, without duplicates."""
        roles = [value for value in dataclasses.asdict(self.columns).values() if value]
        label_columns = [column for task in self.tasks for column in task.columns]
        history = [*self.history.entities, *self.history.user_by, *(c for pair in self.history.match for c in pair)]
        history += [sequence.column for sequence in self.history.sequences]
        return tuple(dict.fromkeys([*roles, *label_columns, *self.features.columns, *history]))

    def role_names(self) -> dict[str, str]:
        """role -> raw column, for the roles the data has (``FeatureSpec.roles``)."""
        return {role: column for role, column in dataclasses.asdict(self.columns).items() if column}


def load_dataset_spec(reference: str | Path) -> DatasetSpec:
    """Load a spec from a shipped name (``simulator``), a local path or a ``gs://`` URI.

    Example::

        spec = load_dataset_spec("components/data/specs/kuairand.yaml")
    """
    reference = str(reference)
    path = str(SPECS_DIR / f"{reference}.yaml") if reference in SHIPPED_SPECS else reference
    try:
        text = _read_text(path)
    except FileNotFoundError:
        shipped = ", ".join(SHIPPED_SPECS)
        raise DatasetSpecError(f"no dataset spec at {path!r} (a path, a gs:// URI or one of: {shipped})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DatasetSpecError(f"{path}: not valid YAML: {error}") from None
    return parse_dataset_spec(data, origin=path)


def write_spec_with_history(
    history: dict[str, Any],
    path: str | Path,
    reference: str = "simulator",
    module_traits: dict[str, dict[str, Any]] | None = None,
) -> str:
    """A shipped spec with its `history` section updated by ``history`` (and ``module_traits`` declared, when given),
    written to ``path`` (a variant for benchmarks and tests; it is validated when loaded). Returns the path."""
    spec = yaml.safe_load((SPECS_DIR / f"{reference}.yaml").read_text())
    spec["history"] = {**(spec.get("history") or {}), **history}
    if module_traits:
        spec["module_traits"] = module_traits
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(spec))
    return str(path)


def spec_with_history(
    history: dict[str, Any],
    path: str | Path,
    reference: str = "simulator",
    module_traits: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The shipped spec's name when ``history`` is empty (``{}``) and no traits are given, else the variant written
    to ``path``."""
    if not history and not module_traits:
        return reference
    return write_spec_with_history(history, path, reference, module_traits)


def _read_text(path: str) -> str:
    if "://" not in path:
        return Path(path).read_text()
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(path):
        raise FileNotFoundError(path)
    with FileSystems.open(path) as handle:
        return handle.read().decode()


def parse_dataset_spec(data: Any, origin: str = "<inline>") -> DatasetSpec:
    """Build and validate a spec from its YAML structure; every problem is reported at once."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise DatasetSpecError(f"{origin}: a dataset spec is a mapping of keys, got {type(data).__name__}")
    top = _fields(data, DatasetSpec, "spec", problems, ignore=("origin",))
    columns = _columns(top.get("columns"), problems)
    spec = DatasetSpec(
        name=str(top.get("name") or ""),
        source=_source(top.get("source", {}), problems),
        columns=columns,
        tasks=_tasks(top.get("tasks"), problems),
        features=_features(top.get("features", {}), problems),
        history=_history(top.get("history"), problems),
        split=_split(top.get("split", {}), problems, has_time=bool(columns.timestamp)),
        module_traits=_module_traits(top.get("module_traits"), problems),
        origin=origin,
    )
    if not spec.name:
        problems.append("name: missing (a short dataset name)")
    problems.extend(_cross_checks(spec))
    if problems:
        raise DatasetSpecError(f"{origin}: invalid dataset spec:\n  - " + "\n  - ".join(problems))
    return spec


def _fields(data: Any, cls: type, where: str, problems: list[str], ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys of ``data`` that are fields of ``cls``; unknown keys are reported."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping, got {data!r}")
        return {}
    known = [field.name for field in dataclasses.fields(cls) if field.name not in ignore]
    for key in data:
        if key not in known:
            problems.append(f"{where}: unknown key {key!r} ({known_keys_hint(str(key), known)})")
    return {key: value for key, value in data.items() if key in known}


def _module_traits(data: Any, problems: list[str]) -> dict[str, dict[str, str]]:
    """``{module: {trait: value}}`` with every value a string (``true``, ``3``: YAML scalars as written)."""
    traits: dict[str, dict[str, str]] = {}
    if data is not None and not isinstance(data, dict):
        problems.append(f"module_traits: expected a mapping of module to its traits, got {data!r}")
        return traits
    for module, values in (data or {}).items():
        where = f"module_traits.{module}"
        if not isinstance(values, dict) or not values:
            problems.append(f"{where}: expected a mapping of trait to value (layout: grid), got {values!r}")
            continue
        declared = traits.setdefault(str(module), {})
        for trait, value in values.items():
            if isinstance(value, (list, dict)) or value is None or str(value) == "":
                problems.append(f"{where}.{trait}: a trait value is one string, number or boolean, got {value!r}")
            else:
                declared[str(trait)] = str(value).lower() if isinstance(value, bool) else str(value)
    return traits


def _source(data: Any, problems: list[str]) -> SourceSpec:
    fields = _fields(data, SourceSpec, "source", problems)
    names = _column_names(fields.pop("column_names", None) or [], problems)
    null_values = _null_values(fields.pop("null_values", None), problems)
    source = SourceSpec(
        **{key: str(value) for key, value in fields.items()}, column_names=names, null_values=null_values
    )
    if source.null_values is not None and source.format != "csv":
        problems.append(f"source.null_values: only csv cells are read as text, not {source.format}'s")
    if source.column_names and source.format != "csv":
        problems.append(f"source.column_names: only csv files may lack a header line, not {source.format}")
    if source.format not in FORMATS:
        problems.append(f"source.format: {source.format!r} is not one of {', '.join(FORMATS)}")
    if source.duplicates not in DUPLICATE_POLICIES:
        problems.append(f"source.duplicates: {source.duplicates!r} is not one of {', '.join(DUPLICATE_POLICIES)}")
    if source.format == "bigquery" and bool(source.table) == bool(source.query):
        problems.append("source: a bigquery source needs exactly one of `table` or `query`")
    return source


def _null_values(values: Any, problems: list[str]) -> tuple[str, ...] | None:
    """``source.null_values``: absent (the usual markers), or a list of strings (``[""]``: only empty cells)."""
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        problems.append(f'source.null_values: expected a list of strings (e.g. [""]), got {values!r}')
        return None
    return tuple(values)


def _column_names(names: Any, problems: list[str]) -> tuple[str, ...]:
    """``source.column_names``: a list of distinct, non-empty names."""
    if not isinstance(names, list) or not all(isinstance(name, str | int) and str(name) for name in names):
        problems.append(f"source.column_names: expected a list of column names, got {names!r}")
        return ()
    repeated = sorted(name for name, count in collections.Counter(map(str, names)).items() if count > 1)
    if repeated:
        problems.append(f"source.column_names: {', '.join(map(repr, repeated))} named more than once")
    return tuple(str(name) for name in names)


def _columns(data: Any, problems: list[str]) -> ColumnRoles:
    fields = _fields(data, ColumnRoles, "columns", problems)
    values = {role: str(column) for role, column in fields.items() if column}
    seen: dict[str, str] = {}
    for role, column in values.items():
        first = seen.setdefault(column, role)
        if first != role and not {first, role} <= set(SHAREABLE_ROLES):
            shared = ", ".join(SHAREABLE_ROLES)
            problems.append(f"columns: column {column!r} has two roles ({first} and {role}); only {shared} may share")
    return ColumnRoles(**values)


def _tasks(data: Any, problems: list[str]) -> tuple[TaskSpec, ...]:
    if not isinstance(data, list) or not data:
        problems.append("tasks: missing (a list of {name, column | expression}, in ascending order of value)")
        return ()
    tasks = []
    for index, entry in enumerate(data):
        fields = _fields(entry, TaskSpec, f"tasks[{index}]", problems)
        task = TaskSpec(**{key: str(value) for key, value in fields.items() if value is not None})
        if not task.name or not _IDENTIFIER.match(task.name):
            problems.append(f"tasks[{index}]: name {task.name!r} must be an identifier (ASCII letters, digits, _)")
        if bool(task.column) == bool(task.expression):
            problems.append(f"tasks[{index}] ({task.name}): give exactly one of `column` or `expression`")
        elif task.expression:
            try:
                LabelExpression(task.expression)
            except ExpressionError as error:
                problems.append(f"tasks[{index}] ({task.name}): {error}")
                continue
        tasks.append(task)
    names = [task.name for task in tasks]
    for name in sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"tasks: task {name!r} is defined twice")
    return tuple(tasks)


def _features(data: Any, problems: list[str]) -> FeaturesSpec:
    fields = _fields(data, FeaturesSpec, "features", problems)
    categorical = _vocabulary_features(fields.get("categorical"), "features.categorical", problems)
    lists = _vocabulary_features(fields.get("list"), "features.list", problems)
    hashed: dict[str, int] = {}
    for column, buckets in _as_mapping(fields.get("hashed"), "features.hashed", problems).items():
        if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
            problems.append(f"features.hashed.{column}: bucket count must be a positive integer, got {buckets!r}")
        else:
            hashed[column] = buckets
    numeric: dict[str, NumericSpec] = {}
    for column, options in _as_mapping(fields.get("numeric"), "features.numeric", problems).items():
        where = f"features.numeric.{column}"
        numeric_spec = NumericSpec(**_fields(options or {}, NumericSpec, where, problems))
        if numeric_spec.transform not in TRANSFORMS:
            problems.append(f"{where}.transform: {numeric_spec.transform!r} is not one of {', '.join(TRANSFORMS)}")
        if numeric_spec.encoding not in ENCODINGS:
            problems.append(f"{where}.encoding: {numeric_spec.encoding!r} is not one of {', '.join(ENCODINGS)}")
        numeric[column] = numeric_spec
    return FeaturesSpec(categorical=categorical, hashed=hashed, numeric=numeric, list=lists)


def _as_mapping(data: Any, where: str, problems: list[str]) -> dict[str, Any]:
    """A mapping as is, a list of names as ``{name: None}``."""
    if data is None:
        return {}
    if isinstance(data, list):
        duplicates = sorted({str(name) for name in data if data.count(name) > 1})
        problems.extend(f"{where}: column {name!r} is listed twice" for name in duplicates)
        return {str(name): None for name in data}
    if isinstance(data, dict):
        return {str(name): value for name, value in data.items()}
    problems.append(f"{where}: expected a list of columns or a mapping, got {data!r}")
    return {}


def _vocabulary_features(data: Any, where: str, problems: list[str]) -> dict[str, VocabularySpec]:
    features = {}
    for column, options in _as_mapping(data, where, problems).items():
        vocabulary = VocabularySpec(**_fields(options or {}, VocabularySpec, f"{where}.{column}", problems))
        if vocabulary.max_size < 1 or vocabulary.min_count < 1:
            problems.append(f"{where}.{column}: max_size and min_count must be at least 1")
        features[column] = vocabulary
    return features


def _history(data: Any, problems: list[str]) -> HistorySpec:
    if data is None:
        return HistorySpec(user=False)
    fields = _fields(data, HistorySpec, "history", problems)
    match = []
    for pair in fields.get("match") or ():
        if not isinstance(pair, list) or len(pair) != 2:
            problems.append(f"history.match: {pair!r} is not a pair of columns [a, b]")
        else:
            match.append((str(pair[0]), str(pair[1])))
    return HistorySpec(
        entities=tuple(str(column) for column in fields.get("entities") or ()),
        user_by=tuple(str(column) for column in fields.get("user_by") or ()),
        user=bool(fields.get("user", True)),
        match=tuple(match),
        prior_strength=float(fields.get("prior_strength", 10.0)),
        item_features=tuple(str(column) for column in fields.get("item_features") or ()),
        user_features=tuple(str(column) for column in fields.get("user_features") or ()),
        sequences=tuple(_sequence(index, entry, problems) for index, entry in enumerate(fields.get("sequences") or ())),
    )


def _sequence(index: int, data: Any, problems: list[str]) -> SequenceSpec:
    where = f"history.sequences[{index}]"
    fields = _fields(data, SequenceSpec, where, problems)
    if "task" not in fields or "column" not in fields:
        problems.append(f"{where}: needs `task` and `column`")
    sequence = SequenceSpec(**{"task": "", "column": "", **fields})
    if not all(isinstance(getattr(sequence, name), int) and getattr(sequence, name) >= 1
               for name in ("length", "max_size", "min_count")):  # fmt: skip
        problems.append(f"{where}: length, max_size and min_count must be integers of at least 1")
    return sequence


def _split(data: Any, problems: list[str], has_time: bool) -> SplitSpec:
    """The split settings; ``by`` defaults to ``time`` when the data has a timestamp, else ``hash``."""
    fields = _fields(data, SplitSpec, "split", problems)
    split = SplitSpec(**{"by": "time" if has_time else "hash", **fields})
    if split.by not in ("time", "hash", "files"):
        problems.append(f"split.by: {split.by!r} is not one of time, hash, files")
    if not (0 <= split.eval_fraction < 1 and 0 <= split.test_fraction < 1):
        problems.append("split: eval_fraction and test_fraction must be in [0, 1)")
    elif split.eval_fraction + split.test_fraction >= 1:
        problems.append("split: eval_fraction + test_fraction must leave rows for train")
    if split.by == "files":
        for name in split.files:
            if name not in SPLITS:
                problems.append(f"split.files: {name!r} is not a split ({', '.join(SPLITS)})")
        if "train" not in split.files:
            problems.append("split.files: needs a `train` file pattern")
    return split


def _stored_feature_problems(spec: DatasetSpec, kinds: dict[str, str]) -> list[str]:
    """``item_features`` / ``user_features`` must be model features of an entity that has history."""
    history = spec.history
    problems = [
        f"history.{where}: {column!r} is not a column of `features`"
        for where, columns in (("item_features", history.item_features), ("user_features", history.user_features))
        for column in columns
        if column not in kinds
    ]
    if history.item_features and spec.columns.item_id not in history.entities:
        problems.append("history.item_features: needs the item id column in history.entities")
    if history.user_features and not (history.user and spec.columns.user_id):
        problems.append("history.user_features: needs the user's history (columns.user_id and `user: true`)")
    return problems


def _sequence_problems(spec: DatasetSpec, kinds: dict[str, str]) -> list[str]:
    """A sequence needs the user's history, a task of the spec and a string column (an id or a category)."""
    history, problems = spec.history, []
    if history.sequences and not (history.user and spec.columns.user_id):
        problems.append("history.sequences: needs the user's history (columns.user_id and `user: true`)")
    for index, sequence in enumerate(history.sequences):
        where = f"history.sequences[{index}]"
        if sequence.task and sequence.task not in spec.task_names:
            problems.append(f"{where}: task {sequence.task!r} is not one of {', '.join(spec.task_names)}")
        if (
            sequence.column
            and kinds.get(sequence.column) not in ("categorical", "hashed")
            and (sequence.column != spec.columns.item_id)
        ):
            problems.append(
                f"{where}: column {sequence.column!r} is not the item id or a categorical or hashed feature"
            )
    features = [sequence.feature for sequence in history.sequences]
    problems += [
        f"history.sequences: two sequences are {name!r}" for name in sorted(set(features)) if features.count(name) > 1
    ]
    return problems


def _cross_checks(spec: DatasetSpec) -> list[str]:
    """Problems that involve several sections: reserved names, duplicates, leaks, missing roles."""
    problems = []
    kinds: dict[str, str] = {}
    for kind in ("categorical", "hashed", "numeric", "list"):
        for column in getattr(spec.features, kind):
            if column in kinds:
                problems.append(f"features: column {column!r} is both {kinds[column]} and {kind}")
            kinds[column] = kind
    problems += [f"features: {clash}" for clash in serving_name_clashes([MODULE, *kinds])]
    reserved = {REQUEST_ID, MODULE, POSITION, TIMESTAMP}
    roles = spec.role_names()
    for column in kinds:
        if column in reserved or column.startswith(("label_", HISTORY_PREFIX)):
            problems.append(f"features: {column!r} is a reserved example key or prefix; rename the column")
        for role in ("request_id", "timestamp", "module", "position"):
            if roles.get(role) == column:
                problems.append(f"features: column {column!r} is the {role} role and cannot also be a feature")
    for task in spec.tasks:
        for column in task.columns if (task.column or task.expression) else ():
            if column in kinds:
                problems.append(f"features: column {column!r} defines the label of task {task.name!r} (a leak)")
    if spec.history.enabled and not spec.columns.user_id and (spec.history.user or spec.history.user_by):
        problems.append("history: user and user_by need columns.user_id (set `user: false` and no `user_by`)")
    names = [name for name, _ in spec.history.entity_keys(spec.columns.user_id)]
    for name in sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"history: two entities are named {name!r} (their hist_{name}_* features would collide)")
    problems.extend(_stored_feature_problems(spec, kinds))
    problems.extend(_sequence_problems(spec, kinds))
    if spec.history.enabled and not spec.columns.timestamp:
        problems.append("history: needs columns.timestamp (point-in-time aggregates need event times)")
    if spec.split.by == "time" and not spec.columns.timestamp:
        problems.append("split.by: time needs columns.timestamp; use `hash` or `files`")
    if spec.split.by == "files" and spec.source.format == "bigquery":
        problems.append("split.by: files needs a file source, not bigquery")
    return problems


def split_names(held_out_module: str | None) -> tuple[str, ...]:
    """The splits extraction writes: train, eval, test and, with a held-out module, heldout."""
    return (*SPLITS, HELDOUT_SPLIT) if held_out_module else SPLITS


def file_splits(spec: DatasetSpec, files: list[str]) -> dict[int, str]:
    """File index -> split, for ``split.by: files``; empty for other methods.

    Every file must match exactly one pattern, and every pattern at least one file: a file that
    two patterns take, or a pattern that takes none, would silently leave a split empty or mixed.

    Example::

        file_splits(spec, ["d/ali_ccp_train.csv", "d/ali_ccp_val.csv"])   # {0: "train", 1: "eval"}
    """
    if spec.split.by != "files":
        return {}
    patterns = ", ".join(f"{split}: {pattern!r}" for split, pattern in spec.split.files.items())
    splits = {}
    for index, path in enumerate(files):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        matched = [split for split, pattern in spec.split.files.items() if fnmatch.fnmatch(name, pattern)]
        if len(matched) != 1:
            which = "no split.files pattern" if not matched else f"the patterns of {' and '.join(matched)}"
            raise ValueError(f"file {path} matches {which} ({patterns}); each file must match exactly one")
        splits[index] = matched[0]
    unmatched = [split for split in spec.split.files if split not in splits.values()]
    if unmatched:
        names = first_few([path.rstrip("/").rsplit("/", 1)[-1] for path in files], 5)
        raise ValueError(
            f"split.files.{unmatched[0]}: {spec.split.files[unmatched[0]]!r} matches none of the files ({names})"
        )
    return splits
