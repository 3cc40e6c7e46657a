"""The server's configuration, read like every setting: flags > environment > defaults.

Every field has an environment variable (the defaults below apply when it is
unset), so the same image is configured by flags locally, by ``env`` in a
KServe InferenceService and by the ``AIP_*`` variables Vertex AI sets::

    config = ServerConfig.from_env()                       # environment only
    config = ServerConfig.from_env(max_candidates=500)     # environment, then overrides
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import field_validator

from ranker_core.serving import HEALTH_ROUTE, HTTP_PORT, MODEL_NAME, PREDICT_ROUTE
from ranker_core.settings import Settings, SettingsConfigDict, env_field

STALL_TICK_S = 0.25  # how often the event-loop stall watchdog (serving.stall) re-arms its timer


class ServerConfig(Settings):
    """How the prediction server loads its model, listens and guards itself.

    ``predict_route`` and ``health_route`` are served in addition to KServe's
    ``/v1/models/<model_name>:predict`` and ``/v1/models/<model_name>``; Vertex
    AI sets them through ``AIP_PREDICT_ROUTE`` and ``AIP_HEALTH_ROUTE``.
    Booleans accept 1/0, true/false, yes/no and on/off.
    """

    model_config = SettingsConfigDict(frozen=True)

    model_uri: str = env_field("", "MODEL_URI", "AIP_STORAGE_URI")
    model_name: str = env_field(MODEL_NAME, "MODEL_NAME")
    http_port: int = env_field(HTTP_PORT, "AIP_HTTP_PORT", "PORT")
    predict_route: str = env_field(PREDICT_ROUTE, "AIP_PREDICT_ROUTE")
    health_route: str = env_field(HEALTH_ROUTE, "AIP_HEALTH_ROUTE")
    max_candidates: int = env_field(5000, "RANKER_MAX_CANDIDATES")
    max_instances: int = env_field(64, "RANKER_MAX_INSTANCES")
    max_request_candidates: int = env_field(20_000, "RANKER_MAX_REQUEST_CANDIDATES")
    max_body_bytes: int = env_field(16 * 1024 * 1024, "RANKER_MAX_BODY_BYTES")
    body_timeout_s: float = env_field(30.0, "RANKER_BODY_TIMEOUT_S")  # a body slower to arrive is a 408; 0: no limit
    batching: bool = env_field(True, "RANKER_BATCHING")
    batch_wait_ms: float = env_field(0.0, "RANKER_BATCH_WAIT_MS")
    model_threads: int = env_field(2, "RANKER_MODEL_THREADS")
    op_threads: int = env_field(1, "RANKER_OP_THREADS")
    max_batch_candidates: int = env_field(16384, "RANKER_MAX_BATCH_CANDIDATES")
    grace_period_s: int = env_field(30, "RANKER_GRACE_PERIOD_S")
    cache_dir: str = env_field("", "RANKER_CACHE_DIR")
    access_log: bool = env_field(True, "RANKER_ACCESS_LOG")
    feature_store: str = env_field("", "RANKER_FEATURE_STORE")  # a Feast repo: requests send ids only
    feature_cache_seconds: float = env_field(60.0, "RANKER_FEATURE_CACHE_SECONDS")
    feature_cache_entries: int = env_field(100_000, "RANKER_FEATURE_CACHE_ENTRIES")  # per feature view
    feature_timeout_s: float = env_field(2.0, "RANKER_FEATURE_TIMEOUT_S")  # a slower lookup is a 503
    workers: int = env_field(1, "RANKER_WORKERS")  # server processes on the port (serving.workers)
    stall_dump_s: float = env_field(5.0, "RANKER_STALL_DUMP_S")  # a longer event-loop stop dumps the stacks; 0: off
    gc_freeze: bool = env_field(True, "RANKER_GC_FREEZE")  # start-up heap out of full collections (serving.heap)

    @field_validator("stall_dump_s")
    @classmethod
    def _stall_threshold_above_the_tick(cls, seconds: float) -> float:
        if seconds < 0 or 0 < seconds <= STALL_TICK_S:
            raise ValueError(f"the stall dump threshold must be 0 (off) or more than {STALL_TICK_S} s, got {seconds}")
        return seconds

    @field_validator("body_timeout_s", "feature_timeout_s")
    @classmethod
    def _not_negative(cls, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a timeout is 0 or more seconds, got {seconds}")
        return seconds

    @field_validator("workers")
    @classmethod
    def _at_least_one_worker(cls, workers: int) -> int:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        return workers

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, then the environment variables of each field, then non-``None`` ``overrides``."""
        return cls.load(overrides, environ=environ)
