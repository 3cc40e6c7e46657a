"""``ranker materialize``: what it refuses (one line, nothing written), and that each run leaves exactly one
snapshot in the online store."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from components.features.feature_store import MaterializeConfig, materialize
from components.features.materialize_component import materialize_features
from components.features.pipeline import ExtractionConfig, extract_features
from components.features.snapshot import write_metadata
from pipelines.cli import main as ranker
from ranker_core.cli_support import UserError
from ranker_core.feature_store import SNAPSHOT_DIR, SNAPSHOT_FILE
from tests.data.impressions import impressions_frame, write_parquet
from tests.serving.online_store import LOCAL, static_entities


def write_snapshot(examples: Path, entities: dict) -> Path:
    """An ``entities/snapshot.json`` with these entities (enough for materialize to read it)."""
    (examples / SNAPSHOT_DIR).mkdir(parents=True)
    (examples / SNAPSHOT_DIR / SNAPSHOT_FILE).write_text(json.dumps({"cutoff": 0, "entities": entities, "match": []}))
    return examples


ONE_ENTITY = {"listing_id": {"keys": ["listing_id"], "table": "listing_id.parquet", "defaults": {}, "stored": []}}


def test_a_file_as_the_repo_is_one_line_and_left_alone(tmp_path, capsys):
    examples = write_snapshot(tmp_path / "examples", ONE_ENTITY)
    file = tmp_path / "afile"
    file.write_text("mine")
    assert ranker(["materialize", "--examples", str(examples), "--feature-store", str(file)]) == 2
    assert (
        capsys.readouterr().err
        == f"ranker materialize: --feature-store {file}: a file, not a folder (the Feast repo is a folder)\n"
    )
    assert ranker(["materialize", "--examples", str(examples), "--feature-store", str(file / "repo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ranker materialize: --feature-store {file / 'repo'}: cannot create the repo folder (")
    assert err.count("\n") == 1 and file.read_text() == "mine"


def test_a_snapshot_without_entities_is_refused_and_no_repo_is_written(tmp_path, capsys):
    """An extraction whose spec has no ``history`` wrote such a snapshot before (it writes none now)."""
    examples = write_snapshot(tmp_path / "examples", {})
    assert ranker(["materialize", "--examples", str(examples), "--feature-store", str(tmp_path / "repo")]) == 2
    path = examples / SNAPSHOT_DIR / SNAPSHOT_FILE
    assert capsys.readouterr().err == (
        f"ranker materialize: no entity snapshot at {path} (it has no history entities): "
        "extract features with a spec that has `history`\n"
    )
    assert not (tmp_path / "repo").exists()


def test_an_examples_folder_that_does_not_exist_is_named_as_such(tmp_path, capsys):
    """It was reported as a folder without a snapshot, with advice about the dataset spec's history."""
    missing = tmp_path / "nonexist"
    assert ranker(["materialize", "--examples", str(missing), "--feature-store", str(tmp_path / "repo")]) == 2
    assert capsys.readouterr().err == f"ranker materialize: --examples {missing}: no such folder\n"
    from serving.skew_check import read_snapshot

    with pytest.raises(UserError, match=f"--examples {missing}: no such folder"):
        read_snapshot(str(missing))  # ranker skew-check's reader
    assert not (tmp_path / "repo").exists()


def test_extraction_writes_no_snapshot_without_history_entities(tmp_path):
    write_metadata({"cutoff": 0, "entities": {}}, str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()
    write_metadata({"cutoff": 0, "entities": ONE_ENTITY}, str(tmp_path / "some"))
    assert json.loads((tmp_path / "some" / SNAPSHOT_DIR / SNAPSHOT_FILE).read_text())["entities"] == ONE_ENTITY


def test_the_pipeline_step_stores_nothing_for_examples_without_a_snapshot(tmp_path):
    """A blessed run of a spec without ``history`` registers its model; materializing has nothing to do."""
    examples = write_snapshot(tmp_path / "examples", {})
    repo = SimpleNamespace(path=str(tmp_path / "repo"), metadata={})
    materialize_features.python_func(examples=SimpleNamespace(path=str(examples)), model_version="3", feature_repo=repo)
    assert repo.metadata["views"] == [] and repo.metadata["repo"] == ""
    assert "no entity snapshot" in repo.metadata["skipped"]
    assert not (tmp_path / "repo").exists()


# -- materializing again replaces the online rows ---------------------------------------------------------------


def extract(raw: pd.DataFrame, folder: Path) -> Path:
    examples = folder / "examples"
    extract_features(ExtractionConfig(str(write_parquet(raw, folder / "raw")), "simulator", str(examples), beam=LOCAL))
    return examples


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict[str, Path]:
    """Two extractions of one log: the older ends halfway, the newer has listings and a user that start after it."""
    raw = static_entities(impressions_frame(n_requests=160, candidates=6, seed=5))
    times = raw["timestamp"].to_numpy()
    halfway = int(np.quantile(times, 0.5))
    late = (times >= halfway) & (times < int(np.quantile(times, 0.8)))  # before the newer snapshot's cutoff
    newer = raw.copy()
    newer.loc[late, "listing_id"] = "l-late-" + newer.loc[late, "listing_id"]
    newer.loc[late, "user_id"] = "u-late"
    root = tmp_path_factory.mktemp("snapshots")
    return {"older": extract(raw[times < halfway], root / "older"), "newer": extract(newer, root / "newer")}


def online_keys(repo: Path) -> dict[str, int]:
    """Rows (entity keys) per online table."""
    with contextlib.closing(sqlite3.connect(repo / "data" / "online_store.db")) as database:
        tables = [name for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            table: database.execute(f"SELECT COUNT(DISTINCT entity_key) FROM {table}").fetchone()[0] for table in tables
        }


def view_values(repo: Path, view: str, keys: list[str]) -> dict[str, np.ndarray]:
    """The stored features of ``keys`` in one view, read as the server reads them (an unknown key: its defaults)."""
    from serving.feature_store import OnlineFeatures

    features = OnlineFeatures(str(repo), "listing_id", cache_seconds=0)
    return next(reader for reader in features.views if reader.name == view).values(keys)


@pytest.mark.slow
def test_materializing_an_older_snapshot_leaves_no_row_of_the_newer_one(snapshots, tmp_path):
    repo = tmp_path / "repo"
    materialize(MaterializeConfig(examples=str(snapshots["newer"]), repo=str(repo), model_version="2"))
    listings = pd.read_parquet(snapshots["newer"] / SNAPSHOT_DIR / "listing_id.parquet")["listing_id"]
    late = [key for key in listings if key.startswith("l-late-")][:3]
    assert late and (view_values(repo, "listing_id", late)["hist_listing_id_impressions"] > 0).all()

    summary = materialize(MaterializeConfig(examples=str(snapshots["older"]), repo=str(repo), model_version="1"))
    assert (view_values(repo, "listing_id", late)["hist_listing_id_impressions"] == 0).all(), "unknown: the default"
    assert (view_values(repo, "user", ["u-late"])["hist_user_impressions"] == 0).all()
    expected = {
        f"ranker_{name}": len(pd.read_parquet(snapshots["older"] / SNAPSHOT_DIR / f"{name}.parquet"))
        for name in summary["views"]
    }
    assert online_keys(repo) == expected, "exactly the older snapshot's entities"
