"""What the images promise: the project importable, `ranker` on PATH, non-root, lean, a clean build context."""

import subprocess

import pytest

from tests.containers.conftest import CONTAINER_TEST_TIMEOUT, ROOT

pytestmark = [pytest.mark.container, CONTAINER_TEST_TIMEOUT]


def run_in(client, image: str, script: str, **run_args) -> str:
    """Run a shell script in a fresh container of ``image`` and return its output (stdout and stderr)."""
    output = client.containers.run(image, ["sh", "-c", script], remove=True, **run_args)
    return output.decode()


def test_the_project_image_runs_every_step_as_a_non_root_user(docker_client, images):
    script = (
        "id -u; command -v python3; command -v ranker; "
        "python3 -c 'import kfp.dsl.executor_main, trainer, components, pipelines, serving; print(\"imports ok\")'; "
        "python3 -c 'import os; print(os.environ[\"TF_USE_LEGACY_KERAS\"])'; "
        "ranker --help"
    )
    lines = run_in(docker_client, images.ranker, script).splitlines()
    assert lines[0] != "0", "the image must not run as root"
    assert lines[1:5] == ["/opt/venv/bin/python3", "/opt/venv/bin/ranker", "imports ok", "1"]
    assert any("train-baseline" in line for line in lines[5:]), "ranker --help lists the pipeline's steps"


def test_the_image_works_as_an_arbitrary_uid_like_kubernetes_and_docker_runner_use(docker_client, images):
    script = 'touch "$HOME/probe" && python3 -c "import trainer"'
    assert run_in(docker_client, images.ranker, script, user="4242:4242") == ""


def test_the_final_stage_has_no_build_tools_pip_cache_or_build_credentials(docker_client, images):
    script = (
        "for tool in gcc cc g++ make git; do command -v $tool && echo FOUND $tool; done; "
        "for path in /etc/pip-build /src /root/.cache/pip /home/ranker/.cache/pip; do "
        "  [ -e $path ] && echo FOUND $path; done; true"
    )
    assert "FOUND" not in run_in(docker_client, images.ranker, script, user="0:0")


def test_the_serving_image_is_configured_for_vertex_ai_and_kserve(docker_client, images):
    config = docker_client.images.get(images.serving).attrs["Config"]
    environment = dict(item.split("=", 1) for item in config["Env"])
    assert config["Entrypoint"] == ["ranker", "serve"]
    assert config["User"] not in ("", "0", "root", "0:0")
    assert "8080/tcp" in config["ExposedPorts"]
    assert "AIP_HTTP_PORT" not in environment  # it would hide the PORT Knative and Cloud Run set (8080 without)
    assert environment["AIP_PREDICT_ROUTE"] == "/predict"
    assert config["Healthcheck"]["Test"][0] == "CMD"


def test_the_build_context_holds_the_package_and_nothing_local(docker_client, images):
    """.dockerignore keeps .venv, .git, work_dir, tests and caches out of every build."""
    probe = f"FROM {images.ranker}\nCOPY . /context/\nUSER 0\nRUN find /context -maxdepth 2 | sort > /listing\n"
    image_id = subprocess.run(
        ["docker", "build", "--quiet", "-f", "-", str(ROOT)], input=probe, capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        listing = run_in(docker_client, image_id, "cat /listing").split()
    finally:
        docker_client.images.remove(image_id, force=True)
    for needed in ("setup.py", "constraints.txt", "trainer", "components", "pipelines", "serving"):
        assert f"/context/{needed}" in listing
    for excluded in (".venv", ".git", "work_dir", "tests", "docs", ".pytest_cache", ".ruff_cache"):
        assert f"/context/{excluded}" not in listing
    assert not [path for path in listing if "__pycache__" in path]
