"""A fake of the Vertex AI REST API at the HTTP transport, for tests that must not reach Google Cloud.

Only ``google.auth.transport.requests.AuthorizedSession.request`` (the HTTP
call every REST gapic client makes) is replaced: the SDK, the gapic clients and
the project's own code run unchanged and build real requests, which the fake
records and answers like Vertex AI would for the few resources the project uses
(models and their versions, pipeline jobs, schedules)::

    with FakeVertexApi() as api:
        aiplatform.init(project="p", location="us-central1", api_transport="rest",
                        credentials=AnonymousCredentials())
        ...                        # code under test
        api.requests[-1].json      # what was sent
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, unquote, urlparse

import requests

_API = r"https://[a-z0-9-]+-aiplatform\.googleapis\.com/v1(?:beta1)?/"
_MODEL = r"(?P<model>projects/[^/]+/locations/[^/]+/models/[^/@:?]+)"


@dataclasses.dataclass
class RecordedRequest:
    method: str
    url: str
    path: str
    query: dict[str, list[str]]
    json: dict[str, Any]


class FakeHttpApi:
    """Records requests made through a patched HTTP call; subclasses route and answer them."""

    def __init__(self, patch: Any) -> None:
        self.requests: list[RecordedRequest] = []
        self._patch = patch

    def __enter__(self):
        self._patch.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._patch.stop()

    def calls(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        """The recorded requests with this method whose path matches the pattern."""
        return [r for r in self.requests if r.method == method and re.search(path_pattern, r.path)]

    def record(self, method: str, url: str, body: Any, params: Any) -> RecordedRequest:
        """Parse and keep one request: path (unquoted), query (URL and params merged), JSON body."""
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        for key, value in params.items() if isinstance(params, dict) else (params or []):
            query.setdefault(key, []).append(str(value))
        recorded = RecordedRequest(method.upper(), url, unquote(parsed.path), query, json.loads(body) if body else {})
        self.requests.append(recorded)
        return recorded


class FakeVertexApi(FakeHttpApi):
    """Records every REST request and answers model, endpoint, pipeline job and schedule calls."""

    def __init__(self) -> None:
        super().__init__(mock.patch("google.auth.transport.requests.AuthorizedSession.request", self._request))
        self.versions: dict[str, list[dict[str, Any]]] = {}  # model resource name -> versions
        self.schedules: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}

    def _request(self, method: str, url: str, data=None, headers=None, params=None, **kwargs):
        recorded = self.record(method, url, data, params)
        status, payload = self._route(recorded)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = url
        response.request = requests.Request(method, url).prepare()
        return response

    def _route(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        url = unquote(request.url.split("?")[0])
        routes = [
            ("POST", _API + r"(?P<parent>projects/[^/]+/locations/[^/]+)/models:upload$", self._upload),
            ("GET", _API + _MODEL + r":listVersions$", self._list_versions),
            ("POST", _API + _MODEL + r"@(?P<version>[^:]+):mergeVersionAliases$", self._merge_aliases),
            ("GET", _API + _MODEL + r"(?:@(?P<version>[^:/]+))?$", self._get_model),
            ("GET", _API + r"(?P<parent>projects/[^/]+/locations/[^/]+)/endpoints$", self._list_endpoints),
            ("POST", _API + r"(?P<parent>projects/[^/]+/locations/[^/]+)/endpoints$", self._create_endpoint),
            ("POST", _API + r"(?P<name>projects/[^/]+/locations/[^/]+/endpoints/[^/:]+):deployModel$", self._deploy),
            ("GET", _API + r"(?P<name>projects/[^/]+/locations/[^/]+/endpoints/[^/:]+)$", self._get_endpoint),
            ("POST", _API + r"(?P<parent>projects/[^/]+/locations/[^/]+)/pipelineJobs$", self._create_pipeline_job),
            ("POST", _API + r"(?P<parent>projects/[^/]+/locations/[^/]+)/schedules$", self._create_schedule),
            ("GET", _API + r"(?P<parent>projects/[^/]+/locations/[^/]+)/schedules$", self._list_schedules),
            (
                "POST",
                _API + r"(?P<name>projects/[^/]+/locations/[^/]+/schedules/[^/:]+):(?P<verb>pause|resume)$",
                self._pause_resume,
            ),
            ("GET", _API + r"(?P<name>projects/[^/]+/locations/[^/]+/schedules/[^/:]+)$", self._get_schedule),
            ("DELETE", _API + r"(?P<name>projects/[^/]+/locations/[^/]+/schedules/[^/:]+)$", self._delete_schedule),
        ]
        for method, pattern, handler in routes:
            match = re.match(pattern, url)
            if method == request.method and match:
                return handler(request, **match.groupdict())
        return 404, {"error": {"code": 404, "message": f"fake Vertex AI has no route for {request.method} {url}"}}

    # -- models --------------------------------------------------------------

    def _upload(self, request, parent):
        model_id = request.json.get("modelId") or request.json.get("parentModel", "").rsplit("/", 1)[-1]
        name = f"{parent}/models/{model_id}"
        versions = self.versions.setdefault(name, [])
        version_id = str(len(versions) + 1)
        model = dict(request.json["model"])
        aliases = list(model.get("versionAliases", []))
        if model.get("isDefaultVersion", True) or not versions:
            for other in versions:
                other["versionAliases"] = [a for a in other["versionAliases"] if a != "default"]
            aliases.insert(0, "default")
        model.update({"name": name, "versionId": version_id, "versionAliases": aliases, "uri": model["artifactUri"]})
        model["supportedDeploymentResourcesTypes"] = ["DEDICATED_RESOURCES"]  # as for any custom-container model
        versions.append(model)
        response = {
            "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
            "model": name,
            "modelVersionId": version_id,
        }
        return 200, {"name": f"{parent}/operations/{len(self.requests)}", "done": True, "response": response}

    def _find(self, model: str, version: str | None) -> dict[str, Any] | None:
        """A version by id or alias; no version means the ``default`` one."""
        wanted = version or "default"
        for candidate in self.versions.get(model, []):
            if wanted == candidate["versionId"] or wanted in candidate["versionAliases"]:
                return candidate
        return None

    def _get_model(self, request, model, version=None):
        found = self._find(model, version)
        if found is None:
            return 404, {"error": {"code": 404, "message": f"model {model}@{version} not found", "status": "NOT_FOUND"}}
        return 200, found

    def _list_versions(self, request, model):
        if model not in self.versions:
            return 404, {"error": {"code": 404, "message": f"model {model} not found", "status": "NOT_FOUND"}}
        versions = self.versions[model]
        label_filter = re.fullmatch(r'labels\.(\w+)="([^"]*)"', request.query.get("filter", [""])[0])
        if label_filter:
            key, value = label_filter.groups()
            versions = [v for v in versions if v.get("labels", {}).get(key) == value]
        return 200, {"models": versions}

    def _merge_aliases(self, request, model, version):
        found = self._find(model, version)
        for alias in request.json.get("versionAliases", []):
            if alias.startswith("-"):
                found["versionAliases"] = [a for a in found["versionAliases"] if a != alias[1:]]
                continue
            holders = [v for v in self.versions[model] if alias in v["versionAliases"] and v is not found]
            if holders:  # like Vertex AI: an alias names one version
                return 400, {
                    "error": {"code": 400, "message": f"alias {alias} is in use", "status": "INVALID_ARGUMENT"}
                }
            found["versionAliases"].append(alias)
        return 200, found

    # -- endpoints -------------------------------------------------------------

    def _list_endpoints(self, request, parent):
        wanted = re.fullmatch(r'display_name="([^"]*)"', request.query.get("filter", [""])[0])
        found = [e for e in self.endpoints.values() if not wanted or e["displayName"] == wanted[1]]
        return 200, {"endpoints": found}

    def _create_endpoint(self, request, parent):
        name = f"{parent}/endpoints/{len(self.endpoints) + 1}"
        self.endpoints[name] = {**request.json, "name": name, "deployedModels": [], "trafficSplit": {}}
        response = {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.Endpoint", **self.endpoints[name]}
        return 200, {"name": f"{name}/operations/create", "done": True, "response": response}

    def _get_endpoint(self, request, name):
        return 200, self.endpoints[name]

    def _deploy(self, request, name):
        deployed = {**request.json["deployedModel"], "id": str(len(self.endpoints[name]["deployedModels"]) + 1)}
        self.endpoints[name]["deployedModels"].append(deployed)
        self.endpoints[name]["trafficSplit"] = {deployed["id"]: 100}
        response = {
            "@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeployModelResponse",
            "deployedModel": deployed,
        }
        return 200, {"name": f"{name}/operations/deploy", "done": True, "response": response}

    # -- pipeline jobs and schedules -----------------------------------------

    def _create_pipeline_job(self, request, parent):
        job_id = request.query.get("pipelineJobId", ["job-1"])[0]
        return 200, {**request.json, "name": f"{parent}/pipelineJobs/{job_id}", "state": "PIPELINE_STATE_PENDING"}

    def _create_schedule(self, request, parent):
        name = f"{parent}/schedules/{len(self.schedules) + 1}"
        self.schedules[name] = {**request.json, "name": name, "state": "ACTIVE"}
        return 200, self.schedules[name]

    def _list_schedules(self, request, parent):
        return 200, {"schedules": [s for s in self.schedules.values() if s["name"].startswith(parent)]}

    def _get_schedule(self, request, name):
        if name not in self.schedules:
            return 404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}}
        return 200, self.schedules[name]

    def _pause_resume(self, request, name, verb):
        self.schedules[name]["state"] = "PAUSED" if verb == "pause" else "ACTIVE"
        return 200, {}

    def _delete_schedule(self, request, name):
        self.schedules.pop(name)
        done = {"@type": "type.googleapis.com/google.protobuf.Empty"}
        return 200, {"name": f"{name}/operations/delete", "done": True, "response": done}
