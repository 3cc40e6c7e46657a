"""``ranker loadtest --feature-store``: ids-only requests for a ``ranker serve --feature-store`` server.

The generated body, in every ``--format``, is accepted by the real server, carries no stored feature,
and its ids are ones the store holds; a repo the server would refuse is one line before any request.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import orjson
import pandas as pd
import pytest

from ranker_core.schema import FEATURE_SPEC_FILE, FeatureSpec
from serving.feature_store import NOT_A_REPO, FeatureRepoError, OnlineFeatures, snapshot_table
from serving.loadtest import BODY_FORMATS, ids_only, synthetic_request
from serving.open_inference import HEADER_LENGTH
from tests.conftest import synthetic_feature_spec
from tests.serving.conftest import ServerProcess

ROUTES = {"columns": "/predict", "rows": "/predict"}  # the v2 formats: /v2/models/mmoe-ranker/infer
V2_ROUTE = "/v2/models/mmoe-ranker/infer"


@pytest.fixture(scope="module")
def store_server(store, tmp_path_factory) -> Iterator[ServerProcess]:
    """The store's model served with a copy of its repo (ids-only requests)."""
    folder = tmp_path_factory.mktemp("loadtest_store")
    repo = shutil.copytree(store["repo"], folder / "repo")
    server = ServerProcess(
        store["model"], folder / "server.log", RANKER_FEATURE_STORE=str(repo), RANKER_BATCHING="false"
    )
    try:
        server.wait_ready("/health")
        yield server
    finally:
        server.stop()


def sent_names(body: bytes, headers: dict[str, str]) -> set[str]:
    """The features a generated body sends: v1 context and candidate keys, or v2 input tensor names."""
    if HEADER_LENGTH in headers:
        body = body[: int(headers[HEADER_LENGTH])]
    request = orjson.loads(body)
    if "inputs" in request:
        return {tensor["name"] for tensor in request["inputs"]}
    [instance] = request["instances"]
    candidates = instance["candidates"]
    columns = candidates if isinstance(candidates, dict) else {key: None for row in candidates for key in row}
    return set(instance["context"]) | set(columns)


def snapshot_ids(examples: Path, key: str) -> set[str]:
    """The ids of ``key`` in the examples' entity snapshot (what ``ranker materialize`` wrote to the store)."""
    snapshot = json.loads((examples / "entities" / "snapshot.json").read_text())
    [table] = [entity["table"] for entity in snapshot["entities"].values() if entity["keys"] == [key]]
    return set(pd.read_parquet(examples / "entities" / table, columns=[key])[key].astype(str))


@pytest.mark.slow
@pytest.mark.parametrize("body_format", BODY_FORMATS)
def test_a_generated_ids_only_body_is_accepted_and_carries_no_stored_feature(store, store_server, body_format):
    spec = FeatureSpec.load(store["model"])
    ids = ids_only(str(store["repo"]), spec)
    body, headers = synthetic_request(spec, 30, body_format, seed=4, ids=ids)
    answer = httpx.post(store_server.url + ROUTES.get(body_format, V2_ROUTE), content=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text[:500]
    stored = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=0).stored
    sent = sent_names(body, headers)
    assert not sent & stored, sent & stored
    assert {"module_name", "user_id", "listing_id", "listing_age_days"} <= sent, sent


@pytest.mark.slow
def test_the_ids_are_ones_the_store_holds(store):
    spec = FeatureSpec.load(store["model"])
    ids = ids_only(str(store["repo"]), spec)
    assert set(ids.holds["listing_id"]) == snapshot_ids(store["examples"], "listing_id")
    assert set(ids.holds["user_id"]) == snapshot_ids(store["examples"], "user_id")
    instance = orjson.loads(synthetic_request(spec, 200, "columns", ids=ids)[0])["instances"][0]
    assert set(instance["candidates"]["listing_id"]) <= set(ids.holds["listing_id"])
    assert len(set(instance["candidates"]["listing_id"])) > 1, "ids are drawn, not one id repeated"
    assert instance["context"]["user_id"] in ids.holds["user_id"]


@pytest.mark.slow
def test_ranker_loadtest_with_the_feature_store_runs_against_the_server(store, store_server, capsys):
    from pipelines.cli import main

    common = ["loadtest", "--url", store_server.url + "/predict", "--model-dir", str(store["model"])]
    common += ["--candidates", "20", "--rate", "20", "--duration", "0.3", "--warmup", "0"]
    assert main([*common, "--feature-store", str(store["repo"])]) == 0
    [statuses] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("statuses")]
    assert json.loads(statuses.split(maxsplit=1)[1]).keys() == {"200"}, statuses
    counts = feature_store_counts(store_server)
    assert counts["lookups"]["listing_id"] > 0 and counts["lookups"]["user"] > 0, counts
    assert counts["unknown_ids"].get("listing_id", 0) == counts["unknown_ids"].get("user", 0) == 0, counts
    assert main(common) == 1, "without it every feature is sent, which the server refuses"


def feature_store_counts(server: ServerProcess) -> dict[str, dict[str, float]]:
    """``ranker_feature_store_{lookups,unknown_ids}_total`` by view, from the server's /metrics."""
    counts: dict[str, dict[str, float]] = {"lookups": {}, "unknown_ids": {}}
    for line in httpx.get(server.url + "/metrics", timeout=30).text.splitlines():
        for name, by_view in counts.items():
            prefix = f'ranker_feature_store_{name}_total{{view="'
            if line.startswith(prefix):
                by_view[line[len(prefix) :].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return counts


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        ("missing", f"--feature-store {{repo}}: {NOT_A_REPO} (no such folder)"),
        ("", "--feature-store {repo}: generates the request, so it needs --model-dir"),
    ],
)
def test_a_feature_store_the_server_would_refuse_is_one_line_before_any_request(tmp_path, capsys, repo, message):
    from pipelines.cli import main

    synthetic_feature_spec().save(tmp_path / FEATURE_SPEC_FILE)
    path = tmp_path / "missing"
    source = ["--model-dir", str(tmp_path)] if repo else ["--payload", str(tmp_path / FEATURE_SPEC_FILE)]
    arguments = ["loadtest", "--url", "http://127.0.0.1:9/predict", *source, "--feature-store", str(path)]
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith(message.format(repo=path)) and "\n" not in error, error


def test_the_snapshot_of_the_ids_is_found_in_a_copied_repo_and_a_remote_source_is_named(tmp_path):
    table = tmp_path / "copy" / "data" / "offline" / "listing_id.parquet"
    table.parent.mkdir(parents=True)
    table.write_bytes(b"PAR1")
    moved = SimpleNamespace(path="/the/original/repo/data/offline/listing_id.parquet", name="listing_id_snapshot")
    assert snapshot_table("listing_id", moved, str(tmp_path / "copy")) == table
    with pytest.raises(FeatureRepoError, match="'listing_id' is not at /the/original/repo/data/offline/listing_id"):
        snapshot_table("listing_id", moved, str(tmp_path))
    remote = SimpleNamespace(table="project.dataset.listings", name="listing_id_snapshot")
    with pytest.raises(FeatureRepoError, match="reads SimpleNamespace 'listing_id_snapshot', not a local Parquet"):
        snapshot_table("listing_id", remote, str(tmp_path))
