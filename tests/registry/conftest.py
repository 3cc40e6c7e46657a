"""Registry fixtures: model folders (really exported, or fake ones that only look like models) and evaluations."""

import json
import shutil
from pathlib import Path

import pytest

from components.registry.core import RegistryConfig
from tests.serving.conftest import model_dir  # noqa: F401  (the session fixture: a tiny exported MMoE)
from trainer.digest import judged_model


def write_fake_model(folder: Path, weights: bytes) -> Path:
    """A folder that looks like an exported model but does not load (a text graph)."""
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.data-00000-of-00001").write_bytes(weights)
    (folder / "feature_spec.json").write_text(json.dumps({"tasks": [], "source": {"uri": "gs://logs/*.parquet"}}))
    return folder


def copy_model(exported: Path, folder: Path, variant: str) -> Path:
    """A copy of a really exported model whose feature spec names ``gs://logs/<variant>/*.parquet`` as its source.

    The source differs per ``variant``, so each copy has its own digest (a model of its own to the registry).
    """
    shutil.copytree(exported, folder)
    spec_path = folder / "feature_spec.json"
    spec = json.loads(spec_path.read_text())
    spec_path.write_text(json.dumps({**spec, "source": {"uri": f"gs://logs/{variant}/*.parquet"}}))
    return folder


def write_evaluation(folder: Path, blessed: bool, ndcg: float, judged: Path | None = None) -> Path:
    """``metrics.json`` and ``blessing.json`` as the evaluation writes them, judging the model in ``judged``."""
    folder.mkdir(parents=True)
    reasons = [] if blessed else ["mmoe ndcg@10 0.41 is below the per-module GBDT 0.50"]
    blessing = {"blessed": blessed, "reasons": reasons, "primary_metric": ndcg, "baseline_metric": 0.5}
    if judged is not None:
        blessing["judged_model"] = judged_model(str(judged))
    metrics = {"ndcg": {"search": {"click": {"mmoe": ndcg, "gbdt_per_module": 0.5}}}, "n_requests": 80}
    (folder / "metrics.json").write_text(json.dumps({**metrics, "blessing": blessing}))
    (folder / "blessing.json").write_text(json.dumps(blessing))
    return folder


def edit_blessing(report: Path, **fields) -> Path:
    """Overwrite fields of ``report/blessing.json`` and of the copy in ``metrics.json``; the blessing's path."""
    path = report / "blessing.json"
    blessing = {**json.loads(path.read_text()), **fields}
    path.write_text(json.dumps(blessing))
    metrics = json.loads((report / "metrics.json").read_text())
    (report / "metrics.json").write_text(json.dumps({**metrics, "blessing": blessing}))
    return path


@pytest.fixture
def config(tmp_path) -> RegistryConfig:
    return RegistryConfig(work_dir=str(tmp_path / "work"))
