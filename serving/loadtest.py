"""An open-loop load tester for prediction endpoints, free of coordinated omission.

Requests are scheduled by *intended* send time (constant, Poisson or bursty
on/off arrivals) and latency is measured from that intended time, so a server
that stalls cannot hide its latency by slowing the sender down. Arrivals that
find ``concurrency`` requests already in flight are not delayed: they are
counted as dropped, and as errors in the error rate::

    config = LoadTestConfig(url="http://localhost:8080/predict", rate=50, duration_s=20)
    payload = synthetic_payload(FeatureSpec.load("model/feature_spec.json"), candidates=1000)
    result = run_load_test(config, payload)
    print(format_summary(result.summary()))

The same values go as KServe v2 (Open Inference Protocol) tensors, JSON or
binary, with :func:`synthetic_request`::

    body, headers = synthetic_request(spec, candidates=1000, body_format="v2-mixed")
    config = LoadTestConfig(url="http://localhost:8080/v2/models/mmoe-ranker/infer", headers=headers)
    result = run_load_test(config, body)

For a server with a feature store (``ranker serve --feature-store REPO``) the request carries ids only,
drawn from those the store holds (:func:`ids_only`)::

    body, headers = synthetic_request(spec, candidates=1000, ids=ids_only("work_dir/latest/feature_repo", spec))

Bursty traffic is Poisson at ``rate`` during ``burst_on_s`` windows and silent
during ``burst_off_s`` windows (mean rate ``rate * on / (on + off)``).

The schedule is generated a chunk at a time as the test goes, so its memory does
not grow with ``rate * duration``; a schedule of more than :data:`MAX_RATE`
arrivals a second is refused (:class:`InvalidSettingError`), since no client could send it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import shlex
import subprocess
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import numpy as np
import orjson

from ranker_core.cli_support import UserError
from ranker_core.schema import LIST_SEPARATOR, MODULE, Feature, FeatureSpec
from ranker_core.serving import MODEL_NAME
from trainer.synthetic import synthetic_values

Arrival = Literal["constant", "poisson", "bursty"]
ARRIVALS: tuple[str, ...] = ("constant", "poisson", "bursty")
# Request bodies that synthetic_request generates: v1 JSON with the candidates as columns or as rows, or KServe v2
# tensors all in JSON, all binary, or the strings in JSON and the numbers binary.
BODY_FORMATS: tuple[str, ...] = ("columns", "rows", "v2", "v2-binary", "v2-mixed")
DROPPED = -1  # status of an arrival refused by the concurrency cap
TRANSPORT_ERROR = 0  # status of a request that got no HTTP answer (timeout, refused connection)
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
# Most arrivals a second, on average over the run, one client's event loop is asked to handle (each one it sends
# or drops costs it a few microseconds: past about 1e5 a second it falls behind its schedule).
MAX_RATE = 1e6
ARRIVAL_CHUNK = 4096  # arrivals generated at a time
ERROR_CHARS = 300  # most characters of a failed request's error text kept


class InvalidSettingError(ValueError):
    """A :class:`LoadTestConfig` field out of range: its name, its value and what it must be.

    >>> str(InvalidSettingError("rate", 0.0, "must be a positive number of requests per second"))
    'rate 0: must be a positive number of requests per second'
    """

    def __init__(self, field: str, value: object, requirement: str) -> None:
        self.field, self.value, self.requirement = field, value, requirement
        self.shown = f"{value:g}" if isinstance(value, float) else str(value)
        super().__init__(f"{field} {self.shown}: {requirement}")


@dataclasses.dataclass(frozen=True)
class LoadTestConfig:
    """One load test: where, how fast, for how long.

    ``duration_s`` and ``max_requests`` bound the measured phase (whichever
    ends first); ``warmup_s`` of traffic at the same rate precedes it and is
    left out of the statistics.
    """

    url: str
    rate: float = 50.0
    arrival: Arrival = "poisson"
    duration_s: float = 30.0
    warmup_s: float = 5.0
    max_requests: int | None = None
    concurrency: int = 64
    timeout_s: float = 10.0
    burst_on_s: float = 1.0
    burst_off_s: float = 1.0
    seed: int = 0
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = _out_of_range(self) or _over_capacity(self)
        if problem:
            raise problem


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _not_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _out_of_range(config: LoadTestConfig) -> InvalidSettingError | None:
    """The first field of ``config`` out of its range, or None."""
    seconds = "must be a positive number of seconds"
    checks = [
        ("arrival", config.arrival in ARRIVALS, f"must be one of {', '.join(ARRIVALS)}"),
        ("rate", _positive(config.rate), "must be a positive number of requests per second"),
        ("duration_s", _positive(config.duration_s), seconds),
        ("warmup_s", _not_negative(config.warmup_s), "must be 0 or a positive number of seconds"),
        ("max_requests", config.max_requests is None or config.max_requests >= 1, "must be at least 1"),
        ("concurrency", config.concurrency >= 1, "must be at least 1"),
        ("timeout_s", _positive(config.timeout_s), seconds),
        ("seed", config.seed >= 0, "must be 0 or positive"),
    ]
    if config.arrival == "bursty":
        checks.append(("burst_on_s", _positive(config.burst_on_s), seconds))
        checks.append(("burst_off_s", _not_negative(config.burst_off_s), "must be 0 or a positive number of seconds"))
    for field, valid, requirement in checks:
        if not valid:
            return InvalidSettingError(field, getattr(config, field), requirement)
    return None


def expected_arrivals(config: LoadTestConfig) -> float:
    """About how many arrivals ``config`` schedules, warm-up included (``max_requests`` bounds the measured ones).

    >>> expected_arrivals(LoadTestConfig(url="x", rate=1e5, duration_s=30, warmup_s=0, max_requests=10))
    10.0
    """
    on_share = config.burst_on_s / (config.burst_on_s + config.burst_off_s) if config.arrival == "bursty" else 1.0
    measured = config.rate * on_share * config.duration_s
    if config.max_requests is not None:
        measured = min(measured, float(config.max_requests))
    return config.rate * on_share * config.warmup_s + measured


def _over_capacity(config: LoadTestConfig) -> InvalidSettingError | None:
    """A rate whose schedule no client could send (over :data:`MAX_RATE` a second on average), or None."""
    seconds = config.warmup_s + config.duration_s
    arrivals = expected_arrivals(config)
    if arrivals <= MAX_RATE * seconds:
        return None
    requirement = (
        f"schedules about {arrivals:.3g} requests in {seconds:g} s, more than one client can send "
        f"(at most {MAX_RATE:g} a second)"
    )
    return InvalidSettingError("rate", config.rate, requirement)


@dataclasses.dataclass(slots=True)
class Sample:
    """One scheduled request: when it was meant to go, how long it took from then, how it ended."""

    intended_s: float
    latency_s: float
    status: int
    warmup: bool
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclasses.dataclass
class LoadTestResult:
    """Every sample of a run and the run's measured window."""

    config: LoadTestConfig
    samples: list[Sample]
    measured_s: float

    def summary(self) -> dict[str, Any]:
        """Counts, error rate, achieved throughput and latency percentiles (ms) of the measured phase.

        Percentiles are over successful (2xx) requests; ``errors`` counts
        non-2xx answers, transport errors and dropped arrivals.
        """
        measured = [sample for sample in self.samples if not sample.warmup]
        ok = np.array([sample.latency_s for sample in measured if sample.ok])
        dropped = sum(sample.status == DROPPED for sample in measured)
        failed = sum(not sample.ok and sample.status != DROPPED for sample in measured)
        statuses: dict[str, int] = {}
        for sample in measured:
            statuses[str(sample.status)] = statuses.get(str(sample.status), 0) + 1
        summary: dict[str, Any] = {
            "url": self.config.url,
            "arrival": self.config.arrival,
            "offered_rps": len(measured) / self.measured_s if self.measured_s else 0.0,
            "achieved_rps": len(ok) / self.measured_s if self.measured_s else 0.0,
            "scheduled": len(measured),
            "ok": len(ok),
            "failed": failed,
            "dropped": dropped,
            "errors": failed + dropped,
            "error_rate": (failed + dropped) / len(measured) if measured else 0.0,
            "statuses": statuses,
            "warmup_requests": len(self.samples) - len(measured),
            "measured_s": self.measured_s,
            "first_error": first_error(measured),
        }
        for percentile in PERCENTILES:
            value = float(np.percentile(ok, percentile) * 1000) if len(ok) else math.nan
            summary[f"p{percentile:g}_ms"] = value
        summary["mean_ms"] = float(ok.mean() * 1000) if len(ok) else math.nan
        summary["max_ms"] = float(ok.max() * 1000) if len(ok) else math.nan
        return summary


