"""Turning a JSON ranking request into model columns, and model outputs into a response.

One *instance* is one ranking request: the context (the module and any
request-level feature) and the candidates to rank, either as a list of rows or
as columns::

    {"instances": [{"context": {"module_name": "search", "user_id": "u7"},
                    "candidates": [{"listing_id": "l1", "price": 12.5},
                                   {"listing_id": "l2", "price": null}]}],
     "parameters": {"top_k": 1}}

    parser = RequestParser(FeatureSpec.load("model/feature_spec.json"), max_candidates=2000)
    batch = parser.parse(orjson.loads(body))
    outputs = ranker.predict(batch.columns)          # one model call for every candidate
    response = build_response(batch, outputs, parser.task_names)

The rules (also in docs/serving.md):

* Context values are broadcast over the candidates. A key given both in the
  context and in the candidates is an error (there is no silent precedence).
* A key that is neither ``module_name`` nor a feature of the spec is an error.
* A feature that is absent, or ``null``, is missing: NaN for numeric features,
  ``""`` for string features, exactly as extraction encodes a missing value.
* Numeric features take JSON numbers (not strings, not booleans) that are
  finite in float32. String features take strings or integers (ids); list
  features take a string joined by ``|`` or a list of strings (not numbers).
* An unknown ``module_name`` is scored (the model maps it to its
  out-of-vocabulary embedding). A ``module_name`` that is absent or ``null``
  (in the context or for a candidate) is missing: when the spec knows a single
  module, that module is used; otherwise it is an error.
* In process a candidate column may also be a one-dimensional NumPy array (what
  ``ranker serve --feature-store`` adds): numbers (NaN: missing) or objects, held
  to the same rules as the JSON list it stands for.
* Duplicate keys in one JSON object: the last value wins (the decoder's rule;
  refusing them needs a decoder that sees every key pair, far slower than orjson).

The server decodes bodies with :class:`TypedBodyDecoder`, which checks the value
types of columnar candidates while it decodes; a body it refuses is decoded
untyped and the parser names the problem, so the rules and messages are the same.

Every violation raises :class:`RequestError` whose message names the instance,
the field and, for candidate values, the candidate index.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson

from ranker_core.schema import LIST_SEPARATOR, MODULE, FeatureSpec
from serving.observability import MISSING_FEATURES

FLOAT32_MAX = float(np.finfo(np.float32).max)
KNOWN_PARAMETERS = ("top_k",)
NUMBER_TYPES = frozenset({int, float, type(None)})


class RequestError(ValueError):
    """A request the server refuses with a 4xx; the message names the offending field."""


class TooManyCandidatesError(RequestError):
    """More candidates in one HTTP request (all instances together) than the server takes: a 413."""


@dataclasses.dataclass
class ParsedBatch:
    """Every candidate of every instance of one request, as model-ready columns.

    ``offsets[i]:offsets[i + 1]`` are the rows of instance ``i``; ``ids`` holds
    each instance's candidate ids (the spec's ``item_id`` role) when sent.
    """

    columns: dict[str, np.ndarray]
    offsets: np.ndarray
    ids: list[np.ndarray | None]
    top_k: int | None = None

    @property
    def num_candidates(self) -> int:
        return int(self.offsets[-1])

    @property
    def candidates_per_instance(self) -> np.ndarray:
        return np.diff(self.offsets)


class RequestParser:
    """Validates ranking requests against a feature spec and builds the model's input columns.

    Example::

        parser = RequestParser(spec, max_candidates=1000)
        batch = parser.parse({"instances": [{"context": {"module_name": "search"},
                                             "candidates": {"price": [3.0, 9.5]}}]})
        batch.columns["price"]   # array([3. , 9.5], dtype=float32)
    """

    def __init__(
        self,
        spec: FeatureSpec,
        max_candidates: int = 1000,
        max_instances: int = 64,
        max_request_candidates: int | None = None,
    ) -> None:
        self.spec = spec
        self.max_candidates = max_candidates
        self.max_instances = max_instances
        self.max_request_candidates = max_request_candidates or max_candidates * max_instances
        self.numeric = {f.name for f in spec.features if not f.is_string}
        self.lists = {f.name for f in spec.features if f.kind == "list"}
        self.inputs = (MODULE, *spec.feature_names)
        self.known = frozenset(self.inputs)
        self.id_key = spec.roles.get("item_id")
        self.default_module = spec.modules[0] if len(spec.modules) == 1 else None
        self.features = frozenset(spec.feature_names)
        MISSING_FEATURES.declare(spec.feature_names)

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.spec.task_names

    def parse(self, body: Any) -> ParsedBatch:
        """Parse a decoded ``{"instances": [...], "parameters": {...}}`` body."""
        if not isinstance(body, Mapping):
            raise RequestError(f"the request body must be a JSON object with 'instances', got {_kind(body)}")
        unknown = set(body) - {"instances", "parameters"}
        if unknown:
            raise RequestError(f"unknown top-level field(s) {names_of(unknown)}: expected 'instances' and 'parameters'")
        instances = body.get("instances")
        if not isinstance(instances, list) or not instances:
            raise RequestError("'instances' must be a non-empty list of ranking requests")
        self._check_instance_count(instances)
        top_k = self._top_k(body.get("parameters"))
        self._check_request_total(instances)
        parts = [self._parse_instance(instance, f"instances[{i}]") for i, instance in enumerate(instances)]
        for _, _, absent in parts:
            MISSING_FEATURES.add(absent)
        columns = {key: np.concatenate([part[key] for part, _, _ in parts]) for key in self.inputs}
        sizes = [len(part[MODULE]) for part, _, _ in parts]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return ParsedBatch(columns=columns, offsets=offsets, ids=[ids for _, ids, _ in parts], top_k=top_k)

    def parse_single(self, instance: Mapping[str, Any], where: str) -> ParsedBatch:
        """One instance alone (a KServe v2 request's tensors), under the same limits; messages start with ``where``."""
        self._check_request_total([instance])
        columns, ids, absent = self._parse_instance(instance, where)
        MISSING_FEATURES.add(absent)
        return ParsedBatch(columns=columns, offsets=np.array([0, len(columns[MODULE])], dtype=np.int64), ids=[ids])

    def check_limits(self, body: Any) -> None:
        """Refuse, from the counts alone, a body over the request limits: instances, candidates per instance and
        in total (``ranker serve --feature-store`` checks them before it looks any feature up).

        A body of another shape passes: :meth:`parse` names its problem.
        """
        instances = body.get("instances") if isinstance(body, Mapping) else None
        if not isinstance(instances, list):
            return
        self._check_instance_count(instances)
        self._check_request_total(instances)
        for index, instance in enumerate(instances):
            self._check_claimed_count(instance, f"instances[{index}]")

    def check_single_limits(self, instance: Mapping[str, Any], where: str) -> None:
        """:meth:`check_limits` for the one instance of :meth:`parse_single` (messages start with ``where``)."""
        self._check_request_total([instance])
        self._check_claimed_count(instance, where)

    def parse_instance(self, instance: Any, where: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """The model columns of one instance, and its candidate ids when the candidates carry them."""
        columns, ids, _ = self._parse_instance(instance, where)
        return columns, ids

    def _parse_instance(
        self, instance: Any, where: str
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, frozenset[str]]:
        """:meth:`parse_instance`, and the model's features that neither the context nor the candidates have
        (scored as missing; counted once the whole request has parsed)."""
        if not isinstance(instance, Mapping):
            raise RequestError(f"{where} must be an object with 'context' and 'candidates', got {_kind(instance)}")
        unknown = set(instance) - {"context", "candidates"}
        if unknown:
            raise RequestError(f"{where} has unknown field(s) {names_of(unknown)}: expected 'context' and 'candidates'")
        context = instance.get("context", {})
        if not isinstance(context, Mapping):
            raise RequestError(f"{where}.context must be an object, got {_kind(context)}")
        candidates, count = self._candidate_columns(instance.get("candidates"), f"{where}.candidates")
        self._check_keys(context, f"{where}.context")
        both = set(context) & set(candidates)
        if both:
            raise RequestError(
                f"{where}: {sorted(both)} given both in the context and in the candidates; send each key in one place"
            )
        if MODULE in candidates:
            candidates = {**candidates, MODULE: self._modules(candidates[MODULE], f"{where}.candidates.{MODULE}")}
        else:
            context = {**context, MODULE: self._modules([context.get(MODULE)], f"{where}.context.{MODULE}", False)[0]}
        columns: dict[str, np.ndarray] = {}
        for key in self.inputs:
            if key in candidates:
                columns[key] = self._column(key, candidates[key], f"{where}.candidates.{key}")
            else:
                columns[key] = np.repeat(self._column(key, [context.get(key)], f"{where}.context.{key}", False), count)
        ids = columns[self.id_key] if self.id_key in candidates else None
        return columns, ids, self.features.difference(context, candidates)

    def _modules(self, values: Sequence[Any], where: str, indexed: bool = True) -> list[Any]:
        """Module names with a missing one (``null``) replaced by the spec's only module; else an error."""
        if None not in values:
            return list(values)
        if self.default_module is None:
            index = list(values).index(None)
            raise RequestError(
                f"{_at(where, index, indexed)} is required (absent or null; the model knows several modules)"
            )
        return [self.default_module if value is None else value for value in values]

    def _check_instance_count(self, instances: list) -> None:
        if len(instances) > self.max_instances:
            raise RequestError(
                f"'instances' holds {len(instances)} requests, more than the maximum {self.max_instances}"
            )

    def _check_claimed_count(self, instance: Any, where: str) -> None:
        """Refuse an instance that says it has more candidates than the maximum (an empty one is left to the parser)."""
        count = _claimed_count(instance)
        if count > self.max_candidates:
            self._check_count(count, f"{where}.candidates")

    def _check_request_total(self, instances: list) -> None:
        """Refuse, before building any column, a request whose instances hold too many candidates together."""
        total = sum(map(_claimed_count, instances))
        if total > self.max_request_candidates:
            raise TooManyCandidatesError(
                f"the request holds {total} candidates in total, more than the maximum "
                f"{self.max_request_candidates} per request "
                "(--max-request-candidates, RANKER_MAX_REQUEST_CANDIDATES); split it"
            )

    def _top_k(self, parameters: Any) -> int | None:
        if parameters is None:
            return None
        if not isinstance(parameters, Mapping):
            raise RequestError(f"'parameters' must be an object, got {_kind(parameters)}")
        unknown = set(parameters) - set(KNOWN_PARAMETERS)
        if unknown:
            raise RequestError(f"unknown parameter(s) {names_of(unknown)}: known are {list(KNOWN_PARAMETERS)}")
        top_k = parameters.get("top_k")
        if top_k is None:
            return None
        if type(top_k) is not int or top_k < 1:
            raise RequestError(f"parameters.top_k must be a positive integer, got {top_k!r}")
        return top_k

    def _candidate_columns(self, candidates: Any, where: str) -> tuple[Mapping[str, Any], int]:
        """Candidates as ``{key: list of values}`` and their count, from rows or columns."""
        if isinstance(candidates, Mapping):
            columns = candidates
            count = column_count(columns, where)
        else:
            if isinstance(candidates, list):
                self._check_count(len(candidates), where)  # before each row is looked at
            check_candidates(candidates, where)
            count = len(candidates)
            keys = set().union(*candidates)
            self._check_keys(keys, where)
            columns = _transpose(candidates, keys)
        self._check_count(count, where)
        self._check_keys(columns, where)
        return columns, count

    def _check_count(self, count: int, where: str) -> None:
        if count == 0:
            raise RequestError(empty_candidates(where))
        if count > self.max_candidates:
            raise RequestError(f"{where} holds {count} candidates, more than the maximum {self.max_candidates}")

    def _check_keys(self, keys: Any, where: str) -> None:
        unknown = set(keys) - self.known
        if unknown:
            raise RequestError(
                f"{where} has unknown feature(s) {names_of(unknown)}; the model takes {MODULE} and "
                f"{', '.join(self.spec.feature_names)}"
            )

    def _column(self, key: str, values: list, where: str, indexed: bool = True) -> np.ndarray:
        if key in self.numeric:
            return numeric_column(values, where, indexed)
        return string_column(values, where, joined=key in self.lists, indexed=indexed)


class TypedBodyDecoder:
    """Decodes a JSON ranking request with the spec's value types checked in C while decoding (msgspec).

    Why: the per-value type checks of :func:`numeric_column` and the JSON decoding
    were a third of the server's CPU time per 1,000-candidate request. Candidates,
    columns or rows, are decoded against one typed field per feature (numbers or
    null; strings, integer ids or null; for list features also lists of strings).
    Rows are turned into columns in C (a key a row lacks is null there, as the
    parser's own transpose does), and the numeric columns come out as float64
    arrays (null: NaN), which the parser takes like the feature store's columns.
    The context and the parameters are decoded untyped and checked by the parser
    as always.

    A body whose types or shape the typed decoder refuses is decoded again untyped
    (orjson), so :meth:`RequestParser.parse` names the problem as it always has;
    invalid JSON raises ``orjson.JSONDecodeError``::

        decoder = TypedBodyDecoder(spec)
        batch = parser.parse(decoder.decode(body))
    """

    def __init__(self, spec: FeatureSpec) -> None:
        names = (MODULE, *spec.feature_names)
        numeric = {f.name for f in spec.features if not f.is_string}
        lists = {f.name for f in spec.features if f.kind == "list"}
        value_types = {name: _value_type(name in numeric, name in lists) for name in names}
        # Field names need not be identifiers: each is a generated attribute renamed to the feature's name.
        attributes = {f"f{index}": name for index, name in enumerate(names)}

        def candidates(struct_name: str, column: bool) -> type:
            fields = [
                (attr, (list[value_types[name]] if column else value_types[name]) | msgspec.UnsetType, msgspec.UNSET)
                for attr, name in attributes.items()
            ]
            return msgspec.defstruct(struct_name, fields, rename=attributes, forbid_unknown_fields=True)

        rows_or_columns = list[candidates("Row", False)] | candidates("Columns", True)
        instance = msgspec.defstruct(
            "Instance", [("candidates", rows_or_columns), ("context", dict[str, Any], {})], forbid_unknown_fields=True
        )
        body = msgspec.defstruct(
            "Body",
            [("instances", list[instance]), ("parameters", dict[str, Any] | None, None)],
            forbid_unknown_fields=True,
        )
        self._decoder = msgspec.json.Decoder(body)
        self._columns = [(attr, name, name in numeric) for attr, name in attributes.items()]

    def decode(self, body: bytes | bytearray | str) -> Any:
        """The body as the parser takes it: typed, or untyped when the types refuse it."""
        try:
            decoded = self._decoder.decode(body)
        except (msgspec.MsgspecError, RecursionError):  # msgspec recurses into ``dict[str, Any]`` without a limit
            return orjson.loads(body)  # orjson stops at depth 1024 with a JSONDecodeError
        instances = [
            {"context": instance.context, "candidates": self._candidates(instance.candidates)}
            for instance in decoded.instances
        ]
        return {"instances": instances, "parameters": decoded.parameters}

    def _candidates(self, candidates: Any) -> Any:
        if isinstance(candidates, list):
            return self._row_columns(candidates) if candidates else candidates
        columns = {}
        for attr, name, numeric in self._columns:
            values = getattr(candidates, attr)
            if values is not msgspec.UNSET:
                columns[name] = np.array(values, dtype=np.float64) if numeric else values
        return columns

    def _row_columns(self, rows: list) -> Any:
        """Typed rows as columns; a key that a row lacks is null in that row's place, one no row has is absent."""
        columns = {}
        transposed = zip(*map(msgspec.structs.astuple, rows), strict=True)  # every row has every field (UNSET: absent)
        for (_, name, numeric), values in zip(self._columns, transposed, strict=True):
            if numeric and (array := _float_array(values)) is not None:
                columns[name] = array
                continue
            if msgspec.UNSET in values:
                if all(value is msgspec.UNSET for value in values):
                    continue
                values = [None if value is msgspec.UNSET else value for value in values]
            columns[name] = np.array(values, dtype=np.float64) if numeric else list(values)
        return columns or [{} for _ in rows]  # rows without a key: as sent, the parser fills them from the context


def _float_array(values: tuple) -> np.ndarray | None:
    """Typed numbers (null: NaN) as float64, or None when a row lacks the key (UNSET cannot be a float).

    Asking NumPy first, instead of searching every column for UNSET, saves about a quarter of turning
    1,000 rows into columns: most rows have every numeric key.
    """
    try:
        return np.array(values, dtype=np.float64)
    except TypeError:
        return None


# The integer ids the typed decoder takes: int64 (msgspec's bounds stop there). Any other is decoded untyped, by
# orjson, which takes one up to 2**64 - 1 as an id, one below -2**63 as a float (a message), and refuses the rest.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


def _value_type(numeric: bool, joined: bool) -> Any:
    """The typed decoder's type of one candidate value (what :func:`numeric_column` and :func:`string_column`
    take from JSON)."""
    if numeric:
        return float | None
    return str | list[str] | None if joined else str | Int64 | None


def numeric_column(values: Sequence[Any], where: str, indexed: bool = True) -> np.ndarray:
    """JSON numbers (or a NumPy number column) as float32, ``null`` as NaN; anything else names the first bad index.

    >>> numeric_column([1, 2.5, None], "price")
    array([1. , 2.5, nan], dtype=float32)
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":  # a NumPy column (the feature store's)
        return _finite_float32(values.astype(np.float64, copy=False), values, where, indexed)
    types = set(map(type, values))
    if not types <= NUMBER_TYPES:
        index = next(i for i, value in enumerate(values) if type(value) not in NUMBER_TYPES)
        raise RequestError(
            f"{_at(where, index, indexed)}: expected a number or null, got {_kind(values[index])} {values[index]!r}"
        )
    if type(None) in types:
        values = [np.nan if value is None else value for value in values]
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64 (JSON integers have no bound)
        index = next(i for i, value in enumerate(values) if type(value) is int and abs(value) > FLOAT32_MAX)
        raise RequestError(
            f"{_at(where, index, indexed)}: {_short(values[index])} is not a finite float32 number"
        ) from None
    return _finite_float32(array, values, where, indexed)


def _finite_float32(array: np.ndarray, values: Sequence[Any], where: str, indexed: bool) -> np.ndarray:
    """``array`` as float32 (NaN stays: missing), refusing a value float32 cannot hold."""
    too_big = np.abs(array) > FLOAT32_MAX
    if too_big.any():
        index = int(np.argmax(too_big))
        value = values[index].item() if isinstance(values, np.ndarray) else values[index]
        raise RequestError(f"{_at(where, index, indexed)}: {_short(value)} is not a finite float32 number")
    return array.astype(np.float32)


def string_column(values: Sequence[Any], where: str, joined: bool = False, indexed: bool = True) -> np.ndarray:
    """Strings (or integer ids) as an object array, ``null`` as ``""``; list features may send lists.

    >>> string_column(["a", 7, None], "listing_id")
    array(['a', '7', ''], dtype=object)
    """
    column = np.empty(len(values), dtype=object)
    if set(map(type, values)) == {str}:
        column[:] = values
        return column
    for index, value in enumerate(values):
        if type(value) is str:
            column[index] = value
        elif value is None:
            column[index] = ""
        elif type(value) is int and not joined and -(2**63) <= value < 2**64:
            column[index] = str(value)
        elif joined and type(value) is list and all(type(token) is str for token in value):
            column[index] = LIST_SEPARATOR.join(value)
        else:
            expected = "a string, a list of strings or null" if joined else "a string, an integer id or null"
            # JSON decoders read an integer beyond 64 bits as a float (or not at all), so the context and
            # the candidates refuse it alike
            hint = "; send an id beyond 64 bits as a string" if not joined and type(value) in (int, float) else ""
            raise RequestError(
                f"{_at(where, index, indexed)}: expected {expected}, got {_kind(value)} {_short(value)}{hint}"
            )
    return column


def build_response(batch: ParsedBatch, outputs: Mapping[str, np.ndarray], task_names: Sequence[str]) -> dict:
    """``{"predictions": [...]}``: per instance, the score and task probabilities of every candidate.

    Arrays stay NumPy (the JSON encoder writes them natively); ``top_k`` adds
    the best candidates' indices (and ids when the candidates carried them).
    """
    predictions = []
    scores = np.asarray(outputs["score"], dtype=np.float32).reshape(-1)
    tasks = {task: np.asarray(outputs[task], dtype=np.float32).reshape(-1) for task in task_names}
    for index, (start, end) in enumerate(zip(batch.offsets[:-1], batch.offsets[1:], strict=True)):
        score = scores[start:end]
        prediction: dict[str, Any] = {
            "score": score,
            "tasks": {task: values[start:end] for task, values in tasks.items()},
        }
        if batch.top_k is not None:
            order = np.argsort(-score, kind="stable")[: batch.top_k]
            top: dict[str, Any] = {"indices": order}
            ids = batch.ids[index]
            if ids is not None:
                top["ids"] = ids[order].tolist()
            prediction["top_k"] = top
        predictions.append(prediction)
    return {"predictions": predictions}


def _transpose(rows: list[dict], keys: set[str]) -> dict[str, Sequence[Any]]:
    """Rows to columns; a key that a row lacks is ``None`` in that row's place.

    >>> _transpose([{"a": 1, "b": "x"}, {"a": 2}], {"a", "b"})["b"]
    ['x', None]
    """
    order = tuple(keys)
    if len(order) > 1:
        try:  # every row has every key (the usual case): transposed in C, twice as fast
            return dict(zip(order, zip(*map(itemgetter(*order), rows), strict=True), strict=True))
        except KeyError:
            pass
    return {key: [row.get(key) for row in rows] for key in order}


def check_candidates(candidates: Any, where: str) -> None:
    """Refuse candidates that are neither an object (columns) nor a list of objects (rows), absent ones included.

    >>> check_candidates([{"price": 1}, 5], "instances[0].candidates")
    Traceback (most recent call last):
    serving.request.RequestError: instances[0].candidates[1] must be an object, got int
    """
    if isinstance(candidates, Mapping):
        return
    if isinstance(candidates, list):
        if not all(type(row) is dict for row in candidates):
            index = next(i for i, row in enumerate(candidates) if type(row) is not dict)
            raise RequestError(f"{where}[{index}] must be an object, got {_kind(candidates[index])}")
        return
    if candidates is None:
        raise RequestError(
            f"{where} is required (absent or null): the candidates to rank, a list of objects or an object of columns"
        )
    raise RequestError(f"{where} must be a list of objects or an object of columns, got {_kind(candidates)}")


def empty_candidates(where: str) -> str:
    """The message for an instance without candidates (``[]``, ``{}`` or empty columns)."""
    return f"{where} is empty: a ranking request needs at least one candidate"


def column_count(columns: Mapping[str, Any], where: str) -> int:
    """The count of columnar candidates: every column a list (or a one-dimensional NumPy array) of one length.

    >>> column_count({"listing_id": ["l1", "l2"], "price": [1.0]}, "instances[0].candidates")
    Traceback (most recent call last):
    serving.request.RequestError: instances[0].candidates: columns have different lengths {'listing_id': 2, 'price': 1}
    """
    # by name: the typed decoder hands columns over in the model's feature order, not the body's
    lengths = {key: len(values) if _is_column(values) else None for key, values in sorted(columns.items())}
    for key, length in lengths.items():
        if length is None:
            raise RequestError(f"{where}.{key} must be a list (columnar candidates), got {_kind(columns[key])}")
    if len(set(lengths.values())) > 1:
        raise RequestError(f"{where}: columns have different lengths {lengths}")
    return next(iter(lengths.values()), 0)


def _claimed_count(instance: Any) -> int:
    """How many candidates an instance says it has (0 when malformed: :meth:`RequestParser.parse_instance` refuses it).

    >>> _claimed_count({"candidates": {"price": [1, 2, 3]}})
    3
    """
    candidates = instance.get("candidates") if isinstance(instance, Mapping) else None
    if isinstance(candidates, list):
        return len(candidates)
    if isinstance(candidates, Mapping):
        return max((len(values) for values in candidates.values() if _is_column(values)), default=0)
    return 0


def _is_column(values: Any) -> bool:
    """A list (JSON), or a one-dimensional NumPy array (the feature store's columns)."""
    return isinstance(values, list) or (isinstance(values, np.ndarray) and values.ndim == 1)


def _at(where: str, index: int, indexed: bool) -> str:
    return f"{where}[{index}]" if indexed else where


def names_of(unknown: Any, most: int = 10) -> str:
    """Sorted names for a message: at most ``most`` of them, each cut to 64 characters (a body may send millions).

    >>> names_of({"b", "a"}), names_of(map(str, range(12)), most=2)
    ("['a', 'b']", "['0', '1'] and 10 more")
    """
    names = sorted(map(str, unknown))
    shown = str([name if len(name) <= 64 else f"{name[:61]}..." for name in names[:most]])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


def _short(value: Any, most: int = 64) -> str:
    """``repr(value)``, cut to about ``most`` characters."""
    text = repr(value)
    return text if len(text) <= most else f"{text[: most - 3]}..."


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
