"""The fake Vertex AI API with endpoint traffic splits: deploy next to other models, undeploy, traffic by id.

Like Vertex AI, ``deployModel`` applies the request's ``trafficSplit`` (``"0"``
is the model being deployed) and ``undeployModel`` takes the split of the
models left; both refuse a split that does not add up to 100.
"""

from __future__ import annotations

import re
from typing import Any

from tests.registry.fake_google_api import _API, FakeVertexApi

_TYPE = "type.googleapis.com/google.cloud.aiplatform.v1"
_ENDPOINT = _API + r"(?P<name>projects/[^/]+/locations/[^/]+/endpoints/[^/:]+)"


class FakeVertexEndpoints(FakeVertexApi):
    """:class:`FakeVertexApi` whose endpoints keep several deployed models and a traffic split."""

    def _route(self, request) -> tuple[int, dict[str, Any]]:
        url = request.url.split("?")[0]
        for verb, handler in (("deployModel", self._deploy_split), ("undeployModel", self._undeploy)):
            match = re.match(_ENDPOINT + f":{verb}$", url)
            if request.method == "POST" and match:
                return handler(request, match["name"])
        return super()._route(request)

    def _deploy_split(self, request, name: str) -> tuple[int, dict[str, Any]]:
        endpoint = self.endpoints[name]
        deployed_id = str(100 + len(self.requests))
        model, _, version = request.json["deployedModel"]["model"].partition("@")
        deployed = {**request.json["deployedModel"], "id": deployed_id, "model": model, "modelVersionId": version}
        split = {(deployed_id if key == "0" else key): share for key, share in request.json["trafficSplit"].items()}
        if sum(split.values()) != 100:
            return _invalid(f"traffic split {split} does not add up to 100")
        endpoint["deployedModels"].append(deployed)
        endpoint["trafficSplit"] = split
        done = {"@type": f"{_TYPE}.DeployModelResponse", "deployedModel": deployed}
        return 200, {"name": f"{name}/operations/deploy", "done": True, "response": done}

    def _undeploy(self, request, name: str) -> tuple[int, dict[str, Any]]:
        endpoint = self.endpoints[name]
        gone = request.json["deployedModelId"]
        split = request.json.get("trafficSplit", {})
        if gone in split or (len(endpoint["deployedModels"]) > 1 and sum(split.values()) != 100):
            return _invalid(f"undeploying {gone} with traffic split {split}")
        endpoint["deployedModels"] = [model for model in endpoint["deployedModels"] if model["id"] != gone]
        endpoint["trafficSplit"] = split
        done = {"@type": f"{_TYPE}.UndeployModelResponse"}
        return 200, {"name": f"{name}/operations/undeploy", "done": True, "response": done}

    def traffic(self, name: str) -> dict[str, int]:
        """The endpoint's traffic split by model version."""
        endpoint = self.endpoints[name]
        versions = {model["id"]: model["modelVersionId"] for model in endpoint["deployedModels"]}
        return {versions[key]: share for key, share in endpoint["trafficSplit"].items() if share}


def _invalid(message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
