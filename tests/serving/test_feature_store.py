"""The online path: extraction's entity snapshot -> ranker materialize (Feast) -> ids-only requests.

The skew check: test rows served with ids only get the extraction's features
and the offline predictions (|delta| < 1e-5) for entities unchanged since the cutoff.
Over HTTP: ``ranker serve --feature-store`` scores ids-only requests as a server
without the store scores the same requests with their features sent, and a
store that fails or hangs mid-load is a 503 with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest

from ranker_core.cli_support import UserError
from ranker_core.schema import FeatureSpec
from serving.config import ServerConfig
from serving.feature_store import (
    LOOKUPS,
    NOT_A_REPO,
    UNKNOWN_IDS,
    OnlineFeatures,
    StoreUnavailableError,
    model_mismatch,
    open_online_features,
)
from serving.request import RequestError
from serving.server import load_features
from serving.skew_check import skew_check
from tests.serving.conftest import ServerProcess
from tests.serving.online_store import extraction_requests

pytestmark = pytest.mark.slow


def test_materialize_tags_the_views_with_the_model_version(store):
    assert store["summary"]["model_version"] == "7"
    assert set(store["summary"]["views"]) == {"listing_id", "shop_id", "category", "user", "user_category"}


def test_skew_check_served_features_and_predictions_equal_the_offline_ones(store):
    report = skew_check(str(store["examples"]), str(store["model"]), str(store["repo"]))
    assert report.rows > 0, "some test rows have entities unchanged since the cutoff"
    assert report.rows < report.test_rows and report.modules  # how much of the test split it could check
    # each feature is compared where its own entities are unchanged, on more rows than the predictions are
    assert report.served_rows == report.test_rows  # fewer than the 2,000 requests served by default
    assert report.compared["hist_user_impressions"] > report.compared["hist_user_click_rate"] >= report.rows
    assert report.compared["price"] > report.rows and report.unknown_keys.keys() == {"listing_id", "user"}
    assert set(report.modules) <= set(FeatureSpec.load(store["examples"]).modules)
    assert report.mismatches == {}
    assert report.max_prediction_delta < 1e-5
    assert report.ok
    users = pd.read_parquet(store["examples"] / "entities" / "user.parquet")
    assert (users["hist_user_recent_click_listing_id"] != "").any(), "the store serves the users' sequences"


def test_skew_check_finds_a_served_feature_that_differs_where_it_is_compared(store, monkeypatch):
    from serving import skew_check as module

    opened = module.open_online_features

    def price_off_by_one(*args, **kwargs):
        features = opened(*args, **kwargs)
        assemble = features.assemble

        def skewed(*call, **named):
            columns = assemble(*call, **named)
            columns["price"] = columns["price"] + 1.0
            return columns

        features.assemble = skewed
        return features

    monkeypatch.setattr(module, "open_online_features", price_off_by_one)
    report = skew_check(str(store["examples"]), str(store["model"]), str(store["repo"]), max_requests=5)
    assert report.requests == 5 and not report.ok
    assert report.mismatches == {"price": report.compared["price"]} and report.compared["price"] > 0
    assert report.max_prediction_delta > 0 or report.rows == 0


def test_unknown_ids_get_training_defaults_and_are_counted(store):
    features = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=0)
    before = UNKNOWN_IDS.labels("listing_id")._value.get()
    columns = features.assemble({"module_name": "search", "user_id": "nobody"}, {"listing_id": ["l-new"]})
    assert UNKNOWN_IDS.labels("listing_id")._value.get() == before + 1
    assert columns["hist_listing_id_impressions"].tolist() == [0.0]
    assert columns["hist_user_impressions"].tolist() == [0.0]
    assert np.isnan(columns["price"]).all() and columns["category"].tolist() == [""]
    assert columns["hist_user_recent_click_listing_id"].tolist() == [""]  # no history: an empty sequence
    snapshot = json.loads((store["examples"] / "entities" / "snapshot.json").read_text())
    assert columns["hist_listing_id_click_rate"].tolist() == [
        snapshot["entities"]["listing_id"]["defaults"]["hist_listing_id_click_rate"]
    ]


def test_the_users_sequence_and_its_match_with_each_candidate_come_from_the_store(store):
    users = pd.read_parquet(store["examples"] / "entities" / "user.parquet").set_index("user_id")
    sequences = users["hist_user_recent_click_listing_id"]
    user, sequence = next((user, sequence) for user, sequence in sequences.items() if sequence)
    listing = sequence.split("|")[0]
    features = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=0)
    columns = features.assemble({"module_name": "search", "user_id": user}, {"listing_id": [listing, "l-new"]})
    assert columns["hist_user_recent_click_listing_id"].tolist() == [sequence, sequence]
    assert columns["match_recent_click_listing_id"].tolist() == [sequence.split("|").count(listing), 0.0]


def test_each_lookup_thread_reads_through_a_store_of_its_own(store):
    """Feast's SQLite store has one connection per ``FeatureStore``: shared by threads, a lookup waiting on a
    locked database could stop every thread (the GIL held while waiting for SQLite's connection mutex)."""
    features = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=0)
    context, candidates = {"module_name": "search", "user_id": "nobody"}, {"listing_id": ["l-a", "l-b"]}
    used: dict[str, list] = {}

    def lookup(name: str) -> None:
        features.assemble(context, candidates)
        used[name] = [view.stores.get() for view in features.views]

    for name in ("first", "second"):
        thread = threading.Thread(target=lookup, args=(name,))
        thread.start()
        thread.join()
    lookup("this")
    for name, stores in used.items():
        assert len({id(store) for store in stores}) == 1, f"the {name} thread's views share its store"
    assert len({id(stores[0]) for stores in used.values()}) == 3, "each thread has a store of its own"
    assert features.views[0].stores.get() is used["this"][0], "a thread keeps its store"


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """This process's objects kept out of garbage collection (``gc.freeze``). After the whole suite a full collection
    here took up to 4.2 s and stops every thread: a pause measured inside is then not the collector's."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def test_a_lookup_waiting_on_a_locked_store_holds_only_its_own_thread(store, tmp_path):
    """SQLite waits up to 5 s for a lock; meanwhile the other threads (the server's event loop) run on."""
    repo = shutil.copytree(store["repo"], tmp_path / "repo")
    features = OnlineFeatures(str(repo), "listing_id", cache_seconds=0)
    context, candidates = {"module_name": "search", "user_id": "nobody"}, {"listing_id": ["l-a", "l-b"]}
    errors: list[str] = []

    def lookup() -> None:
        try:
            features.assemble(context, candidates)
        except StoreUnavailableError as error:
            errors.append(str(error))

    lookups = [threading.Thread(target=lookup) for _ in range(3)]
    locker = sqlite3.connect(repo / "data" / "online_store.db")
    locker.execute("BEGIN EXCLUSIVE")
    longest_pause, last = 0.0, time.monotonic()
    try:
        with heap_frozen():
            for thread in lookups:
                thread.start()
            until = time.monotonic() + 3.0
            while last < until:
                time.sleep(0.01)
                longest_pause, last = max(longest_pause, time.monotonic() - last), time.monotonic()
    finally:
        for thread in lookups:
            thread.join(timeout=30)
        locker.rollback()
        locker.close()
    assert longest_pause < 2.0, f"this thread stopped for {longest_pause:.1f} s while lookups waited for the lock"
    assert len(errors) == 3 and all("database is locked" in error for error in errors), errors


def test_a_warm_cache_answers_without_the_store_and_as_the_store_does(store):
    cached = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=3600, cache_entries=100)
    direct = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=0)
    ids = ["l1", "l2", "l-new", "l1", 7, None]
    context = {"module_name": "search", "user_id": "u1", "query_category": "toys"}
    first = cached.assemble(context, {"listing_id": list(ids)})
    before = {view.name: LOOKUPS.labels(view.name)._value.get() for view in cached.views}
    again = cached.assemble(context, {"listing_id": list(ids)})
    assert {view.name: LOOKUPS.labels(view.name)._value.get() for view in cached.views} == before
    expected = direct.assemble(context, {"listing_id": list(ids)})
    assert set(first) == set(again) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(np.asarray(first[name]), np.asarray(values), err_msg=name)
        np.testing.assert_array_equal(np.asarray(again[name]), np.asarray(values), err_msg=name)
    assert first["listing_id"] == ids, "the ids sent are passed on as sent"


