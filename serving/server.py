"""The prediction server: the ranker as a KServe model (v1 and v2 protocols), with Vertex AI's routes.

One process serves, on one port:

==========================================  ==============================================
route                                       what it does
==========================================  ==============================================
``POST /v1/models/<name>:predict``          KServe v1 predict
``GET /v1/models/<name>``                   KServe v1 readiness (503 until the model loads)
``POST $AIP_PREDICT_ROUTE`` (``/predict``)  Vertex AI predict (same body and answer)
``GET $AIP_HEALTH_ROUTE`` (``/health``)     Vertex AI health (= readiness)
``POST /v2/models/<name>/infer``            KServe v2 (Open Inference Protocol) infer: named tensors, JSON or binary
``GET /v2/models/<name>``                   KServe v2 metadata: input tensors (features), outputs (tasks, score),
                                            the served version (the SavedModel's fingerprint)
``GET /v2/models/<name>/ready``             KServe v2 readiness
``.../v2/models/<name>/versions/<v>/...``   the three above for version ``<v>``: 404 for another version
``GET /``, ``GET /v2/health/live``          liveness
``GET /metrics``                            Prometheus metrics
==========================================  ==============================================

::

    serve(ServerConfig.from_env(model_uri="work_dir/model"))   # blocks until SIGTERM / SIGINT

On SIGTERM the server stops accepting connections, finishes the requests in
flight (up to ``grace_period_s``) and exits.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import numpy as np
import orjson
from cloudevents.http import CloudEvent
from cloudevents.sdk.converters.util import has_binary_headers
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from kserve import Model, ModelServer
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from kserve.protocol.dataplane import JSON_HEADERS
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException

from ranker_core.schema import MODULE, FeatureSpec
from serving.batcher import DirectRunner, MicroBatcher, RunnerClosedError
from serving.config import ServerConfig
from serving.model_source import resolve_model_dir
from serving.observability import (
    CANDIDATES,
    ObservabilityMiddleware,
    all_processes_metrics,
    configure_json_logging,
)
from serving.open_inference import (
    FP32,
    HEADER_LENGTH,
    INPUTS,
    SCORE,
    DecodedRequest,
    SchemaError,
    decode_request,
    encode_response,
    input_datatypes,
    json_columns,
    output_plan,
    tensor_metadata,
    tensors_to_instance,
)
from serving.request import (
    ParsedBatch,
    RequestError,
    RequestParser,
    TooManyCandidatesError,
    TypedBodyDecoder,
    build_response,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

CLOUDEVENT_JSON = "application/cloudevents+json"
STRUCTURED_EVENT_KEYS = {
    "specversion",
    "id",
    "source",
    "type",
    "data",
}  # CloudEvents 1.0's required attributes, and the request
# CloudEvents 1.0's context attributes and data members: a structured body with one of them is meant as an event
EVENT_MEMBERS = STRUCTURED_EVENT_KEYS | {"time", "datacontenttype", "dataschema", "subject", "data_base64"}
BINARY_EVENT_HEADERS = ("ce-specversion", "ce-id", "ce-source", "ce-type")  # what a binary event must send
# The content types whose v1 bodies KServe decodes as JSON, less CloudEvents (it unwraps their data).
JSON_BODIES = frozenset(JSON_HEADERS) - {CLOUDEVENT_JSON}


class RequestTooLargeError(InvalidInput):
    """A request over a size limit of the server: answered 413 (see :func:`refused_handler`)."""


class UnprocessableRequestError(InvalidInput):
    """A body that is not a KServe v2 inference request (a field missing or mistyped): answered 422."""


class Ranker(Protocol):
    """What the server needs from a loaded model (``trainer.predict.Ranker`` provides it)."""

    feature_spec: FeatureSpec

    def predict(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class RankerServingModel(Model):
    """The ranker behind KServe's data plane: parses ranking requests, scores, answers.

    Example::

        model = RankerServingModel("mmoe-ranker", load_ranker("work_dir/model"), ServerConfig())
        model.load()
        ModelServer(http_port=8080, enable_grpc=False).start([model])
    """

    def __init__(
        self, name: str, ranker: Ranker, config: ServerConfig, features: Any = None, version: str | None = None
    ) -> None:
        super().__init__(name)
        self.ranker = ranker
        self.config = config
        self.features = features  # serving.feature_store.OnlineFeatures with --feature-store
        self.version = version  # the SavedModel's fingerprint: the v2 responses' model_version
        self.parser = RequestParser(
            ranker.feature_spec,
            max_candidates=config.max_candidates,
            max_instances=config.max_instances,
            max_request_candidates=config.max_request_candidates,
        )
        self.body_decoder = TypedBodyDecoder(ranker.feature_spec)
        self.runner: DirectRunner | MicroBatcher | None = None
        self.input_datatypes = input_datatypes(ranker.feature_spec)
        self.output_names = (*self.parser.task_names, SCORE)

    def load(self) -> bool:
        """Start the model runner and score one batch, so the first request does not pay for tracing."""
        module = self.parser.default_module or (self.ranker.feature_spec.modules or ["default"])[0]
        self.ranker.predict({MODULE: np.full(8, module, dtype=object)})
        config = self.config
        if config.batching:
            self.runner = MicroBatcher(
                self.ranker.predict, config.batch_wait_ms, config.max_batch_candidates, config.model_threads
            )
        else:
            self.runner = DirectRunner(self.ranker.predict, config.model_threads)
        self.ready = True
        return self.ready

    def stop(self) -> None:
        self.ready = False
        if self.runner is not None:
            self.runner.close()

    def get_input_types(self) -> list[dict[str, Any]]:
        """The v2 metadata's inputs, one-dimensional: ``module_name`` and every feature a request sends (with a
        feature store, not the stored ones: a request that sends one is refused)."""
        stored = self.features.stored if self.features is not None else set()
        return tensor_metadata({name: kind for name, kind in self.input_datatypes.items() if name not in stored})

    def get_output_types(self) -> list[dict[str, Any]]:
        """The v2 metadata's outputs: each task's probability and the ranking score, FP32, one per candidate."""
        return tensor_metadata(dict.fromkeys(self.output_names, FP32))

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> ParsedBatch:
        if isinstance(payload, bytes | bytearray | str):  # a body sent without a JSON content type
            payload = self.decode_json(payload)
        if self.features is not None:
            refusing(self.parser.check_limits, payload)  # before any lookup: an oversized body costs the store nothing
            payload = await self._with_stored_features(self.features.fill, payload)
        return observed(refusing(self.parser.parse, payload))

    def decode_json(self, body: bytes | bytearray | str) -> Any:
        """A v1 body decoded with its value types checked (:class:`TypedBodyDecoder`), or, when the types refuse
        it, untyped for the parser to name the problem; invalid JSON is a 400."""
        try:
            return self.body_decoder.decode(body)
        except orjson.JSONDecodeError as error:
            raise InvalidInput(f"the request body is not valid JSON: {error}") from None

    async def infer(self, request: DecodedRequest) -> tuple[bytes, dict[str, str]]:
        """A decoded KServe v2 request scored (batched with concurrent requests): the response and its headers."""
        batch = observed(await self._parse_tensors(request))
        plan = refusing(output_plan, request, self.output_names)
        outputs = await self._score(batch)
        return encode_response(request.id, outputs, plan, self.name, self.version)

    async def _parse_tensors(self, request: DecodedRequest) -> ParsedBatch:
        """The v2 tensors as one instance, parsed by the v1 rules (the online store's features added)."""
        instance = refusing(tensors_to_instance, request, self.input_datatypes)
        if self.features is not None:
            refusing(self.parser.check_single_limits, instance, INPUTS)
            instance = json_columns(instance)
            assemble = functools.partial(self.features.assemble, tensors=True, at_least_one=True)
            candidates = await self._with_stored_features(assemble, instance["context"], instance["candidates"])
            instance = {**instance, "candidates": candidates}
        return refusing(self.parser.parse_single, instance, INPUTS)

    async def _with_stored_features(self, join: Callable[..., Any], *args: Any) -> Any:
        """``join(*args)`` (:meth:`OnlineFeatures.fill` of an ids-only body, or ``assemble`` of a v2 request's
        candidates) on a thread: the online store's features added.

        A feature that was also sent is a 400; a store that fails, or takes
        longer than ``feature_timeout_s``, is a 503 with the reason (the lookup
        thread is left to finish on its own: a hung store never holds the request).
        """
        from serving.feature_store import StoreUnavailableError

        timeout = self.config.feature_timeout_s
        try:
            return await asyncio.wait_for(asyncio.to_thread(join, *args), timeout or None)
        except RequestError as error:
            raise InvalidInput(str(error)) from None
        except StoreUnavailableError as error:
            raise ServerNotReady(str(error)) from None
        except TimeoutError:
            raise ServerNotReady(f"the feature store did not answer within {timeout:g} s (--feature-timeout)") from None

    async def predict(self, batch: ParsedBatch, headers: dict[str, str] | None = None) -> dict:
        outputs = await self._score(batch)
        response = build_response(batch, outputs, self.parser.task_names)
        return plain_json(response) if is_cloudevent(headers) else response

    async def _score(self, batch: ParsedBatch) -> dict[str, np.ndarray]:
        assert self.runner is not None, "load() first"
        try:
            return await self.runner.predict(batch.columns)
        except (RunnerClosedError, asyncio.CancelledError):
            # Shutdown: the runner closed, or the grace period ended and the server cancelled the request.
            raise ServerNotReady("the server is shutting down: retry on another replica") from None


def refusing(parse: Callable[..., T], *args: Any) -> T:
    """``parse(*args)``, its :class:`RequestError` answered 400 (413 for too many candidates, 422 not a v2 request)."""
    try:
        return parse(*args)
    except TooManyCandidatesError as error:
        raise RequestTooLargeError(str(error)) from None
    except SchemaError as error:
        raise UnprocessableRequestError(str(error)) from None
    except RequestError as error:
        raise InvalidInput(str(error)) from None


def observed(batch: ParsedBatch) -> ParsedBatch:
    """``batch``, its candidates per instance recorded in the metrics."""
    for count in batch.candidates_per_instance:
        CANDIDATES.observe(count)
    return batch


def is_cloudevent(headers: Mapping[str, str] | None) -> bool:
    """Whether KServe answers this request as a CloudEvent (structured or binary), as its ``DataPlane.encode`` does.

    The CloudEvents SDK encodes the event's data with the standard ``json``
    module, which cannot write NumPy arrays.
    """
    return bool(headers) and (headers.get("content-type") == CLOUDEVENT_JSON or has_binary_headers(headers))


def plain_json(value: Any) -> Any:
    """``value`` with every NumPy array and scalar turned into Python lists and numbers.

    >>> plain_json({"score": np.array([0.5], dtype=np.float32)})
    {'score': [0.5]}
    """
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_json(item) for item in value]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