def first_error(samples: list[Sample]) -> str:
    """The error text of the first failed request, else of the first dropped arrival; "" when nothing failed."""
    failed = next((sample.error for sample in samples if not sample.ok and sample.status != DROPPED), None)
    if failed is not None:
        return failed
    return next((sample.error for sample in samples if sample.status == DROPPED), "")


def iter_arrivals(config: LoadTestConfig) -> Iterator[float]:
    """Intended send times (seconds from the start), ascending, generated :data:`ARRIVAL_CHUNK` at a time.

    The warm-up's, then the measured phase's until ``duration_s`` or ``max_requests``, whichever comes first.
    """
    end = config.warmup_s + config.duration_s
    measured_left = math.inf if config.max_requests is None else config.max_requests
    for chunk in _arrival_chunks(config):
        for intended in chunk.tolist():
            measured = intended >= config.warmup_s
            if intended >= end or (measured and measured_left == 0):
                return
            measured_left -= measured
            yield intended


def arrival_times(config: LoadTestConfig) -> np.ndarray:
    """All of :func:`iter_arrivals` at once, as an array.

    >>> arrival_times(LoadTestConfig(url="x", rate=2, arrival="constant", duration_s=2, warmup_s=0))
    array([0. , 0.5, 1. , 1.5])
    """
    return np.fromiter(iter_arrivals(config), dtype=np.float64)