def test_a_feature_both_sent_and_stored_is_refused(store):
    features = OnlineFeatures(str(store["repo"]), "listing_id")
    with pytest.raises(RequestError, match="price comes from the feature store"):
        features.assemble({"module_name": "search"}, {"listing_id": ["l1"], "price": [3.0]})
    with pytest.raises(RequestError, match="send 'listing_id' ids"):
        features.assemble({"module_name": "search"}, {"device": ["ios"]})


# -- repos that cannot serve: refused when opened, in one line -------------------------------------------------


def _copy_without_online_store(repo: Path, target: Path) -> None:
    shutil.copytree(repo, target)
    (target / "data" / "online_store.db").unlink()


def _copy_without_a_table(repo: Path, target: Path) -> None:
    shutil.copytree(repo, target)
    with contextlib.closing(sqlite3.connect(target / "data" / "online_store.db")) as database:
        database.execute("DROP TABLE ranker_user")


def _yaml_only(repo: Path, target: Path) -> None:
    target.mkdir()
    shutil.copy(repo / "feature_store.yaml", target)


NOT_REPOS: dict[str, tuple[Callable[[Path, Path], object], str]] = {
    "missing": (lambda repo, target: None, "no such folder"),
    "a file": (lambda repo, target: target.write_text("x"), "a file, not a folder"),
    "an empty folder": (lambda repo, target: target.mkdir(), "no feature_store.yaml"),
    "feature_store.yaml only": (_yaml_only, "no registry at"),
    "copied without its online store": (_copy_without_online_store, "no online store at"),
    "an online table missing": (_copy_without_a_table, "its online store cannot be read: no such table: ranker_user"),
}