class UnknownVersionError(Exception):
    """A v2 route named a version of the model that this server does not serve: answered 404."""


REFUSAL_STATUS = {RequestTooLargeError: 413, UnprocessableRequestError: 422, UnknownVersionError: 404}


# Why a request was refused, as its one WARNING log line says; the first kind that matches names it.
REFUSAL_REASONS = (
    (UnknownVersionError, "unknown model version"),
    (InvalidInput, "invalid input"),
    (ModelNotFound, "unknown model"),
    (ServerNotReady, "not ready"),
)


def refusal_reason(error: BaseException | None) -> str | None:
    """The log reason of a refused request's error; ``None`` for an error that is not a refusal.

    >>> refusal_reason(InvalidInput("price[3]: expected a number")), refusal_reason(ValueError())
    ('invalid input', None)
    """
    return next((reason for kind, reason in REFUSAL_REASONS if isinstance(error, kind)), None)


async def refused_handler(_: Request, error: Exception) -> JSONResponse:
    """413 (over a size limit, the limit in the message), 422 (not a v2 request) or 404 (another model version);
    one WARNING line, no traceback."""
    logger.warning("%s: %s", refusal_reason(error), error)
    return JSONResponse(status_code=REFUSAL_STATUS[type(error)], content={"error": str(error)})