def _arrival_chunks(config: LoadTestConfig) -> Iterator[np.ndarray]:
    """The arrival process without end, in ascending chunks; bursty arrivals are Poisson placed in on-windows."""
    if config.arrival == "constant":
        return (np.arange(first, first + ARRIVAL_CHUNK) / config.rate for first in itertools.count(0, ARRIVAL_CHUNK))
    if config.arrival == "bursty":
        return (_in_on_windows(times, config) for times in _poisson_chunks(config))
    return _poisson_chunks(config)


def _poisson_chunks(config: LoadTestConfig) -> Iterator[np.ndarray]:
    """Poisson arrivals at ``config.rate`` without end, in ascending chunks (exponential gaps seeded by the config)."""
    rng = np.random.default_rng(config.seed)
    last = 0.0
    while True:
        times = last + np.cumsum(rng.exponential(1.0 / config.rate, size=ARRIVAL_CHUNK))
        last = float(times[-1])
        yield times


def _in_on_windows(on_time: np.ndarray, config: LoadTestConfig) -> np.ndarray:
    """Times counted in seconds of on-windows as wall-clock times: each ``burst_on_s`` window then ``burst_off_s``."""
    windows, into_window = np.divmod(on_time, config.burst_on_s)
    return windows * (config.burst_on_s + config.burst_off_s) + into_window


def _one_line(text: str) -> str:
    """``text`` on one line, cut to :data:`ERROR_CHARS` characters."""
    return " ".join(text[: 2 * ERROR_CHARS].split())[:ERROR_CHARS]


def _http_error(response: Any, body: bytes) -> str:
    """A non-2xx answer as text: its status, reason and the start of its body."""
    return f"HTTP {response.status} {response.reason}: {body[: 2 * ERROR_CHARS].decode('utf-8', 'replace')}"


