"""Batch ranking on Beam's local runner with a really trained tiny ranker: top-k, dead letters, sinks."""

import json
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest

from batch.config import BatchRankConfig
from batch.pipeline import RankingLayout, batch_rank, bigquery_sink, read_ranking
from components.features.options import BeamOptions
from ranker_core.cli_support import UserError
from ranker_core.schema import FeatureSpec
from tests.serving.conftest import model_dir  # noqa: F401  (the session fixture, shared)

LOCAL = BeamOptions(runner="DirectRunner", direct_num_workers=1, direct_running_mode="in_memory")
TOP_K = 3


def in_process_top_k(columns: dict, scores: np.ndarray, k: int) -> pd.DataFrame:
    """The expected ranking: best score per (module, user, listing), then the k best listings per (module, user)."""
    frame = pd.DataFrame(
        {"module_name": columns["module_name"], "user_id": columns["user_id"], "listing_id": columns["listing_id"]}
    ).assign(score=scores)
    frame = frame.sort_values("score", ascending=False, kind="stable")
    frame = frame.drop_duplicates(["module_name", "user_id", "listing_id"])
    frame = frame.groupby(["module_name", "user_id"]).head(k)
    return frame.sort_values(["module_name", "user_id", "score"], ascending=[True, True, False]).reset_index(drop=True)


def dead_letters(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()]


def grouped_parquet(columns: dict, folder: Path, files: int) -> Path:
    """The candidates sorted by (module, user) in ``files`` Parquet files: users span chunks and files."""
    frame = pd.DataFrame(columns).sort_values(["module_name", "user_id"], kind="stable")
    folder.mkdir()
    for index, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_parquet(folder / f"part-{index}.parquet")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("grouped", [False, True], ids=["shuffled", "grouped-by-user"])
def test_top_k_per_user_equals_the_in_process_ranking(model_dir, synthetic_examples, tmp_path, grouped):  # noqa: F811
    from trainer.examples import read_split
    from trainer.predict import load_ranker

    ranker = load_ranker(model_dir)
    columns = read_split(synthetic_examples, "test", ranker.feature_spec)
    expected = in_process_top_k(columns, ranker.predict(columns)["score"], TOP_K)
    source = {"candidates": str(grouped_parquet(columns, tmp_path / "sorted", 3))} if grouped else {
        "candidates": str(synthetic_examples), "split": "test"
    }  # fmt: skip
    config = BatchRankConfig(
        **source, model_uri=str(model_dir), out=str(tmp_path / "out"), top_k=TOP_K, batch_size=37,
        grouped_by_user=grouped,
    )  # fmt: skip

    summary = batch_rank(config, LOCAL)

    ranked = read_ranking(tmp_path / "out").sort_values(["module_name", "user_id", "rank"]).reset_index(drop=True)
    assert summary.scored == summary.candidates_read == len(columns["user_id"])
    assert summary.dead_letters == 0 and summary.rankings == len(expected.groupby(["module_name", "user_id"]))
    assert ranked[["module_name", "user_id", "listing_id"]].equals(expected[["module_name", "user_id", "listing_id"]])
    np.testing.assert_allclose(ranked["score"], expected["score"], rtol=1e-5)
    assert (
        ranked.groupby(["module_name", "user_id"])["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1))).all()
    )
    assert {f"p_{task}" for task in ranker.task_names} <= set(ranked.columns)


@pytest.mark.slow
@pytest.mark.parametrize("op_threads", [0, 1])
def test_a_worker_sizes_tensorflow_threads_before_its_model_loads(model_dir, op_threads):  # noqa: F811
    # a fresh interpreter, as a worker process is: thread pools can only be sized before TensorFlow runs anything
    script = (
        "import sys, tensorflow as tf; from batch.inference import RankerModelHandler; "
        f"model = RankerModelHandler(sys.argv[1], op_threads={op_threads}).load_model(); "
        "model.predict({'module_name': ['search']}); threading = tf.config.threading; "
        "print(threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())"
    )
    completed = subprocess.run([sys.executable, "-c", script, str(model_dir)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split()[-2:] == [str(op_threads)] * 2


@pytest.mark.slow
def test_bad_rows_go_to_dead_letters_with_file_row_and_reason(model_dir, tmp_path):  # noqa: F811
    rows = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "", "u2", "u2"],
            "listing_id": ["l1", "l2", "l3", "l4", "l5"],
            "module_name": ["email", "email", "email", "email", "email"],
            "price": ["10.5", "abc", "3", "", "7"],
            "category": ["art", "toys", "art", "home", "art"],
        }
    )
    rows.to_csv(tmp_path / "candidates.csv", index=False)
    (tmp_path / "broken.csv").write_bytes(b"user_id,listing_id,module_name\nu3,caf\xe9,email\nu3,l9,email\n")
    config = BatchRankConfig(
        candidates=str(tmp_path / "*.csv"), model_uri=str(model_dir), out=str(tmp_path / "out"), top_k=TOP_K
    )

    summary = batch_rank(config, LOCAL)

    letters = sorted(dead_letters(tmp_path / "out" / "dead_letter"), key=lambda letter: (letter["file"], letter["row"]))
    assert [(Path(letter["file"]).name, letter["row"]) for letter in letters] == [
        ("broken.csv", 2),
        ("candidates.csv", 3),
        ("candidates.csv", 4),
    ]
    assert "not UTF-8" in letters[0]["reason"]
    assert letters[1]["reason"] == "price: 'abc' is not a number"
    assert letters[2]["reason"] == "user_id: missing value"
    ranked = read_ranking(tmp_path / "out")
    assert sorted(ranked["listing_id"]) == ["l1", "l4", "l5", "l9"]  # a missing price is scored as missing
    assert summary.dead_letters == 3


