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

Bursty traffic is Poisson at ``rate`` during ``burst_on_s`` windows and silent
during ``burst_off_s`` windows (mean rate ``rate * on / (on + off)``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import shlex
import subprocess
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import orjson

from ranker_core.schema import LIST_SEPARATOR, MODULE, FeatureSpec
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
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {ARRIVALS}, got {self.arrival!r}")
        if self.rate <= 0 or self.duration_s <= 0 or self.warmup_s < 0 or self.concurrency < 1:
            raise ValueError("rate, duration_s and concurrency must be positive and warmup_s not negative")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError(f"max_requests must be at least 1, got {self.max_requests}")
        if self.arrival == "bursty" and (self.burst_on_s <= 0 or self.burst_off_s < 0):
            raise ValueError("bursty arrivals need burst_on_s > 0 and burst_off_s >= 0")


@dataclasses.dataclass
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
        }
        for percentile in PERCENTILES:
            value = float(np.percentile(ok, percentile) * 1000) if len(ok) else math.nan
            summary[f"p{percentile:g}_ms"] = value
        summary["mean_ms"] = float(ok.mean() * 1000) if len(ok) else math.nan
        summary["max_ms"] = float(ok.max() * 1000) if len(ok) else math.nan
        return summary


def arrival_times(config: LoadTestConfig) -> np.ndarray:
    """Intended send times (seconds from the start) for warm-up plus measured phase, ascending.

    >>> arrival_times(LoadTestConfig(url="x", rate=2, arrival="constant", duration_s=2, warmup_s=0))
    array([0. , 0.5, 1. , 1.5])
    """
    total = config.warmup_s + config.duration_s
    rng = np.random.default_rng(config.seed)
    if config.arrival == "constant":
        times = np.arange(0.0, total, 1.0 / config.rate)
    else:
        expected = int(total * config.rate * 1.5) + 16
        times = np.cumsum(rng.exponential(1.0 / config.rate, size=expected))
        while times[-1] < total:  # extremely unlikely, but never cut the run short
            times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / config.rate, size=expected))])
        times = times[times < total]
        if config.arrival == "bursty":
            period = config.burst_on_s + config.burst_off_s
            times = times[np.mod(times, period) < config.burst_on_s]
    if config.max_requests is not None:
        warmup = times[times < config.warmup_s]
        times = np.concatenate([warmup, times[times >= config.warmup_s][: config.max_requests]])
    return times


async def _send(session: Any, config: LoadTestConfig, payload: bytes, intended: float, clock: Any) -> Sample:
    warmup = intended < config.warmup_s
    try:
        async with session.post(config.url, data=payload) as response:
            body = await response.read()
            status = response.status
            error = "" if 200 <= status < 300 else body[:200].decode("utf-8", "replace")
    except Exception as failure:  # any transport failure is a result of the test, not a crash of it
        status, error = TRANSPORT_ERROR, f"{type(failure).__name__}: {failure}"[:200]
    return Sample(intended, clock() - intended, status, warmup, error)


async def run_load_test_async(config: LoadTestConfig, payload: bytes) -> LoadTestResult:
    """Run the schedule of :func:`arrival_times` against ``config.url``; see :func:`run_load_test`."""
    import aiohttp  # C-accelerated HTTP parsing: the client steals little CPU from a server on the same host

    loop = asyncio.get_running_loop()
    schedule = arrival_times(config)
    headers = {"content-type": "application/json", **config.headers}
    connector = aiohttp.TCPConnector(limit=config.concurrency)
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    samples: list[Sample] = []
    in_flight: set[asyncio.Task] = set()

    def finished(task: asyncio.Task) -> None:
        in_flight.discard(task)
        samples.append(task.result())

    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:
        started = loop.time()

        def clock() -> float:
            return loop.time() - started

        for intended in schedule.tolist():
            delay = intended - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= config.concurrency:
                samples.append(Sample(intended, math.nan, DROPPED, intended < config.warmup_s, "dropped"))
                continue
            task = loop.create_task(_send(session, config, payload, intended, clock))
            in_flight.add(task)
            task.add_done_callback(finished)
        if in_flight:
            await asyncio.wait(set(in_flight))
    measured_s = config.duration_s
    if config.max_requests is not None and len(schedule):
        measured_s = min(config.duration_s, float(schedule[-1]) - config.warmup_s + 1.0 / config.rate)
    samples.sort(key=lambda sample: sample.intended_s)
    return LoadTestResult(config=config, samples=samples, measured_s=measured_s)


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
    if max_p99_ms is not None and not summary["p99_ms"] <= max_p99_ms:
        missed.append(f"p99 latency {summary['p99_ms']:.1f} ms exceeds the budget of {max_p99_ms:g} ms")
    if max_error_rate is not None and summary["error_rate"] > max_error_rate:
        missed.append(f"error rate {summary['error_rate']:.4f} exceeds the budget of {max_error_rate:g}")
    return missed