async def _send(
    session: Any, config: LoadTestConfig, payload: bytes, intended: float, clock: Callable[[], float]
) -> Sample:
    """Send one request; its sample, with the status and body (or the transport error) when it failed."""
    warmup = intended < config.warmup_s
    try:
        async with session.post(config.url, data=payload) as response:
            body = await response.read()
            status = response.status
            error = "" if 200 <= status < 300 else _http_error(response, body)
    except TimeoutError as failure:  # its text is empty
        status, error = TRANSPORT_ERROR, f"{type(failure).__name__}: no answer within {config.timeout_s:g} s"
    except Exception as failure:  # any transport failure is a result of the test, not a crash of it
        status, error = TRANSPORT_ERROR, f"{type(failure).__name__}: {failure}"
    return Sample(intended, clock() - intended, status, warmup, _one_line(error))


def _client_session(config: LoadTestConfig) -> Any:
    """The HTTP client of a test: ``config``'s headers (JSON by default), timeout and concurrency."""
    import aiohttp  # C-accelerated HTTP parsing: the client steals little CPU from a server on the same host

    headers = {"content-type": "application/json", **config.headers}
    connector = aiohttp.TCPConnector(limit=config.concurrency)
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    return aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout)


async def run_load_test_async(config: LoadTestConfig, payload: bytes) -> LoadTestResult:
    """Run the schedule of :func:`iter_arrivals` against ``config.url``; see :func:`run_load_test`."""
    loop = asyncio.get_running_loop()
    dropped_error = f"dropped: {config.concurrency} requests were in flight"  # one string for every dropped arrival
    samples: list[Sample] = []
    in_flight: set[asyncio.Task] = set()

    def finished(task: asyncio.Task) -> None:
        in_flight.discard(task)
        samples.append(task.result())

    async with _client_session(config) as session:
        started = loop.time()

        def clock() -> float:
            return loop.time() - started

        for intended in iter_arrivals(config):
            delay = intended - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= config.concurrency:
                samples.append(Sample(intended, math.nan, DROPPED, intended < config.warmup_s, dropped_error))
                continue
            task = loop.create_task(_send(session, config, payload, intended, clock))
            in_flight.add(task)
            task.add_done_callback(finished)
        if in_flight:
            await asyncio.wait(set(in_flight))
    samples.sort(key=lambda sample: sample.intended_s)
    return LoadTestResult(config=config, samples=samples, measured_s=_measured_seconds(config, samples))


def _measured_seconds(config: LoadTestConfig, samples: list[Sample]) -> float:
    """The measured phase's length: ``duration_s``, or until the last arrival when ``max_requests`` ended it first."""
    measured = sum(not sample.warmup for sample in samples)
    if config.max_requests is None or measured < config.max_requests:
        return config.duration_s
    return min(config.duration_s, samples[-1].intended_s - config.warmup_s + 1.0 / config.rate)


async def _send_one(config: LoadTestConfig, payload: bytes) -> Sample:
    loop = asyncio.get_running_loop()
    async with _client_session(config) as session:
        started = loop.time()
        return await _send(session, config, payload, 0.0, lambda: loop.time() - started)


def send_one(config: LoadTestConfig, payload: bytes) -> Sample:
    """One request outside any schedule, to ``config.url`` with its headers and timeout: does the endpoint answer?

    ``ranker loadtest`` sends it before the test, so that a wrong URL or a body the server refuses fails at once::

        first = send_one(config, payload)
        first.ok, first.error   # e.g. (False, "HTTP 404 Not Found: ...")
    """
    return asyncio.run(_send_one(config, payload))


def run_load_test(config: LoadTestConfig, payload: bytes) -> LoadTestResult:
    """Run a load test to completion (blocking).

    Example::

        result = run_load_test(LoadTestConfig(url=url, rate=20, duration_s=5, warmup_s=1), payload)
        result.summary()["p99_ms"]
    """
    return asyncio.run(run_load_test_async(config, payload))


def check_budget(summary: Mapping[str, Any], max_p99_ms: float | None, max_error_rate: float | None) -> list[str]:
    """The budgets a run missed, as sentences (empty when it met them all)."""
    missed = []
    if max_p99_ms is not None and math.isnan(summary["p99_ms"]):
        missed.append(f"no p99 latency to hold to the budget of {max_p99_ms:g} ms: no request succeeded")
    elif max_p99_ms is not None and summary["p99_ms"] > max_p99_ms:
        missed.append(f"p99 latency {summary['p99_ms']:.1f} ms exceeds the budget of {max_p99_ms:g} ms")
    if max_error_rate is not None and summary["error_rate"] > max_error_rate:
        missed.append(f"error rate {summary['error_rate']:.4f} exceeds the budget of {max_error_rate:g}")
    return missed