def _files(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_size for path in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", NOT_REPOS)
def test_a_path_that_is_not_a_materialized_repo_is_one_line_and_left_as_it_was(store, tmp_path, case):
    make, reason = NOT_REPOS[case]
    repo = tmp_path / "repo"
    make(store["repo"], repo)
    before = _files(tmp_path)
    with pytest.raises(UserError) as refused:
        open_online_features(str(repo), "listing_id", FeatureSpec.load(store["examples"]).feature_names)
    message = str(refused.value)
    assert message.startswith(f"--feature-store {repo}: {NOT_A_REPO} (") and reason in message, message
    assert "\n" not in message
    assert _files(tmp_path) == before, "Feast created nothing (no empty registry or online store)"


def test_a_repo_that_does_not_fit_the_model_is_refused_naming_the_features(store):
    names = FeatureSpec.load(store["examples"]).feature_names
    assert open_online_features(str(store["repo"]), "listing_id", names).stored <= set(names), "the model's own fits"
    model = [name for name in names if not name.startswith("hist_category_")] + ["hist_subcategory_impressions"]
    with pytest.raises(UserError) as refused:
        open_online_features(str(store["repo"]), "listing_id", model)
    message = str(refused.value)
    assert message.startswith(f"--feature-store {store['repo']}: the repo does not fit the model: it lacks ")
    assert "lacks hist_subcategory_impressions (the model reads them from the store)" in message
    assert "stores hist_category_add_to_cart_rate, " in message and "(the model does not read them)" in message


def test_only_history_features_the_repo_lacks_are_missing():
    """A raw feature the repo does not store may come with the request; ``hist_*`` and ``match_*`` cannot."""
    stored = {"hist_user_impressions", "category"}
    assert model_mismatch(stored, ["hist_user_impressions", "category", "device", "price"]) == ""
    assert model_mismatch(stored, ["hist_user_impressions", "category", "match_query_category_category"]) == (
        "lacks match_query_category_category (the model reads them from the store)"
    )
    assert model_mismatch(stored, ["hist_user_impressions"]) == "stores category (the model does not read them)"


def test_the_server_does_not_start_on_a_repo_that_is_not_one_or_does_not_fit(store, tmp_path):
    spec = FeatureSpec.load(store["model"])
    _copy_without_online_store(store["repo"], tmp_path / "copied")
    with pytest.raises(UserError, match="no online store at"):
        load_features(ServerConfig(feature_store=str(tmp_path / "copied")), spec)
    assert not (tmp_path / "copied" / "data" / "online_store.db").exists()
    fewer = dataclasses.replace(spec, features=[f for f in spec.features if not f.name.startswith("hist_shop_id_")])
    with pytest.raises(UserError, match="the repo does not fit the model: it stores hist_shop_id_"):
        load_features(ServerConfig(feature_store=str(store["repo"])), fewer)
    assert load_features(ServerConfig(feature_store=str(store["repo"])), spec).model_version == "7"


# Run in a fresh interpreter, where opening the store is Feast's first import.
CALLER_FRAMES = """
import gc, sys, weakref
from serving.feature_store import OnlineFeatures

class Model:  # stands for ranker skew-check's TensorFlow model, a local of the frame that opens the store
    pass

def check(model):
    OnlineFeatures(sys.argv[1], "listing_id", cache_seconds=0)

model = Model()
released = weakref.ref(model)
check(model)
del model
gc.collect()
print("feast" in sys.modules, released() is None)
"""


def test_opening_the_store_keeps_no_callers_locals_alive(store):
    """Feast keeps its failed ``import torch`` error, whose traceback held every frame that first imported Feast:
    ``ranker skew-check``'s model outlived the check and was freed at interpreter exit, which crashed (exit 139)."""
    command = [sys.executable, "-c", CALLER_FRAMES, str(store["repo"])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.stdout.split() == ["True", "True"], (done.returncode, done.stdout, done.stderr[-2000:])


# -- over HTTP: `ranker serve --feature-store` -------------------------------------------------------------------

FEATURE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def servers(store, tmp_path_factory) -> Iterator[dict]:
    """The trained model served twice: with a copy of the feature store (ids only) and without (features sent)."""
    folder = tmp_path_factory.mktemp("served_store")
    repo = shutil.copytree(store["repo"], folder / "repo")
    common = {"RANKER_BATCHING": "false", "RANKER_MAX_CANDIDATES": "1000"}
    with_store = ServerProcess(
        store["model"],
        folder / "store.log",
        RANKER_FEATURE_STORE=str(repo),
        RANKER_FEATURE_TIMEOUT_S=str(FEATURE_TIMEOUT_S),
        RANKER_STALL_DUMP_S="1.5",  # a stopped event loop writes every thread's stack into the log
        **common,
    )
    without_store = ServerProcess(store["model"], folder / "plain.log", **common)
    try:
        with_store.wait_ready("/health")
        without_store.wait_ready("/health")
        yield {"store": with_store, "plain": without_store, "repo": repo}
    finally:
        with_store.stop()
        without_store.stop()


def post(server: ServerProcess, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/predict", content=orjson.dumps(body), timeout=30)


def test_an_ids_only_request_over_http_scores_as_the_same_request_with_its_features_sent(store, servers):
    features = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=0)
    ids_only, explicit = extraction_requests(store["examples"], features, count=5)
    assert ids_only, "some test requests have entities unchanged since the cutoff"
    served = post(servers["store"], {"instances": ids_only, "parameters": {"top_k": 3}})
    sent = post(servers["plain"], {"instances": explicit, "parameters": {"top_k": 3}})
    assert served.status_code == sent.status_code == 200, (served.text, sent.text)
    refused = post(servers["store"], {"instances": explicit})
    assert refused.status_code == 400 and "come from the feature store; send ids only" in refused.text
    for by_ids, by_features in zip(served.json()["predictions"], sent.json()["predictions"], strict=True):
        np.testing.assert_allclose(by_ids["score"], by_features["score"], rtol=0, atol=1e-5)
        for task, values in by_features["tasks"].items():
            np.testing.assert_allclose(by_ids["tasks"][task], values, rtol=0, atol=1e-5)
        assert by_ids["top_k"]["ids"] == by_features["top_k"]["ids"]
    # the start-up log says what a request sends besides the ids: the features the store does not keep
    [started] = [record["message"] for record in servers["store"].log_records() if "requests send" in record["message"]]
    sends = set(started.split("requests send the ids and ")[1].split(", "))
    assert {"module_name", "user_id", "device", "query_category", "listing_age_days"} <= sends, started
    assert not {"listing_id", "price", "category", "user_country"} & sends, started


def v2_tensors(instance: dict, datatypes: dict[str, str]) -> list:
    """An ids-only instance as KServe v2 tensors from KServe's client: the context [1], the ids as binary BYTES."""
    from kserve import InferInput

    values = {**{key: [value] for key, value in instance["context"].items()}, **instance["candidates"]}
    tensors = []
    for name, data in values.items():
        tensor = InferInput(name, [len(data)], datatypes[name])
        array = np.array(data, dtype=object if datatypes[name] == "BYTES" else np.float32)
        tensor.set_data_from_numpy(array, binary_data=True)
        tensors.append(tensor)
    return tensors


def test_ids_only_v2_binary_tensors_score_as_the_v1_route_does(store, servers):
    from kserve import InferRequest

    features = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=0)
    instance = extraction_requests(store["examples"], features, count=1)[0][0]
    metadata = httpx.get(servers["store"].url + "/v2/models/mmoe-ranker", timeout=30).json()
    datatypes = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
    assert {"listing_id", "listing_age_days"} <= set(datatypes) and "price" not in datatypes  # what a request sends
    expected = post(servers["store"], {"instances": [instance]}).json()["predictions"][0]["score"]

    def infer(tensors: list) -> httpx.Response:
        body, json_length = InferRequest("mmoe-ranker", tensors, request_id="s1").to_rest()
        headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(json_length)}
        return httpx.post(servers["store"].url + "/v2/models/mmoe-ranker/infer", content=body, headers=headers)

    served = infer(v2_tensors(instance, datatypes))
    assert served.status_code == 200, served.text
    score = next(tensor for tensor in served.json()["outputs"] if tensor["name"] == "score")
    np.testing.assert_allclose(score["data"], expected, rtol=0, atol=1e-6)
    ids = instance["candidates"]["listing_id"]
    sent = {**instance, "candidates": {**instance["candidates"], "price": [1.0] * len(ids)}}
    refused = infer(v2_tensors(sent, {**datatypes, "price": "FP32"}))  # a stored feature sent as binary FP32
    assert refused.status_code == 400 and "input tensor 'price' comes from the feature store" in refused.text


