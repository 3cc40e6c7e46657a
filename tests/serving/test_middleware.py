"""The ASGI middleware in front of every route: answers it gives before the app sees the request."""

from __future__ import annotations

import asyncio
import json
import logging
import warnings

import pytest

from serving.observability import ObservabilityMiddleware, configure_json_logging


async def ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def post(receive, headers: dict[str, str], body_timeout_s: float = 0.0) -> list[dict]:
    """The messages the middleware sends for one POST whose body ``receive`` delivers."""
    sent = []

    async def send(message):
        sent.append(message)

    middleware = ObservabilityMiddleware(
        ok_app, classify=lambda path: "predict", max_body_bytes=1 << 20, access_log=False, body_timeout_s=body_timeout_s
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(middleware(scope, receive, send))
    return sent


def test_a_body_still_arriving_when_the_grace_period_ends_is_a_503():
    """uvicorn cancels the request's task at the end of the grace period, here while the body is read."""

    async def cut_off():
        raise asyncio.CancelledError()

    sent = post(cut_off, {"content-length": "1000"})
    assert sent[0]["status"] == 503 and b"shutting down" in sent[1]["body"]


@pytest.mark.parametrize(("coding", "status"), [("gzip", 415), ("br, gzip", 415), ("identity", 200)])
def test_a_compressed_body_is_a_415_naming_the_content_encoding(coding, status):
    """The body is never read as JSON: a gzip body read as text was a 400 about UTF-8 surrogates."""

    async def body():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    sent = post(body, {"content-encoding": coding, "content-length": "2"})
    assert sent[0]["status"] == status
    if status == 415:
        assert f"Content-Encoding '{coding}' is not supported".encode() in sent[1]["body"]


@pytest.mark.parametrize("trickle", [False, True])
def test_a_body_that_stalls_or_trickles_past_the_body_timeout_is_a_408(trickle):
    """The limit is on the whole body, so a client sending a byte now and then is cut off too."""

    async def slow():
        await asyncio.sleep(0.04 if trickle else 10)
        return {"type": "http.request", "body": b" ", "more_body": True}

    sent = post(slow, {"content-length": "1000"}, body_timeout_s=0.2)
    assert sent[0]["status"] == 408 and b"did not arrive within 0.2 s (RANKER_BODY_TIMEOUT_S)" in sent[1]["body"]


def test_a_body_that_arrives_in_time_reaches_the_app():
    async def prompt():
        await asyncio.sleep(0.01)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    assert post(prompt, {"content-length": "2"}, body_timeout_s=0.2)[0]["status"] == 200


def test_python_warnings_are_json_log_lines_and_kserves_fastapi_deprecation_is_not_shown(capsys):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with warnings.catch_warnings():  # restores the filters configure_json_logging adds
        warnings.simplefilter("always")
        try:
            configure_json_logging()
            warnings.warn("a library's warning", UserWarning, stacklevel=1)
            warnings.warn("ORJSONResponse is deprecated, FastAPI now serializes ...", UserWarning, stacklevel=1)
        finally:
            logging.captureWarnings(False)
            root.handlers, root.level = handlers, level
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(entry["logger"], entry["severity"]) for entry in entries] == [("py.warnings", "WARNING")]
    assert "UserWarning: a library's warning" in entries[0]["message"]
