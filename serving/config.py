"""The server's configuration, read like every setting: flags > environment > defaults.

Every field has an environment variable (the defaults below apply when it is
unset), so the same image is configured by flags locally, by ``env`` in a
KServe InferenceService and by the ``AIP_*`` variables Vertex AI sets::

    config = ServerConfig.from_env()                       # environment only
    config = ServerConfig.from_env(max_candidates=500)     # environment, then overrides

Every numeric field has a range (``RANGES``: at least one thread, a port from 1
to 65535, limits of at least 1, timeouts, grace period and cache sizes of 0 or
more, floats finite) and the extra routes start with ``/``: a value outside is
refused at start-up, before the model loads, in one line naming the field and
the variable it came from (``ServerConfig: model_threads (env
RANKER_MODEL_THREADS): must be at least 1 (got 0)``; ``ranker serve`` names
the flag: ``--model-threads 0: must be at least 1``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ranker_core.serving import HEALTH_ROUTE, HTTP_PORT, MODEL_NAME, PREDICT_ROUTE
from ranker_core.settings import Settings, SettingsConfigDict, env_field

STALL_TICK_S = 0.25  # how often the event-loop stall watchdog (serving.stall) re-arms its timer
MAX_PORT = 65535
# field -> (least, most; None: no bound) of every numeric field; a float must also be finite
RANGES: dict[str, tuple[float, float | None]] = {
    "http_port": (1, MAX_PORT),
    "max_candidates": (1, None),
    "max_instances": (1, None),
    "max_request_candidates": (1, None),
    "max_body_bytes": (1, None),
    "body_timeout_s": (0, None),  # 0: no limit
    "batch_wait_ms": (0, None),
    "model_threads": (1, None),
    "op_threads": (0, None),  # 0: one per core
    "max_batch_candidates": (1, None),
    "grace_period_s": (0, None),
    "feature_cache_seconds": (0, None),  # 0: no cache
    "feature_cache_entries": (0, None),
    "feature_timeout_s": (0, None),  # 0: no limit
    "workers": (1, None),
}
ROUTES = ("predict_route", "health_route")
CHECKED = (*RANGES, "stall_dump_s", *ROUTES)  # the fields value_problem checks


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

    @field_validator(*CHECKED)
    @classmethod
    def _valid(cls, value: Any, info: ValidationInfo) -> Any:
        problem = value_problem(info.field_name, value)
        if problem:  # a custom error: the message has no "Value error, " before it
            raise PydanticCustomError("invalid_setting", problem)
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, then the environment variables of each field, then non-``None`` ``overrides``."""
        return cls.load(overrides, environ=environ)


def value_problem(field: str, value: Any) -> str:
    """What is wrong with a (typed) value of ``field`` (``""``: nothing), for a message that names the field or its
    flag; the ranges are in ``RANGES``, routes must start with ``/``.

    >>> value_problem("model_threads", 0), value_problem("http_port", 99999), value_problem("workers", 2)
    ('must be at least 1', 'must be between 1 and 65535', '')
    """
    if field in ROUTES:
        return "" if str(value).startswith("/") else "must start with '/'"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if field == "stall_dump_s":
        return "" if value == 0 or value > STALL_TICK_S else f"must be 0 (off) or more than {STALL_TICK_S} s"
    least, most = RANGES.get(field, (None, None))
    if most is not None and not least <= value <= most:
        return f"must be between {least:g} and {most:g}"
    if least is not None and value < least:
        return f"must be at least {least:g}"
    return ""