def auth_headers(bearer_token: str | None = None, token_command: str | None = None) -> dict[str, str]:
    """An ``Authorization`` header from a token or from a command's output (e.g. ``gcloud auth print-access-token``)."""
    if token_command:
        completed = subprocess.run(shlex.split(token_command), capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"token command {token_command!r} failed: {completed.stderr.strip()[:500]}")
        bearer_token = completed.stdout.strip()
    return {"authorization": f"Bearer {bearer_token}"} if bearer_token else {}


SYNTHETIC_SEQUENCE_TOKENS = 20  # a behaviour sequence's default length (the dataset spec's history.sequences)


def synthetic_payload(spec: FeatureSpec, candidates: int, seed: int = 0, columnar: bool = True) -> bytes:
    """A ranking request with ``candidates`` random candidates drawn from the spec's vocabularies and statistics.

    The user (the spec's ``user_id`` role), the module and the user's behaviour sequences go in
    the context (a sequence as ``SYNTHETIC_SEQUENCE_TOKENS`` values of its target feature: a full
    history, so a load test pays for the longest one), every other feature in the candidates,
    as columns or as rows::

        body = synthetic_payload(FeatureSpec.load("model"), candidates=1000)
    """
    rng = np.random.default_rng(seed)
    user_key = spec.roles.get("user_id")
    context: dict[str, Any] = {MODULE: spec.modules[0] if spec.modules else "default"}
    columns: dict[str, list] = {}
    for feature in spec.features:
        if feature.name == user_key:
            context[feature.name] = synthetic_values(feature, 1, rng)[0]
        elif feature.target:
            past = synthetic_values(spec.feature(feature.target), SYNTHETIC_SEQUENCE_TOKENS, rng)
            context[feature.name] = LIST_SEPARATOR.join(past)
        else:
            columns[feature.name] = synthetic_values(feature, candidates, rng)
    if not columnar:
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        return orjson.dumps({"instances": [{"context": context, "candidates": rows}]})
    return orjson.dumps({"instances": [{"context": context, "candidates": columns}]})


def synthetic_request(
    spec: FeatureSpec, candidates: int, body_format: str = "columns", seed: int = 0, model_name: str = MODEL_NAME
) -> tuple[bytes, dict[str, str]]:
    """A generated request in ``body_format`` (one of :data:`BODY_FORMATS`): its body and the headers it needs.

    ``columns`` and ``rows`` are the v1 bodies of :func:`synthetic_payload`. The ``v2`` formats
    carry the same values as KServe v2 tensors for ``POST /v2/models/<model_name>/infer`` (context
    values as tensors of shape ``[1]``, candidates' as ``[candidates]``), written by KServe's own
    client: ``v2`` all JSON; ``v2-binary`` every tensor as binary data; ``v2-mixed`` the strings as
    JSON and the numbers as binary FP32, the body the server reads fastest (docs/benchmarks.md).
    Binary bodies ask for binary outputs and send ``Inference-Header-Content-Length``::

        body, headers = synthetic_request(FeatureSpec.load("model"), 1000, "v2-mixed")
    """
    if body_format not in BODY_FORMATS:
        raise ValueError(f"body_format must be one of {', '.join(BODY_FORMATS)}, got {body_format!r}")
    body = synthetic_payload(spec, candidates, seed, columnar=body_format != "rows")
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
