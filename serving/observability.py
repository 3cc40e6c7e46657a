"""Prometheus metrics, JSON logs and the ASGI middleware that records both and caps the body size.

The metrics are exported at ``/metrics`` (KServe's route, the default
Prometheus registry) beside KServe's own ``request_*_seconds`` histograms::

    ranker_requests_total{route="predict",status="200"}
    ranker_request_latency_seconds_bucket{route="predict",le="0.025"}
    ranker_candidates_per_request_bucket{le="1000.0"}
    ranker_model_batch_candidates_bucket{le="1000.0"}
    ranker_request_missing_features_total{feature="listing_age_days"}

With several worker processes (``--workers``) every worker counts into the
directory ``PROMETHEUS_MULTIPROC_DIR`` that :mod:`serving.workers` made for them,
and :func:`all_processes_metrics` serves ``/metrics``: the sum over the workers,
whichever one answers the scrape.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, exposition
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from serving.heap import flush_gc_pauses

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
_CANDIDATE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000)

REQUESTS = Counter("ranker_requests_total", "HTTP requests by route kind and status code", ["route", "status"])
LATENCY = Histogram(
    "ranker_request_latency_seconds", "HTTP request latency by route kind", ["route"], buckets=_LATENCY_BUCKETS
)
CANDIDATES = Histogram(
    "ranker_candidates_per_request", "candidates in one ranking request (instance)", buckets=_CANDIDATE_BUCKETS
)
MODEL_BATCH = Histogram(
    "ranker_model_batch_candidates",
    "candidates in one model call (across batched requests)",
    buckets=_CANDIDATE_BUCKETS,
)


class MissingFeatureCounts:
    """``ranker_request_missing_features_total{feature}``: ranking requests that left a feature out.

    A ranking request (a v1 instance; a KServe v2 request is one) leaves a feature out when neither its context nor
    any of its candidates has it and the feature store did not add it: the model scores it as missing (NaN, ``""``),
    which is legal, so a caller that forgets a feature shows only here. A value sent as ``null``, or a key that some
    candidate rows have, is sent. :class:`serving.request.RequestParser` calls :meth:`add` once a request has parsed.

    :meth:`add` only tallies the set of features left out (one dictionary update under a lock, about 1 us whatever
    the set); the tally goes into the Prometheus counter on the first :meth:`add` after ``flush_s`` and before every
    scrape of the default registry. Why: one ``Counter.inc`` per feature cost about 0.35 us each, 13 us for a
    1,000-candidate request that sends only the ids (41 features left out), 5% of parsing it. With ``--workers`` a
    worker's last second of requests shows once it serves the next one.

    Example::

        MISSING_FEATURES.declare(["price", "listing_age_days"])   # each series from start-up, at 0
        MISSING_FEATURES.add(frozenset({"listing_age_days"}))
    """

    def __init__(self, flush_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.counter = Counter(
            "ranker_request_missing_features",
            "Ranking requests (instances) that left out a feature the model reads (scored as missing), by feature",
            ["feature"],
            registry=None,  # registered through this object, which flushes the tally before each scrape
        )
        self.flush_s, self.clock = flush_s, clock
        self._pending: collections.Counter[frozenset[str]] = collections.Counter()
        self._lock = threading.Lock()
        self._due = clock() + flush_s

    def declare(self, features: Iterable[str]) -> None:
        """Create each feature's series (at 0), so that a rate over it exists before any request leaves it out."""
        for feature in features:
            self.counter.labels(feature)

    def add(self, absent: frozenset[str]) -> None:
        """Count one ranking request that left out ``absent`` (nothing when it is empty)."""
        if absent:
            with self._lock:
                self._pending[absent] += 1
        if self.clock() >= self._due:
            self.flush()

    def flush(self) -> None:
        """Move the tally into the Prometheus counter."""
        with self._lock:
            pending, self._pending = self._pending, collections.Counter()
            self._due = self.clock() + self.flush_s
        for features, requests in pending.items():
            for feature in features:
                self.counter.labels(feature).inc(requests)

    def describe(self) -> list[Any]:
        return self.counter.describe()

    def collect(self) -> list[Any]:
        self.flush()
        return self.counter.collect()


MISSING_FEATURES = MissingFeatureCounts()
REGISTRY.register(MISSING_FEATURES)

access_logger = logging.getLogger("serving.access")
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode reads it at import