class TokenCommandError(UserError, RuntimeError):
    """``--token-command`` printed no token: it could not start, it failed, or its output was empty."""


def auth_headers(bearer_token: str | None = None, token_command: str | None = None) -> dict[str, str]:
    """An ``Authorization`` header from a token or from a command's output (e.g. ``gcloud auth print-access-token``)."""
    if token_command:
        bearer_token = command_token(token_command)
    return {"authorization": f"Bearer {bearer_token}"} if bearer_token else {}


def command_token(command: str) -> str:
    """What ``command`` prints on stdout, stripped; :class:`TokenCommandError` unless it exits 0 printing something."""
    shown = f"--token-command {command!r}"
    try:
        completed = subprocess.run(shlex.split(command) or [""], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise TokenCommandError(f"{shown}: no such program") from None
    except (OSError, ValueError) as error:  # not executable, unbalanced quotes
        raise TokenCommandError(f"{shown}: {error}") from None
    if completed.returncode != 0:
        stderr = _one_line(completed.stderr)
        printed = f": {stderr}" if stderr else " and printed nothing on stderr"
        raise TokenCommandError(f"{shown}: exited with status {completed.returncode}{printed}")
    token = completed.stdout.strip()
    if not token:
        raise TokenCommandError(f"{shown}: printed no token")
    return token


SYNTHETIC_SEQUENCE_TOKENS = 20  # a behaviour sequence's default length (the dataset spec's history.sequences)


@dataclasses.dataclass(frozen=True)
class IdsOnly:
    """What a generated request carries for a server with a feature store (``ranker serve --feature-store``): the
    features it ``sends`` (the ids and what the store does not keep), and the ids the store ``holds`` per id
    feature, which the request's ids are drawn from (an id feature not in ``holds`` gets random values)::

        ids = ids_only("work_dir/latest/feature_repo", FeatureSpec.load("model"))
        body = synthetic_payload(spec, candidates=1000, ids=ids)   # no stored feature; ids the store holds
    """

    sends: frozenset[str]
    holds: Mapping[str, tuple[str, ...]]


def ids_only(repo: str, spec: FeatureSpec) -> IdsOnly:
    """The :class:`IdsOnly` of the Feast ``repo`` a server reads for the model of ``spec``: a repo that ``ranker
    serve --feature-store`` would refuse, or whose snapshot of the ids cannot be read, is one :class:`UserError`::

        ids = ids_only("work_dir/latest/feature_repo", spec)   # ids.holds["listing_id"][:2]: ('l00001', 'l00002')
    """
    from serving.feature_store import FeatureRepoError, open_online_features

    item_key = spec.roles.get("item_id", "")
    features = open_online_features(repo, item_key, spec.feature_names, cache_seconds=0)
    keys = [key for key in (item_key, spec.roles.get("user_id")) if key]
    try:
        holds = {key: tuple(features.held_ids(key)) for key in keys}
    except FeatureRepoError as error:
        raise UserError(f"--feature-store {repo}: cannot read the ids it holds ({error})") from None
    sends = frozenset([item_key, *features.sent_by_request([MODULE, *spec.feature_names])])
    return IdsOnly(sends=sends, holds={key: ids for key, ids in holds.items() if ids})


def _values(feature: Feature, count: int, rng: np.random.Generator, ids: IdsOnly | None) -> list:
    """``count`` values of ``feature``: ids the store holds when ``ids`` has them, else random ones from the spec."""
    held = ids.holds.get(feature.name) if ids else None
    return rng.choice(held, count).tolist() if held else synthetic_values(feature, count, rng)


def synthetic_payload(
    spec: FeatureSpec, candidates: int, seed: int = 0, columnar: bool = True, ids: IdsOnly | None = None
) -> bytes:
    """A ranking request with ``candidates`` random candidates drawn from the spec's vocabularies and statistics.

    The user (the spec's ``user_id`` role), the module and the user's behaviour sequences go in
    the context (a sequence as ``SYNTHETIC_SEQUENCE_TOKENS`` values of its target feature: a full
    history, so a load test pays for the longest one), every other feature in the candidates,
    as columns or as rows. With ``ids`` (a server with a feature store), only the features it
    sends, and the user and item ids drawn from those the store holds::

        body = synthetic_payload(FeatureSpec.load("model"), candidates=1000)
    """
    rng = np.random.default_rng(seed)
    user_key = spec.roles.get("user_id")
    context: dict[str, Any] = {MODULE: spec.modules[0] if spec.modules else "default"}
    columns: dict[str, list] = {}
    for feature in spec.features:
        if ids and feature.name not in ids.sends:
            continue
        if feature.name == user_key:
            context[feature.name] = _values(feature, 1, rng, ids)[0]
        elif feature.target:
            past = synthetic_values(spec.feature(feature.target), SYNTHETIC_SEQUENCE_TOKENS, rng)
            context[feature.name] = LIST_SEPARATOR.join(past)
        else:
            columns[feature.name] = _values(feature, candidates, rng, ids)
    if not columnar:
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        return orjson.dumps({"instances": [{"context": context, "candidates": rows}]})
    return orjson.dumps({"instances": [{"context": context, "candidates": columns}]})


def synthetic_request(
    spec: FeatureSpec,
    candidates: int,
    body_format: str = "columns",
    seed: int = 0,
    model_name: str = MODEL_NAME,
    ids: IdsOnly | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A generated request in ``body_format`` (one of :data:`BODY_FORMATS`): its body and the headers it needs.

    ``columns`` and ``rows`` are the v1 bodies of :func:`synthetic_payload`. The ``v2`` formats
    carry the same values as KServe v2 tensors for ``POST /v2/models/<model_name>/infer`` (context
    values as tensors of shape ``[1]``, candidates' as ``[candidates]``), written by KServe's own
    client: ``v2`` all JSON; ``v2-binary`` every tensor as binary data; ``v2-mixed`` the strings as
    JSON and the numbers as binary FP32, the body the server reads fastest (docs/benchmarks.md).
    Binary bodies ask for binary outputs and send ``Inference-Header-Content-Length``. With ``ids``
    (:func:`ids_only`), the request of a server with a feature store, in any format::

        body, headers = synthetic_request(FeatureSpec.load("model"), 1000, "v2-mixed")
    """
    if body_format not in BODY_FORMATS:
        raise ValueError(f"body_format must be one of {', '.join(BODY_FORMATS)}, got {body_format!r}")
    body = synthetic_payload(spec, candidates, seed, columnar=body_format != "rows", ids=ids)
    if not body_format.startswith("v2"):
        return body, {"content-type": "application/json"}
    from serving.open_inference import HEADER_LENGTH

    tensors, json_length = _v2_request(orjson.loads(body)["instances"][0], spec, body_format, model_name).to_rest()
    if json_length is None:
        return orjson.dumps(tensors), {"content-type": "application/json"}
    return tensors, {"content-type": "application/octet-stream", HEADER_LENGTH: str(json_length)}


def _v2_request(instance: Mapping[str, Any], spec: FeatureSpec, body_format: str, model_name: str) -> Any:
    """A v1 instance's values as a KServe ``InferRequest`` (see :func:`synthetic_request`)."""
    from kserve import InferInput, InferRequest

    from serving.open_inference import BYTES, input_datatypes

    values = {**{name: [value] for name, value in instance["context"].items()}, **instance["candidates"]}
    binary = body_format != "v2"
    inputs = []
    for name, datatype in input_datatypes(spec).items():
        if name in values:
            array = np.array(values[name], dtype=object if datatype == BYTES else np.float32)
            tensor = InferInput(name, [len(array)], datatype)
            tensor.set_data_from_numpy(array, binary_data=binary and (datatype != BYTES or body_format == "v2-binary"))
            inputs.append(tensor)
    parameters = {"binary_data_output": True} if binary else None
    return InferRequest(model_name, inputs, request_id="loadtest", parameters=parameters)
