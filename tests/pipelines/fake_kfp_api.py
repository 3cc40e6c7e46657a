"""A fake Kubeflow Pipelines API server at urllib3's transport, for ``kfp.Client`` tests.

Only ``urllib3.PoolManager.request`` (the HTTP call of the generated KFP API
client) is replaced; ``kfp.Client`` and the project's code run unchanged::

    with FakeKfpApi() as api:
        kfp.Client(host="http://kfp.test").create_run_from_pipeline_package(...)
        api.calls("POST", "/runs$")[0].json
"""

from __future__ import annotations

import json
import re
from typing import Any
from unittest import mock

import urllib3

from tests.registry.fake_google_api import FakeHttpApi, RecordedRequest

_API = "/apis/v2beta1"


class FakeKfpApi(FakeHttpApi):
    """Records every request and answers experiments, runs and recurring runs."""

    def __init__(self) -> None:
        super().__init__(mock.patch.object(urllib3.PoolManager, "request", self._request))
        self.recurring_runs: dict[str, dict[str, Any]] = {}

    def _request(self, method: str, url: str, body=None, fields=None, **kwargs) -> urllib3.HTTPResponse:
        recorded = self.record(method, url, body, fields)
        status, payload = self._route(recorded)
        return urllib3.HTTPResponse(
            body=json.dumps(payload).encode(), status=status, headers={"Content-Type": "application/json"}
        )

    def _route(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        path, method = request.path, request.method
        if path == f"{_API}/healthz":
            return 200, {"multi_user": False}
        if path == f"{_API}/experiments" and method == "GET":
            return 200, {"experiments": []}
        if path == f"{_API}/experiments" and method == "POST":
            return 200, {"experiment_id": "experiment-1", **request.json}
        if path == f"{_API}/runs" and method == "POST":
            return 200, {"run_id": "run-1", **request.json}
        if path == f"{_API}/recurringruns" and method == "POST":
            run_id = f"recurring-{len(self.recurring_runs) + 1}"
            self.recurring_runs[run_id] = {"recurring_run_id": run_id, "status": "ENABLED", **request.json}
            return 200, self.recurring_runs[run_id]
        if path == f"{_API}/recurringruns" and method == "GET":
            return 200, {"recurringRuns": list(self.recurring_runs.values()), "total_size": len(self.recurring_runs)}
        if match := re.fullmatch(rf"{_API}/recurringruns/([^/:]+):(enable|disable)", path):
            self.recurring_runs[match[1]]["status"] = "ENABLED" if match[2] == "enable" else "DISABLED"
            return 200, {}
        if (match := re.fullmatch(rf"{_API}/recurringruns/([^/:]+)", path)) and method == "DELETE":
            self.recurring_runs.pop(match[1])
            return 200, {}
        return 404, {"error": f"fake KFP has no route for {method} {path}"}