async def all_processes_metrics(request: Request) -> Response:
    """``/metrics`` summed over every process that counts into ``PROMETHEUS_MULTIPROC_DIR``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept"))
    return Response(content=encoder(registry), headers={"content-type": content_type})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra={"fields": {...}}``.

    Cloud Logging and Kubernetes log collectors parse ``severity`` and ``message`` natively.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send every logger (ours, KServe's, uvicorn's) to stderr as JSON lines."""
    import time as _time

    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter()
    formatter.converter = _time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("kserve", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # Python warnings become JSON lines too (logger py.warnings), less KServe's use of a FastAPI response class
    # FastAPI deprecated, which an operator cannot act on and which printed a bare traceback-like line.
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    # KServe's per-request timing lines and uvicorn's access lines are replaced by ours.
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    logging.getLogger("kserve.trace").handlers = []
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


class ObservabilityMiddleware:
    """ASGI middleware: refuses oversized bodies with 413 and bodies slower than ``body_timeout_s`` with 408,
    counts and times every request, logs it as JSON.

    Example::

        app.add_middleware(ObservabilityMiddleware, classify=lambda path: "predict", max_body_bytes=1 << 20)
    """

    def __init__(
        self,
        app: ASGIApp,
        classify: Callable[[str], str],
        max_body_bytes: int,
        access_log: bool = True,
        body_timeout_s: float = 0.0,
    ) -> None:
        self.app = app
        self.classify = classify
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.body_timeout_s = body_timeout_s  # 0: no limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        flush_gc_pauses()  # the collections since the last request, before this one (or this /metrics scrape)
        started = time.perf_counter()
        route = self.classify(scope["path"])
        status = {"code": 500}
        body_read = 0.0

        async def send_recording_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if scope["method"] == "POST":
                coding = _content_coding(scope)
                if coding:  # RFC 9110: a content coding the server does not apply is a 415, not a decode error
                    await _answer(
                        send_recording_status,
                        415,
                        f"Content-Encoding {coding!r} is not supported: send the body uncompressed",
                    )
                    return
                try:
                    async with asyncio.timeout(self.body_timeout_s or None):
                        body = await self._read_body(scope, receive)
                except asyncio.CancelledError:  # the shutdown's grace period ended while the client was still sending
                    await _answer(
                        send_recording_status, 503, "the server is shutting down: retry on another replica", close=True
                    )
                    return
                except TimeoutError:  # a stalled or trickling client would hold its connection and memory
                    await _answer(
                        send_recording_status,
                        408,
                        f"the request body did not arrive within {self.body_timeout_s:g} s (RANKER_BODY_TIMEOUT_S)",
                        close=True,
                    )
                    return
                body_read = time.perf_counter() - started
                if body is None:
                    limit = self.max_body_bytes
                    await _answer(
                        send_recording_status,
                        413,
                        f"request body exceeds the limit of {limit} bytes (RANKER_MAX_BODY_BYTES)",
                        close=True,
                    )
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_recording_status)
        finally:
            elapsed = time.perf_counter() - started
            REQUESTS.labels(route, str(status["code"])).inc()
            LATENCY.labels(route).observe(elapsed)
            if self.access_log:
                access_logger.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status["code"],
                    extra={"fields": _access_fields(scope, status["code"], elapsed, body_read)},
                )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole request body, or None as soon as it exceeds the limit."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _content_coding(scope: Scope) -> str:
    """The request's Content-Encoding other than ``identity`` (empty when the body is not encoded)."""
    for name, value in scope["headers"]:
        if name == b"content-encoding":
            coding = value.decode("latin-1").strip()
            if coding.lower() not in ("", "identity"):
                return coding
    return ""


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the already-read body, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, message: str, close: bool = False) -> None:
    """A JSON error response sent straight from the middleware: ``{"error": message}``.

    ``close`` when the body was not read to its end: the connection cannot carry another request.
    """
    payload = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _access_fields(scope: Scope, status: int, elapsed: float, body_read: float) -> dict[str, Any]:
    """An access line's fields. ``body_read_ms``, part of ``latency_ms``, is the wait for the request body: a slow
    or paused client or network, not the server (the server's own time is the difference)."""
    headers = dict(scope["headers"])
    return {
        "http_method": scope["method"],
        "path": scope["path"],
        "status": status,
        "latency_ms": round(elapsed * 1000, 3),
        "body_read_ms": round(body_read * 1000, 3),
        "request_id": headers.get(b"x-request-id", b"").decode("latin-1"),
        "client": scope["client"][0] if scope.get("client") else "",
    }
