"""Incomplete CloudEvents are a 400 naming what they lack (docs/serving.md), in structured and binary mode."""

from __future__ import annotations

import httpx
import orjson
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane

from serving.server import accept_decoded_cloudevent_data, refuse_incomplete_cloudevents
from tests.serving.conftest import VERTEX_PREDICT_ROUTE

KSERVE_PREDICT = "/v1/models/mmoe-ranker:predict"
REQUEST = {"instances": [{"context": {"module_name": "search"}, "candidates": {"listing_id": ["l1"]}}]}
ATTRIBUTES = {"specversion": "1.0", "id": "e1", "source": "tests", "type": "ranking.request"}
STRUCTURED = {"content-type": "application/cloudevents+json"}
BINARY = {f"ce-{key}": value for key, value in ATTRIBUTES.items()}
LACKS_BINARY = "incomplete CloudEvent: a binary-mode event sends the ce-specversion, ce-id, ce-source, ce-type headers"
LACKS_STRUCTURED = (
    "incomplete CloudEvent: a structured event (application/cloudevents+json) has specversion, id, source, type "
    "and data (the request)"
)

# (body, headers, the end of the 400's message); None: decoded as a request or an event, no refusal
CASES = [
    ({"specversion": "1.0", "data": REQUEST}, STRUCTURED, "this one lacks id, source, type"),
    ({**ATTRIBUTES, "instances": REQUEST["instances"]}, STRUCTURED, "this one lacks data"),
    ({"time": "2026-01-01T00:00:00Z", **REQUEST}, STRUCTURED, "this one lacks specversion, id, source, type, data"),
    (REQUEST, {"ce-specversion": "1.0"}, "this one lacks ce-id, ce-source, ce-type"),
    (REQUEST, {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "e1"}, "lacks ce-source, ce-type"),
    (REQUEST, {"ce-time": "2026-01-01T00:00:00Z"}, "this one lacks ce-specversion, ce-id, ce-source, ce-type"),
    (REQUEST, STRUCTURED, None),  # the request itself, sent as a structured event's content type
    ({**ATTRIBUTES, "data": REQUEST}, STRUCTURED, None),
    (REQUEST, {"content-type": "application/json", **BINARY}, None),
    (REQUEST, {**STRUCTURED, "ce-specversion": "1.0"}, None),  # structured mode: ce- headers are not the event
    (REQUEST, {"content-type": "application/json"}, None),
]
IDS = [
    "structured-without-id-source-type",
    "structured-without-data",
    "structured-with-time-only",
    "binary-specversion-only",
    "binary-without-source-type",
    "binary-time-only",
    "structured-content-type-plain-request",
    "structured-complete",
    "binary-complete",
    "structured-with-a-ce-header",
    "plain-json",
]


def dataplane() -> DataPlane:
    """KServe's own decoding (no models needed), with the server's CloudEvents handling installed."""
    plane = DataPlane.__new__(DataPlane)
    accept_decoded_cloudevent_data(plane)
    refuse_incomplete_cloudevents(plane)
    return plane


@pytest.mark.parametrize(("body", "headers", "message"), CASES, ids=IDS)
def test_an_incomplete_event_is_refused_naming_what_it_lacks(body, headers, message):
    plane = dataplane()
    if message is None:
        decoded, _ = plane.decode(body=orjson.dumps(body), headers=dict(headers))
        assert decoded == REQUEST
        return
    with pytest.raises(InvalidInput) as refused:
        plane.decode(body=orjson.dumps(body), headers=dict(headers))
    text = str(refused.value)
    assert text.startswith(LACKS_STRUCTURED if headers == STRUCTURED else LACKS_BINARY)
    assert text.endswith(message)


def test_a_v2_request_is_left_to_kserve():
    calls = []
    plane = DataPlane.__new__(DataPlane)
    plane.decode = lambda body, headers=None, **options: calls.append(options) or ("kserve", {})
    refuse_incomplete_cloudevents(plane)
    assert plane.decode(b"{}", {"ce-specversion": "1.0"}, protocol_version="v2") == ("kserve", {})
    assert calls == [{"protocol_version": "v2"}]


@pytest.mark.slow
def test_incomplete_events_get_a_400_over_http_and_complete_ones_a_200(server):
    for body, headers, message in CASES:
        for route in (KSERVE_PREDICT, VERTEX_PREDICT_ROUTE):
            response = httpx.post(server.url + route, content=orjson.dumps(body), headers=headers, timeout=30)
            if message is None:
                assert response.status_code == 200, (headers, response.text)
            else:
                assert response.status_code == 400, response.text
                assert response.json()["error"].endswith(message), response.text
