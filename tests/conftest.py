"""Shared fixtures. The legacy-Keras switch must be set before TensorFlow loads."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> Path:
    """The public sample datasets beside the checkout (``../shared/datasets``), or a skip."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"public dataset samples not found at {SHARED_DATASETS}")
    return SHARED_DATASETS
