"""Hundreds of random and near-valid bodies, with every content type, on every predict route: never a 5xx."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import VERTEX_PREDICT_ROUTE
from tests.serving.json_bodies import bodies
from tests.serving.test_open_inference import headers_ as v2_headers

pytestmark = pytest.mark.slow

ROUTES = ("/v1/models/mmoe-ranker:predict", VERTEX_PREDICT_ROUTE)
CONTENT_TYPES = (
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/cloudevents+json",
    "text/plain",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "image/png",
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES), route=st.sampled_from(ROUTES))
def test_no_body_and_content_type_gets_a_5xx(server, body, content_type, route):
    headers = {} if content_type is None else {"content-type": content_type}
    response = httpx.post(server.url + route, content=body, headers=headers, timeout=30)
    assert response.status_code < 500, (content_type, body[:200], response.text[:300])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=v2_headers,
    raw=st.binary(max_size=24),
    header_length=st.none() | st.integers(-2, 600).map(str) | st.from_regex(r"[0-9a-z.-]{0,4}", fullmatch=True),
    content_type=st.sampled_from(CONTENT_TYPES),
    version=st.none() | st.text(max_size=8),
)
def test_no_v2_body_header_or_version_gets_a_5xx(server, header, raw, header_length, content_type, version):
    """KServe v2 infer, as JSON or with binary data after a header of any stated length, on any version route."""
    headers = {} if content_type is None else {"content-type": content_type}
    if header_length is not None:
        headers["inference-header-content-length"] = header_length
    route = "/v2/models/mmoe-ranker" + ("" if version is None else f"/versions/{quote(version, safe='')}") + "/infer"
    body = json.dumps(header).encode() + raw  # json, not orjson: it also writes integers beyond 64 bits and NaN
    response = httpx.post(server.url + route, content=body, headers=headers, timeout=30)
    assert response.status_code < 500, (route, headers, body[:200], response.text[:300])
