"""Static checks of the infrastructure code: paths, tool locations and one shared checkov scan."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TERRAFORM = INFRA / "terraform"
WORKFLOWS = ROOT / ".github" / "workflows"
DOCKERFILES = (INFRA / "Dockerfile", INFRA / "serving.Dockerfile")
SCRIPTS = tuple(sorted(INFRA.glob("*.sh")))
# The linters the dev extra installs into this virtual environment.
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The path of a linter installed beside this interpreter (or on PATH)."""
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -c constraints.txt -e '.[dev]'", pytrace=False)
    return found


def optional_tool(name: str, package: str) -> str:
    """A linter the dev extra does not install yet: its path, or a skip naming the package to pin."""
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: pip install {package}")
    return found


def run_tool(*command: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=ROOT, timeout=600)


def checkov(framework: str, *targets: str | Path) -> dict:
    """checkov's JSON report of one framework over ``targets`` (``--directory D`` / ``--file F`` pairs).

    ``infra/checkov.sh`` runs a pinned checkov from its own virtual
    environment (made on first use, which needs the package index).
    """
    result = run_tool(INFRA / "checkov.sh", "--output", "json", "--framework", framework, *targets)
    decoder = json.JSONDecoder()
    try:
        report, _ = decoder.raw_decode(result.stdout.strip())
    except json.JSONDecodeError:
        pytest.fail(f"checkov did not run (exit {result.returncode}):\n{result.stderr[-3000:]}", pytrace=False)
    reports = report if isinstance(report, list) else [report]
    [found] = [report for report in reports if report["check_type"] == framework]
    return found


def failed_checks(report: dict) -> list[str]:
    """``CHECK_ID file:lines name`` of every failed check, for a readable assertion message."""
    return [
        f"{check['check_id']} {check['file_path']}:{check['file_line_range']} {check['check_name']}"
        for check in report["results"]["failed_checks"]
    ]
