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
from batch.pipeline import BatchSummary, RankingLayout, batch_rank, batch_rank_step, bigquery_sink, read_ranking
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
    (tmp_path / "broken.csv").write_bytes(
        b"user_id,listing_id,module_name\nu3,caf\xe9,email\nu3,l9,email\nu3,l10,email,extra\n"
    )
    config = BatchRankConfig(
        candidates=str(tmp_path / "*.csv"), model_uri=str(model_dir), out=str(tmp_path / "out"), top_k=TOP_K
    )

    summary = batch_rank(config, LOCAL)

    letters = sorted(dead_letters(tmp_path / "out" / "dead_letter"), key=lambda letter: (letter["file"], letter["row"]))
    assert [(Path(letter["file"]).name, letter["row"]) for letter in letters] == [
        ("broken.csv", 2),
        ("broken.csv", 4),
        ("candidates.csv", 3),
        ("candidates.csv", 4),
    ]
    assert "not UTF-8" in letters[0]["reason"] and "malformed CSV line" in letters[1]["reason"]
    assert letters[2]["reason"] == "price: 'abc' is not a number"
    assert letters[3]["reason"] == "user_id: missing value"
    ranked = read_ranking(tmp_path / "out")
    assert sorted(ranked["listing_id"]) == ["l1", "l4", "l5", "l9"]  # a missing price is scored as missing
    # every row is counted as read: the unreadable and malformed lines too
    assert (summary.candidates_read, summary.scored, summary.dead_letters) == (8, 4, 4)
    assert "ranked 4 candidates (8 rows read)" in summary.format() and summary.problem == ""


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
    assert (summary.candidates_read, summary.scored, summary.dead_letters) == (5, 2, 3)


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


def summary_of(**counts) -> BatchSummary:
    fields = {"model_uri": "m", "candidates_read": 0, "dead_letters": 0, "scored": 0, "rankings": 0, "out": "o"}
    return BatchSummary(**(fields | {"dead_letter_out": "o/dead_letter", "candidates": "c/"} | counts))


def test_a_run_that_ranked_nothing_says_why_in_one_line():
    assert summary_of(candidates_read=3, scored=2, dead_letters=1).problem == ""
    assert summary_of().problem == "read no candidate rows from c/: nothing to rank (empty files or table)"

    typo = summary_of(
        candidates_read=1894, other_campaigns=1894, campaign="emaildigest", campaign_column="module_name",
        campaigns_seen={"search": 900, "email_digest": 102, "home_feed": 500, "cart": 1, "a": 1, "b": 1, "c": 389},
    )  # fmt: skip
    assert typo.problem == (
        "nothing ranked: no row of campaign 'emaildigest' among the 1894 rows read (did you mean 'email_digest'?); "
        "the campaigns in column 'module_name': search (900 rows), home_feed (500), c (389), email_digest (102), "
        "a (1) and 2 more"
    )
    assert typo.to_dict()["problem"] == typo.problem

    dead = summary_of(candidates_read=200, dead_letters=200, dead_letter_reasons={"missing column 'tab'": 200})
    assert dead.problem == (
        "nothing ranked: all 200 rows read were dead letters, in o/dead_letter; "
        "most common reasons: missing column 'tab' (200)"
    )
    of_campaign = summary_of(
        candidates_read=10, dead_letters=4, other_campaigns=6, campaign="push", campaigns_seen={"push": 4, "x": 6}
    )
    assert of_campaign.problem.startswith(
        "nothing ranked: the 4 rows of campaign 'push' were all dead letters (6 of other campaigns left out)"
    )


def test_the_most_common_dead_letter_reasons_are_read_back(tmp_path):
    from batch.pipeline import dead_letter_reasons

    letters = ["a"] * 3 + ["b"] * 2 + ["c", "d" * 300]
    (tmp_path / "part-00000-of-00001.jsonl").write_text(
        "".join(json.dumps({"file": "f", "row": i, "reason": r}) + "\n" for i, r in enumerate(letters))
    )
    assert dead_letter_reasons(str(tmp_path), most=2) == {"a": 3, "b": 2}
    assert dead_letter_reasons(str(tmp_path), most=2, lines=4) == {"a": 3, "b": 1}
    assert max(map(len, dead_letter_reasons(str(tmp_path), most=4))) == 160
    assert dead_letter_reasons(str(tmp_path / "none")) == {}