@pytest.mark.slow
def test_a_file_without_a_required_column_or_not_parquet_at_all_is_dead_lettered_not_fatal(model_dir, tmp_path):  # noqa: F811
    pd.DataFrame({"user_id": ["u1", "u2"], "module_name": ["push", "push"]}).to_parquet(tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 but not Parquet")
    good = pd.DataFrame({"user_id": ["u3", "u3"], "listing_id": ["l1", "l2"], "module_name": ["push", "push"]})
    good.to_parquet(tmp_path / "c.parquet")
    config = BatchRankConfig(candidates=str(tmp_path), model_uri=str(model_dir), out=str(tmp_path / "out"))

    summary = batch_rank(config, LOCAL)

    letters = dead_letters(tmp_path / "out" / "dead_letter")
    by_file = sorted((Path(letter["file"]).name, letter["row"], letter["reason"]) for letter in letters)
    assert by_file[:2] == [
        ("a.parquet", 1, "missing column 'listing_id'"),
        ("a.parquet", 2, "missing column 'listing_id'"),
    ]
    [(name, row, reason)] = by_file[2:]
    assert (name, row) == ("b.parquet", 1)
    assert reason.startswith(f"unreadable from here on: {tmp_path / 'b.parquet'}: cannot read it as parquet: ")
    assert summary.scored == 2


def test_the_bigquery_sink_is_a_truncating_file_load_with_the_ranking_schema():
    layout = RankingLayout(user="user_id", item="listing_id", campaign="module_name", tasks=("click", "purchase"))
    options = BeamOptions(runner="DataflowRunner", project="my-project", region="r", temp_location="gs://b/tmp")

    sink = bigquery_sink("bq://my-project.crm.email_top10", layout, options)

    assert sink.table_reference.projectId == "my-project" and sink.table_reference.tableId == "email_top10"
    assert [field["name"] for field in sink.schema["fields"]] == [
        "module_name", "user_id", "rank", "listing_id", "score", "p_click", "p_purchase",
    ]  # fmt: skip
    assert sink.write_disposition == "WRITE_TRUNCATE" and sink.method == "FILE_LOADS"
    with pytest.raises(UserError, match=r"project\.dataset\.table"):
        bigquery_sink("bq://crm.table", layout, options)


def test_a_bigquery_output_needs_a_dead_letter_folder():
    with pytest.raises(UserError, match="--dead-letter-out"):
        BatchRankConfig(candidates="bq://p.d.t", out="bq://p.d.ranked")
    assert BatchRankConfig(candidates="bq://p.d.t", out="x").source_format == "bigquery"


@pytest.mark.slow
def test_bigquery_candidates_are_ranked_like_files(model_dir, tmp_path, monkeypatch):  # noqa: F811
    from batch import candidates

    records = [
        {"user_id": "u1", "listing_id": f"l{index}", "module_name": "push", "price": float(index)} for index in range(5)
    ] + [{"user_id": None, "listing_id": "l9", "module_name": "push", "price": 1.0}]
    reads = []

    def fake_read(**kwargs):
        reads.append(kwargs)
        return beam.Create(records)

    monkeypatch.setattr(candidates.beam.io, "ReadFromBigQuery", fake_read)
    options = LOCAL.replace(project="my-project", temp_location="gs://b/tmp")
    config = BatchRankConfig(
        candidates="bq://my-project.crm.push", model_uri=str(model_dir), out=str(tmp_path / "out"), top_k=2
    )

    summary = batch_rank(config, options)

    [kwargs] = reads
    assert kwargs["table"] == "my-project.crm.push" and kwargs["method"] == "DIRECT_READ"
    assert kwargs["project"] == "my-project" and {"user_id", "listing_id", "price"} <= set(kwargs["selected_fields"])
    assert (summary.scored, summary.dead_letters, summary.rankings) == (5, 1, 1)
    [letter] = dead_letters(tmp_path / "out" / "dead_letter")
    assert letter == {"file": "bq://my-project.crm.push", "row": 6, "reason": "user_id: missing value"}


@pytest.fixture(scope="module")
def online_store(tmp_path_factory) -> dict:
    from tests.serving.online_store import materialized_store

    return materialized_store(tmp_path_factory.mktemp("batch_feature_store"))


def rank(
    candidates: Path, model: Path, out: Path, feature_store: str = "", user: str = "", item: str = ""
) -> pd.DataFrame:
    """The ranking of ``candidates``, its user and item columns (``user``, ``item``) named as the model's."""
    config = BatchRankConfig(
        candidates=str(candidates), model_uri=str(model), out=str(out), top_k=TOP_K, feature_store=feature_store,
        user_column=user, item_column=item,
    )  # fmt: skip
    summary = batch_rank(config, LOCAL)
    assert summary.dead_letters == 0 and summary.scored == summary.candidates_read > 0
    ranking = read_ranking(out).rename(columns={user or "user_id": "user_id", item or "listing_id": "listing_id"})
    return ranking.sort_values(["module_name", "user_id", "rank"]).reset_index(drop=True)


@pytest.mark.slow
def test_ids_only_candidates_joined_from_the_feature_store_rank_as_the_table_with_its_features(online_store, tmp_path):
    from batch.pipeline import stored_features
    from tests.serving.online_store import unchanged_test_rows

    rows = pd.DataFrame({name: list(values) for name, values in unchanged_test_rows(online_store["examples"]).items()})
    model_features = FeatureSpec.load(online_store["model"]).feature_names
    stored = stored_features(str(online_store["repo"]), "listing_id", model_features)
    assert {"price", "category", "shop_id"} <= stored.names and "user_id" in stored.id_columns
    with pytest.raises(UserError, match="does not fit the model: it lacks hist_unknown_rate"):
        stored_features(str(online_store["repo"]), "listing_id", [*model_features, "hist_unknown_rate"])
    (tmp_path / "full").mkdir(), (tmp_path / "ids").mkdir()
    rows.to_parquet(tmp_path / "full" / "part-0.parquet")
    ids_only = rows.drop(columns=sorted(stored.names & set(rows)))
    ids_only.to_parquet(tmp_path / "ids" / "part-0.parquet")
    repo = str(online_store["repo"])

    from_table = rank(tmp_path / "full", online_store["model"], tmp_path / "out_table")
    from_store = rank(tmp_path / "ids", online_store["model"], tmp_path / "out_store", repo)
    # the table's own copies of stored features are not read: the store's values are ranked
    store_over_table = rank(tmp_path / "full", online_store["model"], tmp_path / "out_both", repo)

    # the control: the same ids-only table without the store is scored with those features missing
    without_store = rank(tmp_path / "ids", online_store["model"], tmp_path / "out_missing")

    keys = ["module_name", "user_id", "rank", "listing_id"]
    assert from_table["user_id"].nunique() >= 2
    assert from_store[keys].equals(from_table[keys]) and store_over_table[keys].equals(from_table[keys])
    np.testing.assert_allclose(from_store["score"], from_table["score"], atol=1e-5)
    np.testing.assert_allclose(store_over_table["score"], from_table["score"], atol=1e-5)
    assert not np.allclose(np.sort(without_store["score"]), np.sort(from_table["score"]), atol=1e-4)


@pytest.mark.slow
def test_feature_store_ids_are_read_from_the_user_and_item_columns_the_table_names(online_store, tmp_path):
    from batch.pipeline import stored_features
    from tests.serving.online_store import unchanged_test_rows

    rows = pd.DataFrame({name: list(values) for name, values in unchanged_test_rows(online_store["examples"]).items()})
    model_features = FeatureSpec.load(online_store["model"]).feature_names
    stored = stored_features(str(online_store["repo"]), "listing_id", model_features, {"user_id": "customer"})
    assert ("user_id", "customer") in stored.keys and "customer" in stored.id_columns  # the user's views too
    ids_only = rows.drop(columns=sorted(stored.names & set(rows)))
    (tmp_path / "ids").mkdir(), (tmp_path / "renamed").mkdir()
    ids_only.to_parquet(tmp_path / "ids" / "part-0.parquet")
    renamed = ids_only.rename(columns={"user_id": "customer", "listing_id": "item"})
    renamed.to_parquet(tmp_path / "renamed" / "part-0.parquet")
    repo, model = str(online_store["repo"]), online_store["model"]

    standard = rank(tmp_path / "ids", model, tmp_path / "out_ids", repo)
    from_renamed = rank(tmp_path / "renamed", model, tmp_path / "out_renamed", repo, user="customer", item="item")

    keys = ["module_name", "user_id", "rank", "listing_id"]
    assert standard["user_id"].nunique() >= 2 and from_renamed[keys].equals(standard[keys])
    np.testing.assert_array_equal(from_renamed["score"], standard["score"])

    # columns the table does not have: one line naming the column and the file, before anything is ranked
    config = BatchRankConfig(
        candidates=str(tmp_path / "renamed"), model_uri=str(model), out=str(tmp_path / "out_bad"),
        feature_store=repo, item_column="item_id", user_column="customer",
    )  # fmt: skip
    with pytest.raises(UserError, match=r"renamed/part-0.parquet has no --item-column column 'item_id'"):
        batch_rank(config, LOCAL)
    assert not (tmp_path / "out_bad").exists()


def test_a_feature_store_that_is_not_a_feast_repo_is_a_one_line_error(tmp_path):
    from batch.pipeline import stored_features

    with pytest.raises(UserError, match=r"--feature-store .*nowhere: not a Feast repo"):
        stored_features(str(tmp_path / "nowhere"), "listing_id", [])
