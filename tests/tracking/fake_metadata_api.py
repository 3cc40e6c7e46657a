"""The fake Vertex AI REST API plus the Vertex ML Metadata calls behind Vertex AI Experiments.

Like :class:`~tests.registry.fake_google_api.FakeVertexApi`, only the HTTP call
is replaced; the SDK builds real requests. Experiments and their runs are
metadata *contexts* in the ``default`` metadata store::

    with FakeExperimentsApi() as api:
        ...                                 # submit a pipeline job with experiment="mmoe-ranker"
        api.contexts["projects/p/locations/l/metadataStores/default/contexts/mmoe-ranker"]
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from tests.registry.fake_google_api import _API, FakeVertexApi, RecordedRequest

_STORE = r"(?P<store>projects/[^/]+/locations/[^/]+/metadataStores/default)"


class FakeExperimentsApi(FakeVertexApi):
    """:class:`FakeVertexApi` that also keeps metadata contexts (experiments, pipeline runs) and their children."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: dict[str, dict[str, Any]] = {}
        self.children: dict[str, list[str]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}

    def _route(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        url = unquote(request.url.split("?")[0])
        routes = [
            ("GET", _API + _STORE + r"$", self._get_store),
            ("POST", _API + _STORE + r"/contexts$", self._create_context),
            ("GET", _API + _STORE + r"/contexts/(?P<context>[^/:]+)$", self._get_context),
            ("POST", _API + _STORE + r"/contexts/(?P<context>[^/:]+):addContextChildren$", self._add_children),
            ("GET", _API + r"(?P<name>projects/[^/]+/locations/[^/]+/pipelineJobs/[^/:]+)$", self._get_job),
        ]
        for method, pattern, handler in routes:
            match = re.match(pattern, url)
            if method == request.method and match:
                return handler(request, **match.groupdict())
        return super()._route(request)

    def _create_pipeline_job(self, request, parent):
        status, job = super()._create_pipeline_job(request, parent)
        store = f"{parent}/metadataStores/default"
        job_id = job["name"].rsplit("/", 1)[-1]
        run_context = {"name": f"{store}/contexts/{job_id}", "schemaTitle": "system.PipelineRun"}
        self.jobs[job["name"]] = {**job, "jobDetail": {"pipelineRunContext": run_context}}
        return status, self.jobs[job["name"]]

    def _get_job(self, request, name):
        return 200, self.jobs[name]

    def _get_store(self, request, store):
        return 200, {"name": store}

    def _create_context(self, request, store):
        name = f"{store}/contexts/{request.query['contextId'][0]}"
        if name in self.contexts:
            return 409, {"error": {"code": 409, "message": f"{name} exists", "status": "ALREADY_EXISTS"}}
        self.contexts[name] = {**request.json, "name": name}
        return 200, self.contexts[name]

    def _get_context(self, request, store, context):
        name = f"{store}/contexts/{context}"
        if name not in self.contexts:
            return 404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}}
        return 200, self.contexts[name]

    def _add_children(self, request, store, context):
        self.children.setdefault(f"{store}/contexts/{context}", []).extend(request.json.get("childContexts", []))
        return 200, {}