async def routing_error_handler(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own answers (no route for the path: 404; not for the method: 405, with ``Allow``) in the
    server's error shape, ``{"error": ...}``, instead of FastAPI's ``{"detail": ...}``."""
    message = f"{error.detail}: {request.method} {request.url.path[:200]}"
    return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)


class VersionConvertor(PathConvertor):
    """A path parameter that takes any text, slashes and newlines too (Starlette's ``path`` stops at a newline,
    which would leave such a version to KServe's route and its 501)."""

    regex = r"[\s\S]*"


register_url_convertor("version", VersionConvertor())


VERSIONED_V2_ROUTE = "/v2/models/{model_name}/versions/{model_version:version}"
POST_ONLY_ROUTES = ("/v1/models/{model_name}:predict", f"{VERSIONED_V2_ROUTE}/infer")
"""Predict routes that a GET would reach as another route (v1 model status, v2 versioned metadata): a 405 instead."""


async def post_only() -> JSONResponse:
    """A GET on a predict route: 405, as FastAPI answers where no other route takes the path."""
    return JSONResponse({"error": "this route takes POST"}, status_code=405, headers={"allow": "POST"})


def v2_routes(dataplane: Any) -> dict[str, tuple[str, Callable[..., Any]]]:
    """The v2 routes this server answers itself, path -> (method, endpoint), in the order to register them.

    Infer is decoded and encoded by :mod:`serving.open_inference`, not by KServe's
    route: KServe 0.21's converts every tensor value to and from Python
    (``InferRequest.from_bytes``, ``InferResponse.to_rest``, FastAPI's
    ``jsonable_encoder``); docs/benchmarks.md measures both. Metadata lists the
    served version (the SavedModel's fingerprint), and the ``versions/<version>``
    routes, which KServe answers 501, take that version (a version with slashes
    may be sent as it is or percent-encoded) and answer 404 for any other.
    """

    def served(model_name: str, version: str | None) -> RankerServingModel:
        model: RankerServingModel = dataplane.get_model_from_registry(model_name)  # ModelNotFound: 404
        if version is not None and version != model.version:
            raise UnknownVersionError(
                f"model {model_name!r} has no version {version!r}; this server serves version {model.version!r}"
            )
        return model

    async def infer(model_name: str, request: Request, model_version: str | None = None) -> Response:
        model = served(model_name, model_version)
        if not await dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        decoded = refusing(decode_request, await request.body(), request.headers.get(HEADER_LENGTH))
        body, headers = await model.infer(decoded)
        return Response(body, headers=headers)

    async def ready(model_name: str, model_version: str) -> dict[str, Any]:
        served(model_name, model_version)
        if not await dataplane.model_ready(model_name):
            raise ModelNotReady(model_name)
        return {"name": model_name, "ready": True}

    async def metadata(model_name: str, model_version: str | None = None) -> dict[str, Any]:
        model = served(model_name, model_version)
        versions = {"versions": [model.version]} if model.version else {}
        return {**await dataplane.model_metadata(model_name), **versions}

    # Routes without a version get endpoints without the parameter: FastAPI would otherwise read it from the query.
    async def infer_latest(model_name: str, request: Request) -> Response:
        return await infer(model_name, request)

    async def metadata_latest(model_name: str) -> dict[str, Any]:
        return await metadata(model_name)

    versioned = VERSIONED_V2_ROUTE
    return {
        "/v2/models/{model_name}/infer": ("POST", infer_latest),
        "/v2/models/{model_name}": ("GET", metadata_latest),
        f"{versioned}/infer": ("POST", infer),
        f"{versioned}/ready": ("GET", ready),  # before metadata, whose version would swallow "/ready"
        versioned: ("GET", metadata),
    }


class RefusedRequestLogFilter(logging.Filter):
    """KServe logs every refused request with a traceback at ERROR; make it one WARNING line with the reason.

    Refused: invalid input (400), an unknown model route (404), not ready or shutting down (503).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        reason = refusal_reason(error)
        if reason is not None:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info, record.exc_text = f"{reason}: %s", (error,), None, None
        return True


def route_classifier(config: ServerConfig) -> Callable[[str], str]:
    """Path -> a bounded metric label: ``predict`` (v1, v2 and Vertex AI), ``health``, ``metrics`` or ``other``."""
    health = {config.health_route, f"/v1/models/{config.model_name}", "/", "/v2/health/live", "/v2/health/ready"}

    def classify(path: str) -> str:
        if path == config.predict_route or path.endswith((":predict", "/infer")):
            return "predict"
        if path in health:
            return "health"
        return "metrics" if path == "/metrics" else "other"

    return classify


def accept_decoded_cloudevent_data(dataplane: Any) -> None:
    """Let KServe's dataplane take a binary CloudEvent whose data the SDK already decoded, and a structured
    event without the optional ``time`` attribute.

    With a ``ce-contenttype`` header the CloudEvents SDK unmarshals the body
    (to a dict or a str) and KServe 0.x then calls ``.decode()`` on it: a 500.
    Data that is not bytes is passed on as it is, so the parser refuses what it must with a 400.
    KServe 0.x takes a JSON body for a structured event only when it has ``time``, which CloudEvents 1.0
    makes optional; its response merge (``CE_MERGE``) also deletes ``time``, so a missing one is set.
    """
    decode_cloudevent = dataplane.decode_cloudevent

    def decode(body: Any) -> tuple[Any, dict]:
        if isinstance(body, CloudEvent) and not isinstance(body.get_data(), bytes):
            return body.get_data(), dict(body.get_attributes())
        if isinstance(body, dict) and "time" not in body and body.keys() >= STRUCTURED_EVENT_KEYS:
            attributes = {key: value for key, value in body.items() if key != "data"}
            return body["data"], {**attributes, "time": datetime.datetime.now(datetime.UTC).isoformat()}
        return decode_cloudevent(body)

    dataplane.decode_cloudevent = decode


def decode_v1_json_typed(dataplane: Any, model: RankerServingModel) -> None:
    """Let the model's typed decoder (:class:`TypedBodyDecoder`) decode the v1 JSON bodies that KServe's
    dataplane would decode untyped with orjson, before the parser checks the values again one by one in Python.

    CloudEvents, the v2 protocol and bodies that are not JSON keep KServe's decoding.
    """
    decode = dataplane.decode

    def decode_typed(body: Any, headers: dict[str, str] | None = None, **options: Any) -> tuple[Any, dict]:
        content_type = (headers or {}).get("content-type")
        json_body = content_type is None or content_type in JSON_BODIES  # KServe decodes a body without one too
        if type(body) is bytes and not options and json_body and not is_cloudevent(headers):
            try:
                return model.body_decoder.decode(body), {}
            except orjson.JSONDecodeError:
                pass  # not JSON: KServe refuses it with its own message, as before
        return decode(body, headers, **options)

    dataplane.decode = decode_typed


def refuse_incomplete_cloudevents(dataplane: Any) -> None:
    """Answer an incomplete CloudEvent with a 400 naming what it lacks, rather than as a plain request.

    Binary mode: a v1 request with any ``ce-`` header (and not sent as ``application/cloudevents+json``) is an
    event, and needs all of ``ce-specversion``, ``ce-id``, ``ce-source`` and ``ce-type``; KServe took one that
    lacked any as a plain request (a 200). Structured mode: a body sent as ``application/cloudevents+json`` with
    a CloudEvents member (``specversion``, ``id``, ``data``, ...) that is not a complete event (``specversion``,
    ``id``, ``source``, ``type`` and ``data``), which the parser refused for its "unknown top-level field(s)".
    The request itself sent as ``application/cloudevents+json`` (no member) is still a plain request.
    """
    decode = dataplane.decode

    def decode_event(body: Any, headers: dict[str, str] | None = None, **options: Any) -> tuple[Any, dict]:
        if options:  # a KServe v2 request: no CloudEvents
            return decode(body, headers, **options)
        headers = headers or {}
        structured = headers.get("content-type") == CLOUDEVENT_JSON
        if not structured and any(name.startswith("ce-") for name in headers):
            missing = [name for name in BINARY_EVENT_HEADERS if name not in headers]
            if missing:
                raise InvalidInput(
                    f"incomplete CloudEvent: a binary-mode event sends the {', '.join(BINARY_EVENT_HEADERS)} "
                    f"headers; this one lacks {', '.join(missing)}"
                )
        decoded, attributes = decode(body, headers)
        if structured and not attributes and isinstance(decoded, dict) and EVENT_MEMBERS & decoded.keys():
            missing = [key for key in ("specversion", "id", "source", "type", "data") if key not in decoded]
            raise InvalidInput(
                f"incomplete CloudEvent: a structured event ({CLOUDEVENT_JSON}) has specversion, id, source, type "
                f"and data (the request); this one lacks {', '.join(missing)}"
            )
        return decoded, attributes

    dataplane.decode = decode_event


def install_routes(app: Any, dataplane: Any, config: ServerConfig, model: RankerServingModel) -> None:
    """Add the Vertex AI routes, the v2 infer route and the observability middleware to KServe's FastAPI app.

    Called before KServe registers its own routes, so ours answer first where the paths are the same.
    """
    from kserve.protocol.rest.v1_endpoints import V1Endpoints

    accept_decoded_cloudevent_data(dataplane)
    decode_v1_json_typed(dataplane, model)
    refuse_incomplete_cloudevents(dataplane)
    endpoints = V1Endpoints(dataplane)
    name = config.model_name

    async def vertex_predict(request: Request) -> Any:
        return await endpoints.predict(name, request)

    async def vertex_health() -> dict:
        return await endpoints.model_ready(name)

    app.add_api_route(config.predict_route, vertex_predict, methods=["POST"], response_model=None)
    app.add_api_route(config.health_route, vertex_health, methods=["GET"])
    for path in POST_ONLY_ROUTES:
        app.add_api_route(path, post_only, methods=["GET"], include_in_schema=False)
    for path, (method, endpoint) in v2_routes(dataplane).items():
        app.add_api_route(path, endpoint, methods=[method], response_model=None)
    for error in REFUSAL_STATUS:
        app.add_exception_handler(error, refused_handler)
    app.add_exception_handler(StarletteHTTPException, routing_error_handler)
    app.add_middleware(
        ObservabilityMiddleware,
        classify=route_classifier(config),
        max_body_bytes=config.max_body_bytes,
        access_log=config.access_log,
        body_timeout_s=config.body_timeout_s,
    )
    app.router.add_event_handler("startup", lambda: prepare_heap(config))
    if config.stall_dump_s > 0:
        from serving.stall import LoopStallWatchdog

        watchdog = LoopStallWatchdog(config.stall_dump_s)
        app.router.add_event_handler("startup", watchdog.start)
        app.router.add_event_handler("shutdown", watchdog.stop)


def prepare_heap(config: ServerConfig) -> None:
    """At start-up, the model loaded and warmed up: time every collection; freeze the heap unless told not to."""
    from serving.heap import freeze_startup_heap, record_gc_pauses

    record_gc_pauses()
    if config.gc_freeze:
        logger.info("froze %d start-up objects out of the garbage collector's full passes", freeze_startup_heap())


class ListeningModelServer(ModelServer):
    """KServe's model server on a listening socket that another process bound (``listen_fd``, a worker's
    under :mod:`serving.workers`); with ``None`` it binds ``http_port`` itself, as KServe does."""

    def __init__(self, listen_fd: int | None, **options: Any) -> None:
        super().__init__(**options)
        self.listen_fd = listen_fd

    def setup_event_loop(self) -> None:
        # KServe's start() builds uvicorn's config, then calls this before it serves: the place to hand it the socket.
        if self.listen_fd is not None:
            self._rest_server.config.fd = self.listen_fd
        super().setup_event_loop()

    def stop(self, sig: int) -> None:
        # KServe's signal handler stops its gRPC and multi-process servers, not the one REST server, which
        # stops on uvicorn's own handler: a SIGTERM after KServe installs its handler and before uvicorn
        # installs its own (while KServe builds the app) was lost, and the server served on. Tell uvicorn.
        if self._rest_server is not None:
            self._rest_server._server.should_exit = True
        super().stop(sig)


def load_model(config: ServerConfig) -> RankerServingModel:
    """Resolve ``config.model_uri``, load the exported ranker and wrap it for KServe."""
    from trainer.digest import saved_model_fingerprint
    from trainer.predict import load_ranker

    model_dir = resolve_model_dir(config.model_uri, config.cache_dir or None)
    logger.info("loading the ranker from %s", model_dir)
    ranker = load_ranker(model_dir)
    features = load_features(config, ranker.feature_spec)
    version = saved_model_fingerprint(str(model_dir)) or None
    model = RankerServingModel(config.model_name, ranker, config, features, version)
    model.load()
    return model


def load_features(config: ServerConfig, spec: FeatureSpec) -> Any:
    """The online store's features for ids-only requests, when ``config.feature_store`` names a Feast repo
    (one that is not a repo ``ranker materialize`` wrote, cannot be read or does not fit the model: a UserError)."""
    if not config.feature_store:
        return None
    from serving.feature_store import open_online_features

    features = open_online_features(
        config.feature_store,
        spec.roles.get("item_id", ""),
        spec.feature_names,
        config.feature_cache_seconds,
        config.feature_cache_entries,
    )
    logger.info(
        "features from %s (model version %s); requests send the ids and %s",
        config.feature_store,
        features.model_version or "?",
        ", ".join(features.sent_by_request([MODULE, *spec.feature_names])),
    )
    return features


def serve(config: ServerConfig, log_level: int = logging.INFO, listen_fd: int | None = None) -> int:
    """Load the model and serve it until SIGTERM/SIGINT (see the module docstring for the routes); the exit code.

    With ``config.workers`` > 1, worker processes serve (:mod:`serving.workers`); each runs this
    function on the listening socket ``listen_fd`` that the first process bound.
    """
    configure_json_logging(log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RefusedRequestLogFilter())
    if config.workers > 1:
        from serving.workers import serve_workers

        return serve_workers(config, log_level)
    from trainer.predict import set_op_threads

    # One thread per call is the latency default: a 1,000-candidate call gains little from splitting
    # its small matmuls, while idle pool threads spinning for work take the cores the event loop needs
    # to parse the next request; concurrency comes from ``model_threads`` calls running side by side.
    set_op_threads(config.op_threads)
    model = load_model(config)
    from kserve.model_server import app

    server = ListeningModelServer(
        listen_fd,
        http_port=config.http_port,
        enable_grpc=False,
        enable_latency_logging=False,
        grace_period=config.grace_period_s,
        workers=1,
    )
    install_routes(app, server.dataplane, config, model)
    if listen_fd is not None:  # one of several workers: KServe's /metrics would report this one only
        app.add_api_route("/metrics", all_processes_metrics, methods=["GET"])
    logger.info(
        "serving %s on port %d (predict %s, health %s)",
        config.model_name,
        config.http_port,
        config.predict_route,
        config.health_route,
    )
    server.start([model])
    return 0
