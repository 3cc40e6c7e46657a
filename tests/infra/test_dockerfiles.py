"""The Dockerfiles: hadolint and checkov clean, multi-stage, non-root, no pip cache, no build tools shipped."""

import re

import pytest

from tests.infra.conftest import DOCKERFILES, INFRA, ROOT, checkov, failed_checks, run_tool, tool


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_finds_nothing(dockerfile):
    result = run_tool(tool("hadolint"), dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_the_dockerfiles():
    report = checkov("dockerfile", *[arg for path in DOCKERFILES for arg in ("--file", path)])
    assert report["summary"]["passed"] > 0
    assert failed_checks(report) == []


def stages(dockerfile_text: str) -> list[str]:
    """Each build stage's instructions, in order."""
    return re.split(r"^FROM ", dockerfile_text, flags=re.MULTILINE)[1:]


def test_the_project_image_ships_only_the_final_stage_as_a_non_root_user():
    text = (INFRA / "Dockerfile").read_text()
    *build_stages, final = stages(text)
    assert build_stages, "dependencies are installed in a build stage"
    assert re.search(r"^USER (?!0|root)\S+", final, flags=re.MULTILINE)
    assert "pip-build" not in final, "the host's pip settings and CA bundle stay in the build stages"
    assert "PIP_NO_CACHE_DIR=1" in text
    assert not re.search(r"apt-get install[^\n]*(gcc|build-essential|g\+\+)", final)
    assert re.search(r'pip install[^\n]*-c constraints\.txt "\.\[gcp,serve,feast\]"', text), (
        "installs the pinned extras"
    )


def test_the_serving_image_is_built_from_the_project_image_and_serves():
    text = (INFRA / "serving.Dockerfile").read_text()
    assert re.search(r"^FROM \$\{RANKER_IMAGE\}", text, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["ranker", "serve"]' in text
    assert "HEALTHCHECK" in text


def test_the_build_context_is_an_allowlist_of_what_the_dockerfile_copies():
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*", "everything is excluded unless allowed"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", (INFRA / "Dockerfile").read_text(), flags=re.MULTILINE))
    sources = {source.rstrip("/") for sources in copied for source in sources.split()}
    assert sources <= allowed, f"COPY sources excluded by .dockerignore: {sources - allowed}"
