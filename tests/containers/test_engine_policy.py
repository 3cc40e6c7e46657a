"""Without a Docker engine the container tests skip, except where CI requires them (no engine needed here)."""

import pytest

from tests.containers.conftest import docker_unavailable


def test_a_missing_engine_skips_the_container_tests_by_default(monkeypatch):
    monkeypatch.delenv("RANKER_REQUIRE_DOCKER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no engine"):
        docker_unavailable("no engine")


def test_a_missing_engine_fails_where_ci_requires_docker(monkeypatch):
    monkeypatch.setenv("RANKER_REQUIRE_DOCKER", "1")
    with pytest.raises(pytest.fail.Exception, match="RANKER_REQUIRE_DOCKER=1 but no engine"):
        docker_unavailable("no engine")
