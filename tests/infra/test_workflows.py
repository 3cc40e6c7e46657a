"""The GitHub Actions workflows and the Cloud Build config: linted, least-privilege, keyless, pinned."""

import re
import shutil

import pytest
import yaml

from tests.infra.conftest import INFRA, ROOT, VENV_BIN, WORKFLOWS, checkov, failed_checks, run_tool, tool

WORKFLOW_FILES = tuple(sorted(WORKFLOWS.glob("*.yml")))
YAMLLINT_CONFIG = INFRA / "yamllint.yaml"


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    return workflow.get("on") or workflow[True]


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_actionlint_finds_nothing():
    # With shellcheck installed, actionlint also checks every `run:` script (an empty path turns that off).
    beside = VENV_BIN / "shellcheck"
    shellcheck = str(beside) if beside.exists() else shutil.which("shellcheck") or ""
    result = run_tool(tool("actionlint"), f"-shellcheck={shellcheck}", *WORKFLOW_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_finds_nothing():
    result = run_tool(tool("yamllint"), "--strict", "-c", YAMLLINT_CONFIG, WORKFLOWS, INFRA / "cloudbuild.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_the_workflows():
    report = checkov("github_actions", "--directory", WORKFLOWS)
    assert report["summary"]["passed"] > 0
    assert failed_checks(report) == []


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.name)
def test_every_workflow_starts_read_only_and_pins_its_actions(path):
    workflow = yaml.safe_load(path.read_text())
    assert workflow["permissions"] == {"contents": "read"}
    for step in steps(workflow):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+|[0-9a-f]{40})", step["uses"]), step["uses"]
    assert all("timeout-minutes" in job for job in workflow["jobs"].values())


def test_pull_requests_run_the_ci_entry_with_the_container_tests_required():
    workflow = load("ci.yml")
    assert "pull_request" in triggers(workflow)
    [job] = workflow["jobs"].values()
    assert job["env"]["RANKER_REQUIRE_DOCKER"] == "1"
    assert steps(workflow)[-1]["run"] == ".ci/run"


def test_retraining_runs_on_main_and_by_hand_and_authenticates_without_keys():
    workflow = load("retrain.yml")
    assert triggers(workflow)["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in triggers(workflow)
    text = (WORKFLOWS / "retrain.yml").read_text()
    assert "credentials_json" not in text, "service account keys are never used: Workload Identity Federation only"
    for name, job in workflow["jobs"].items():
        auth = [step for step in job["steps"] if step.get("uses", "").startswith("google-github-actions/auth@")]
        if auth:
            assert job["permissions"]["id-token"] == "write", name
            assert {"workload_identity_provider", "service_account"} <= set(auth[0]["with"])
        else:
            assert "id-token" not in job.get("permissions", {}), f"{name} needs no OIDC token"


def test_retraining_pushes_the_commit_images_then_compiles_and_submits_against_them():
    workflow = load("retrain.yml")
    assert workflow["env"]["RANKER_IMAGE"].endswith(":${{ github.sha }}")
    commands = [step.get("run", "") for step in steps(workflow)]
    order = [
        next(i for i, command in enumerate(commands) if marker in command)
        for marker in ("infra/build_images.sh --push", "ranker compile", "ranker submit", "infra/roll_schedule.sh")
    ]
    assert order == sorted(order)
    assert workflow["jobs"]["retrain"]["needs"] == "images"


def test_cloud_build_builds_pushes_and_submits_with_the_same_scripts():
    config = yaml.safe_load((INFRA / "cloudbuild.yaml").read_text())
    scripts = " ".join(arg for step in config["steps"] for arg in step["args"])
    for command in ("infra/build_images.sh --push", "ranker compile", "ranker submit", "infra/roll_schedule.sh"):
        assert command in scripts
    assert len(config["images"]) == 2
    assert (ROOT / "infra" / "roll_schedule.sh").exists()