@pytest.mark.slow
def test_a_table_named_as_its_dataset_with_list_columns_ranks_as_the_model_scores_it(
    model_dir,  # noqa: F811
    synthetic_examples,
    tmp_path,
):
    """The module in the spec's module role column (``surface``, as KuaiRand's ``tab``), ``tags`` a Parquet list
    column (the simulator's format): the scores are the ranker's on the same rows."""
    import shutil

    from trainer.examples import read_split
    from trainer.predict import load_ranker

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    spec = FeatureSpec.load(model / "feature_spec.json")
    spec.roles["module"] = "surface"
    spec.save(model / "feature_spec.json")
    ranker = load_ranker(model)
    columns = read_split(synthetic_examples, "test", ranker.feature_spec)
    expected = in_process_top_k(columns, ranker.predict(columns)["score"], TOP_K)
    table = pd.DataFrame(columns).rename(columns={"module_name": "surface"})
    table["tags"] = [np.array(tags.split("|") if tags else [], dtype=object) for tags in table["tags"]]
    assert table["tags"].map(len).max() > 1
    (tmp_path / "candidates").mkdir()
    table.to_parquet(tmp_path / "candidates" / "part-0.parquet")

    summary = batch_rank_step(  # the batch DAG's step, with its default campaign column
        model_uri=str(model), candidates_uri=str(tmp_path / "candidates"), ranked_path=str(tmp_path / "out"),
        dead_letters_path=str(tmp_path / "dead"), top_k=TOP_K, beam_options_json=LOCAL.model_dump_json(),
    )  # fmt: skip

    assert summary.dead_letters == 0 and summary.scored == summary.candidates_read == len(table)
    ranked = read_ranking(tmp_path / "out")
    assert "surface" in ranked and "module_name" not in ranked  # named as the table names it
    ranked = ranked.rename(columns={"surface": "module_name"})
    ranked = ranked.sort_values(["module_name", "user_id", "rank"]).reset_index(drop=True)
    keys = ["module_name", "user_id", "listing_id"]
    assert ranked[keys].equals(expected[keys])
    np.testing.assert_allclose(ranked["score"], expected["score"], rtol=1e-5)


def test_on_vertex_the_batch_step_hands_beam_gcs_uris_not_its_gcs_mount(monkeypatch):
    from kfp.dsl import Dataset, Metrics

    from batch.component import batch_rank as batch_rank_component

    class ReachedError(Exception):
        pass

    def step_reached(**kwargs):
        raise ReachedError(kwargs)

    monkeypatch.setattr("batch.pipeline.batch_rank_step", step_reached)
    root = "gs://b/root/run/batch-rank"
    with pytest.raises(ReachedError) as reached:
        batch_rank_component.python_func(
            model_uri="gs://b/models/1",
            candidates_uri="/gcs/b/candidates/*.parquet",
            ranked=Dataset(uri=f"{root}/ranked"),
            dead_letters=Dataset(uri=f"{root}/dead_letters"),
            metrics=Metrics(uri=f"{root}/metrics"),
        )
    (kwargs,) = reached.value.args
    assert kwargs["candidates_uri"] == "gs://b/candidates/*.parquet"  # Dataflow's workers have no /gcs/ mount
    assert (kwargs["ranked_path"], kwargs["dead_letters_path"]) == (f"{root}/ranked", f"{root}/dead_letters")


def test_the_batch_step_reads_only_the_beam_options_the_run_sends(monkeypatch):
    received = []
    monkeypatch.setattr("batch.pipeline.batch_rank", lambda config, options: received.append(options))
    monkeypatch.setenv("RANKER_BEAM_RUNNER", "DataflowRunner")  # `ranker batch-rank`'s variable, not the step's
    batch_rank_step(model_uri="m", candidates_uri="c", ranked_path="r", dead_letters_path="d")
    batch_rank_step(
        model_uri="m", candidates_uri="c", ranked_path="r", dead_letters_path="d",
        beam_options_json='{"direct_num_workers": 1}',
    )  # fmt: skip
    assert [(options.is_local, options.direct_num_workers) for options in received] == [(True, 0), (True, 1)]
