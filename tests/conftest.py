"""Shared fixtures. The legacy-Keras switch must be set before TensorFlow loads."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> Path:
    """The public sample datasets beside the checkout (``../shared/datasets``), or a skip."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"public dataset samples not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture
def kfp_local_root(tmp_path) -> Path:
    """``kfp.local`` set up to run components in this virtual environment; the pipeline root it writes to."""
    from kfp import local

    root = tmp_path / "root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    return root


SYNTHETIC_MODULES = ("home_feed", "item_page", "search")
SYNTHETIC_CATEGORIES = ("art", "toys", "jewelry", "home", "clothing")


def synthetic_feature_spec():
    """A feature spec with one feature of every kind, as extraction would write it."""
    from ranker_core.schema import DEFAULT_TASKS, Feature, FeatureSpec

    return FeatureSpec(
        tasks=list(DEFAULT_TASKS),
        features=[
            Feature("user_id", "hashed", hash_buckets=64),
            Feature("listing_id", "hashed", hash_buckets=256),
            Feature("category", "categorical", vocabulary=list(SYNTHETIC_CATEGORIES)),
            Feature("tags", "list", vocabulary=["vintage", "handmade", "gift", "sale"]),
            Feature(
                "price",
                "numeric",
                transform="log1p",
                encoding="pwl",
                mean=3.0,
                std=1.0,
                min=0.0,
                max=7.0,
                quantiles=[1.5, 2.5, 3.0, 3.5, 4.5],
            ),
            Feature(
                "listing_ctr",
                "numeric",
                encoding="quantile",
                mean=0.1,
                std=0.05,
                min=0.0,
                max=0.4,
                quantiles=[0.05, 0.08, 0.1, 0.12, 0.16],
            ),
            Feature("user_category_affinity", "numeric", mean=0.0, std=1.0, min=-3.0, max=3.0),
        ],
        modules=list(SYNTHETIC_MODULES),
        roles={"user_id": "user_id", "item_id": "listing_id", "timestamp": "timestamp"},
        dataset="synthetic",
    )


def synthetic_rows(n_requests: int, candidates: int, seed: int, modules=SYNTHETIC_MODULES) -> list[dict]:
    """Rows with a planted, module-dependent signal, so a model that learns can beat random.

    Relevance depends on affinity, log-price and CTR with weights that differ by
    module (price helps on search, hurts on the home feed), and the funnel holds:
    favorite, add-to-cart and purchase only follow a click.
    """
    from ranker_core.schema import label_key

    rng = np.random.default_rng(seed)
    price_weight = {"home_feed": -1.0, "item_page": 0.0, "search": 1.0}
    rows = []
    for request in range(n_requests):
        module = modules[request % len(modules)]
        user = int(rng.integers(0, 50))
        for position in range(candidates):
            affinity = float(rng.normal())
            price = float(np.exp(rng.normal(3.0, 1.0)))
            ctr = float(rng.beta(2, 18))
            logit = 1.2 * affinity + price_weight.get(module, 0.0) * (np.log1p(price) - 3.0) + 8 * (ctr - 0.1) - 1.0
            clicked = rng.random() < 1 / (1 + np.exp(-logit))
            favorited = clicked and rng.random() < 1 / (1 + np.exp(-(logit - 1.0)))
            carted = clicked and rng.random() < 1 / (1 + np.exp(-(logit - 1.5)))
            purchased = carted and rng.random() < 0.5
            rows.append(
                {
                    "request_id": f"r{seed}-{request}",
                    "module_name": module,
                    "position": position,
                    "timestamp": 1_700_000_000 + request * 60,
                    label_key("click"): int(clicked),
                    label_key("favorite"): int(favorited),
                    label_key("add_to_cart"): int(carted),
                    label_key("purchase"): int(purchased),
                    "user_id": f"u{user}",
                    "listing_id": f"l{rng.integers(0, 500)}",
                    "category": SYNTHETIC_CATEGORIES[int(rng.integers(0, len(SYNTHETIC_CATEGORIES)))],
                    "tags": "|".join(sorted(set(rng.choice(["vintage", "handmade", "gift", "sale"], size=2)))),
                    "price": price,
                    "listing_ctr": ctr,
                    "user_category_affinity": affinity,
                }
            )
    return rows


@pytest.fixture(scope="session")
def synthetic_examples(tmp_path_factory) -> Path:
    """A small extracted-examples folder (feature spec + train/eval/test shards) with a planted signal.

    For tests of the trainer, the baseline, the evaluation and the server that
    should not depend on the simulator or the Beam extraction.
    """
    return write_synthetic_examples(tmp_path_factory.mktemp("synthetic_examples"), synthetic_feature_spec())


def write_synthetic_examples(folder: Path, spec, relogged=None) -> Path:
    """The synthetic train/eval/test shards and ``spec`` (with each split's counts) written to ``folder``;
    ``relogged`` (rows -> rows), when given, changes each split's rows first (e.g. their logged positions)."""
    from ranker_core.schema import SplitStats
    from trainer.examples import write_shards

    sizes = {"train": (300, 0), "eval": (80, 1), "test": (80, 2)}
    for split, (n_requests, seed) in sizes.items():
        rows = synthetic_rows(n_requests, candidates=10, seed=seed)
        rows = relogged(rows) if relogged else rows
        write_shards(rows, folder, split, spec)
        spec.splits[split] = SplitStats(
            rows=len(rows),
            requests=n_requests,
            positives={task: sum(row[f"label_{task}"] for row in rows) for task in spec.task_names},
            rows_per_module={module: sum(row["module_name"] == module for row in rows) for module in spec.modules},
        )
    spec.save(folder / "feature_spec.json")
    return folder
