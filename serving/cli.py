"""Serve a trained ranker over HTTP (``ranker serve``): KServe v1 and Vertex AI custom-container routes.

Every flag defaults to an environment variable (shown in brackets), so the
same image runs on a Vertex AI endpoint (``AIP_*``), as a KServe
InferenceService and locally::

    ranker serve --model-uri work_dir/latest/model --port 8080
    ranker serve --model-uri models:/mmoe-ranker@champion       # MLflow alias (MLFLOW_TRACKING_URI)
    ranker serve --model-uri gs://bucket/models/run-42/model

Routes, the request format and the bad-input rules: docs/serving.md.
"""

from __future__ import annotations

import argparse
import logging

HELP = "serve a trained ranker over HTTP (Vertex AI and KServe v1 protocol)"

# flag -> ServerConfig field; defaults come from ServerConfig.from_env()
_FLAGS = {
    "--model-uri": ("model_uri", str, "local folder, gs:// folder or models:/<name>@<alias>"),
    "--model-name": ("model_name", str, "the name in /v1/models/<name>"),
    "--port": ("http_port", int, "HTTP port"),
    "--predict-route": ("predict_route", str, "extra predict route (Vertex AI)"),
    "--health-route": ("health_route", str, "extra health route (Vertex AI)"),
    "--max-candidates": ("max_candidates", int, "most candidates in one ranking request"),
    "--max-instances": ("max_instances", int, "most ranking requests (instances) in one HTTP request"),
    "--max-request-candidates": (
        "max_request_candidates",
        int,
        "most candidates in one HTTP request, all instances together; more gets 413",
    ),
    "--max-body-bytes": ("max_body_bytes", int, "largest request body; larger gets 413"),
    "--body-timeout": ("body_timeout_s", float, "seconds a request body may take to arrive; slower gets 408 (0: none)"),
    "--batch-wait-ms": ("batch_wait_ms", float, "with --batching: wait this long for more requests per batch"),
    "--max-batch-candidates": ("max_batch_candidates", int, "most candidates in one batched model call"),
    "--model-threads": ("model_threads", int, "model calls that may run at the same time"),
    "--op-threads": ("op_threads", int, "TensorFlow threads inside one model call (0: one per core)"),
    "--grace-period": ("grace_period_s", int, "seconds to finish in-flight requests on SIGTERM"),
    "--cache-dir": ("cache_dir", str, "where remote models are downloaded (default: a temporary folder)"),
    "--feature-store": ("feature_store", str, "a Feast repo (ranker materialize): requests send ids only"),
    "--feature-cache-seconds": ("feature_cache_seconds", float, "keep looked-up features this long (0: no cache)"),
    "--feature-cache-entries": (
        "feature_cache_entries",
        int,
        "most ids cached per feature view; the one fetched longest ago makes room",
    ),
    "--feature-timeout": ("feature_timeout_s", float, "seconds a feature lookup may take; slower is a 503"),
    "--workers": ("workers", int, "server processes on the port, each with its own copy of the model"),
    "--stall-dump": ("stall_dump_s", float, "an event-loop stop this long dumps every thread's stack (0: off)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from serving.config import ServerConfig

    defaults = ServerConfig.from_env()
    for flag, (field, kind, text) in _FLAGS.items():
        default = getattr(defaults, field)
        env = " or ".join(ServerConfig.env_names(field)[0])
        parser.add_argument(flag, dest=field, type=kind, default=default, help=f"{text} [{env}; now: {default!r}]")
    parser.add_argument(
        "--batching",
        action=argparse.BooleanOptionalAction,
        default=defaults.batching,
        help="merge concurrent requests into one model call [RANKER_BATCHING]",
    )
    parser.add_argument(
        "--gc-freeze",
        action=argparse.BooleanOptionalAction,
        default=defaults.gc_freeze,
        help="keep the start-up heap (TensorFlow, the model) out of full garbage collections [RANKER_GC_FREEZE]",
    )
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        default=defaults.access_log,
        help="no JSON log line per request [RANKER_ACCESS_LOG]",
    )


def main(args: argparse.Namespace) -> int:
    check_flags(args)  # before the server's imports: a bad flag is refused at once
    from serving.config import ServerConfig
    from serving.server import serve

    fields = {field for field, _, _ in _FLAGS.values()} | {"access_log", "batching", "gc_freeze"}
    config = ServerConfig(**{field: getattr(args, field) for field in fields})
    return serve(config, log_level=logging.DEBUG if args.verbose else logging.INFO)


def check_flags(args: argparse.Namespace) -> None:
    """An :class:`InvalidValueError` naming the first flag whose value is out of its range, before anything loads.

    Only a flag can be wrong here: the environment's values were checked when the parser read its defaults.
    """
    from ranker_core.cli_support import InvalidValueError
    from serving.config import value_problem

    for flag, (field, _, _) in _FLAGS.items():
        value = getattr(args, field)
        problem = value_problem(field, value)
        if problem:
            raise InvalidValueError(f"{flag} {value}: {problem}")