def test_columns_of_other_lengths_and_oversized_requests_get_the_400_a_server_without_the_store_gives(servers):
    context = {"module_name": "search", "user_id": "u0000", "device": "ios"}
    uneven = {"listing_id": ["l00007", "l00020"], "query_category": ["toys"]}
    too_many = {"listing_id": [f"l-new-{index}" for index in range(1001)]}  # the servers take 1,000
    for candidates, message in [
        (uneven, "instances[0].candidates: columns have different lengths {'listing_id': 2, 'query_category': 1}"),
        (too_many, "instances[0].candidates holds 1001 candidates, more than the maximum 1000"),
    ]:
        for name in ("store", "plain"):
            answer = post(servers[name], {"instances": [{"context": context, "candidates": candidates}]})
            assert answer.status_code == 400 and message in answer.text, (name, answer.text)


def test_malformed_candidates_get_the_400_a_server_without_the_store_gives(servers):
    """Absent, empty and mistyped candidates: the same status and message with the store as without."""
    context = {"module_name": "search", "user_id": "u0000", "device": "ios"}
    for instance, message in [
        ({"context": context}, "instances[0].candidates is required (absent or null)"),
        ({"context": context, "candidates": []}, "instances[0].candidates is empty"),
        ({"context": context, "candidates": {"listing_id": []}}, "instances[0].candidates is empty"),
        ({"context": context, "candidates": {"listing_id": "l1"}}, "instances[0].candidates.listing_id must be a list"),
        ({"context": context, "candidates": [1, 2]}, "instances[0].candidates[0] must be an object"),
    ]:
        answers = {name: post(servers[name], {"instances": [instance]}) for name in ("store", "plain")}
        for name, answer in answers.items():
            assert answer.status_code == 400 and message in answer.text, (name, instance, answer.text)
        assert answers["store"].json() == answers["plain"].json()


