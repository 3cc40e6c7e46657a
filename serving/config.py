"""The server's configuration: one dataclass, filled from flags whose defaults come from the environment.

Every field has an environment variable (the defaults below apply when it is
unset), so the same image is configured by flags locally, by ``env`` in a
KServe InferenceService and by the ``AIP_*`` variables Vertex AI sets::

    config = ServerConfig.from_env()                       # environment only
    config = ServerConfig.from_env(max_candidates=500)     # environment, then overrides
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from serving.model_source import DEFAULT_REGISTERED_MODEL


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """How the prediction server loads its model, listens and guards itself.

    ``predict_route`` and ``health_route`` are served in addition to KServe's
    ``/v1/models/<model_name>:predict`` and ``/v1/models/<model_name>``; Vertex
    AI sets them through ``AIP_PREDICT_ROUTE`` and ``AIP_HEALTH_ROUTE``.
    """

    model_uri: str = ""
    model_name: str = DEFAULT_REGISTERED_MODEL
    http_port: int = 8080
    predict_route: str = "/predict"
    health_route: str = "/health"
    max_candidates: int = 5000
    max_instances: int = 64
    max_request_candidates: int = 20_000
    max_body_bytes: int = 16 * 1024 * 1024
    batching: bool = True
    batch_wait_ms: float = 0.0
    model_threads: int = 2
    op_threads: int = 1
    max_batch_candidates: int = 16384
    grace_period_s: int = 30
    cache_dir: str = ""
    access_log: bool = True

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, then the environment variables of :data:`ENVIRONMENT`, then ``overrides``."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            for name in ENVIRONMENT[field.name]:
                if environ.get(name):
                    values[field.name] = _convert(field.type, environ[name], name)
                    break
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


# field -> environment variables, first set one wins (Vertex AI's AIP_* names where they exist).
ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "model_uri": ("MODEL_URI", "AIP_STORAGE_URI"),
    "model_name": ("MODEL_NAME",),
    "http_port": ("AIP_HTTP_PORT", "PORT"),
    "predict_route": ("AIP_PREDICT_ROUTE",),
    "health_route": ("AIP_HEALTH_ROUTE",),
    "max_candidates": ("RANKER_MAX_CANDIDATES",),
    "max_instances": ("RANKER_MAX_INSTANCES",),
    "max_request_candidates": ("RANKER_MAX_REQUEST_CANDIDATES",),
    "max_body_bytes": ("RANKER_MAX_BODY_BYTES",),
    "batching": ("RANKER_BATCHING",),
    "batch_wait_ms": ("RANKER_BATCH_WAIT_MS",),
    "model_threads": ("RANKER_MODEL_THREADS",),
    "op_threads": ("RANKER_OP_THREADS",),
    "max_batch_candidates": ("RANKER_MAX_BATCH_CANDIDATES",),
    "grace_period_s": ("RANKER_GRACE_PERIOD_S",),
    "cache_dir": ("RANKER_CACHE_DIR",),
    "access_log": ("RANKER_ACCESS_LOG",),
}


def _convert(kind: Any, text: str, name: str) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            if text.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not a valid {kind}") from None
    return text
