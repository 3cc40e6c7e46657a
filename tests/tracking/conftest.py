"""Tracking fixtures: the tiny exported MMoE of the serving tests."""

from tests.serving.conftest import model_dir  # noqa: F401  (the session fixture: a tiny exported MMoE)