def v2_json(*tensors: tuple[str, str, list]) -> dict:
    return {"inputs": [{"name": n, "datatype": d, "shape": [len(v)], "data": v} for n, d, v in tensors]}


def test_v2_tensors_the_store_refuses_are_named(servers):
    module = ("module_name", "BYTES", ["search"])
    for body, message in [
        (
            v2_json(("listing_id", "BYTES", ["l1"]), ("listing_age_days", "FP32", [1.0, 2.0, 3.0]), module),
            "input tensor 'listing_id' has shape [1]; the others have 3 rows: with a feature store, "
            "send one id per candidate (shape [3])",
        ),
        (v2_json(("listing_age_days", "FP32", [1.0, 2.0]), module), "no input tensor 'listing_id'"),
        (
            v2_json(("listing_id", "BYTES", ["l1", "l2"]), ("price", "FP32", [1.0]), module),
            "input tensor 'price' comes from the feature store; send ids only",
        ),
    ]:
        answer = httpx.post(servers["store"].url + "/v2/models/mmoe-ranker/infer", json=body, timeout=30)
        assert answer.status_code == 400 and message in answer.text and "instances[0]" not in answer.text, answer.text


def missing_features(server: ServerProcess) -> dict[str, float]:
    """``ranker_request_missing_features_total`` by feature, from the server's /metrics."""
    text = httpx.get(server.url + "/metrics", timeout=30).text
    prefix = 'ranker_request_missing_features_total{feature="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_a_feature_an_ids_only_request_leaves_out_is_counted(servers):
    context = {"module_name": "search", "user_id": "u0000", "device": "ios", "query_category": "toys"}
    context |= {"anchor_category": None, "anchor_listing_id": None}
    before = missing_features(servers["store"])
    assert before.get("listing_age_days") is not None, "every feature's series exists from start-up"
    answer = post(servers["store"], {"instances": [{"context": context, "candidates": {"listing_id": ["l00007"]}}]})
    assert answer.status_code == 200, answer.text
    after = missing_features(servers["store"])
    assert {name: after[name] - before.get(name, 0.0) for name in after if after[name] != before.get(name)} == {
        "listing_age_days": 1.0
    }


class Load:
    """Ids-only requests one after another, each with new ids (so each reaches the store), until stopped."""

    def __init__(self, server: ServerProcess) -> None:
        self.server, self.results, self.stop = server, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        sent = 0
        while not self.stop.is_set():
            sent += 1
            context = {"module_name": "search", "user_id": f"u-load-{sent}"}
            listings = [f"l-load-{sent}-{index}" for index in range(20)]
            started = time.monotonic()
            body = {"instances": [{"context": context, "candidates": {"listing_id": listings}}]}
            try:
                response = post(self.server, body)
                status, text = response.status_code, response.text
            except httpx.TimeoutException:
                status, text = -1, "timed out on the client"
            self.results.append((status, time.monotonic() - started, text))

    def wait_for(self, count: int, status: int | None = None, timeout_s: float = 60.0) -> None:
        """Until ``count`` more answers arrive (with ``status``, when given)."""
        deadline = time.monotonic() + timeout_s
        start = len(self.results)
        while time.monotonic() < deadline:
            if sum(status in (None, got) for got, _, _ in self.results[start:]) >= count:
                return
            time.sleep(0.05)
        raise TimeoutError(f"not {count} answers ({status}) in {timeout_s} s: {self.results[start:][-5:]}")


def stall_report(server: ServerProcess) -> str:
    """The server's stall lines (serving.stall) and the thread stacks its watchdog dumped, for a failure message."""
    lines = server.log_path.read_text().splitlines()
    stalls = [line for line in lines if '"logger": "serving.stall"' in line]
    dumped = ("Thread", "Current thread", "Timeout", "  File ")
    stacks = [line for line in lines if line.startswith(dumped)]
    return f"stalls: {stalls or 'none'}; stacks: {chr(10).join(stacks)[-4000:] or 'none'}"


@dataclasses.dataclass
class Outage:
    """What the load saw while the store was broken, then locked: (status, client seconds, body) per answer, and
    the server's access lines for those requests."""

    results: list[tuple[int, float, str]]
    served: list[dict]
    stall_report: str


@pytest.fixture(scope="module")
def outage(servers) -> Outage:
    """Ids-only load on the store server while its database is broken (reads raise), restored, then locked (reads
    wait; SQLite gives up after 5 s), then released."""
    database = servers["repo"] / "data" / "online_store.db"
    original = database.read_bytes()
    logged_before = len(servers["store"].log_path.read_text().splitlines())
    load = Load(servers["store"])
    load.thread.start()
    try:
        load.wait_for(3, 200)
        with database.open("r+b") as file:
            file.write(b"not a database" * 8)
        load.wait_for(3, 503)
        database.write_bytes(original)
        load.wait_for(2, 200)
        locker = sqlite3.connect(database)
        locker.execute("BEGIN EXCLUSIVE")
        load.wait_for(2, 503)
        locker.rollback()
        locker.close()
        load.wait_for(2, 200, timeout_s=30)
    finally:
        load.stop.set()
        load.thread.join(timeout=60)
        database.write_bytes(original)
    access = [line for line in servers["store"].log_records(logged_before) if line["logger"] == "serving.access"]
    served = [line for line in access if line["path"] == "/predict"]
    return Outage(load.results, served, stall_report(servers["store"]))


def test_the_store_failing_or_hanging_mid_load_is_a_503_with_the_reason_never_a_500(outage):
    statuses = [status for status, _, _ in outage.results]
    assert set(statuses) == {200, 503}, statuses
    reasons = [text for status, _, text in outage.results if status == 503]
    assert any("feature store lookup of" in text and "file is not a database" in text for text in reasons), reasons
    assert any(f"did not answer within {FEATURE_TIMEOUT_S:g} s" in text for text in reasons), reasons
    assert len(outage.served) >= len(outage.results) - 1, (len(outage.served), len(outage.results))  # the last: maybe
    # A hanging lookup was cut at the timeout: a 503 after about FEATURE_TIMEOUT_S of the server's own time.
    own_s = [(line["latency_ms"] - line["body_read_ms"]) / 1000 for line in outage.served if line["status"] == 503]
    assert any(0.9 * FEATURE_TIMEOUT_S <= seconds < FEATURE_TIMEOUT_S + 2.0 for seconds in own_s), own_s


@pytest.mark.xfail(
    strict=False,
    reason="issue 13: in 2 of 11 full-suite runs (never alone) the server's own time on one request read ~9 s; "
    "the cause is not found, and the server's stall watchdog's report is emitted as a warning",
)
def test_a_hanging_store_never_holds_a_request_past_the_feature_timeout(outage):
    # The server's own time: its access line's latency less the wait for the body (pauses of this test process,
    # whose full garbage collections take up to 4.2 s after the whole suite, fall on the client's clock).
    slowest = max(outage.served, key=lambda line: line["latency_ms"] - line["body_read_ms"])
    own_ms = slowest["latency_ms"] - slowest["body_read_ms"]
    client_s, client_status, _ = max((seconds, status, text) for status, seconds, text in outage.results)
    if own_ms >= (FEATURE_TIMEOUT_S + 2.0) * 1000:  # shown in the warnings summary, which an xfail does not hide
        warnings.warn(f"the store server took {own_ms:.0f} ms of its own; {outage.stall_report}", stacklevel=1)
    assert own_ms < (FEATURE_TIMEOUT_S + 2.0) * 1000, (
        f"the server took {own_ms:.0f} ms of its own on a request: the timeout did not hold ({slowest}; slowest "
        f"on the client: {client_s:.1f} s, status {client_status}); {outage.stall_report}"
    )
