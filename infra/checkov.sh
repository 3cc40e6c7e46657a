#!/usr/bin/env bash
# Run checkov, pinned, from its own virtual environment (made on first use, a minute):
# checkov pins packaging<24, which the project's constraints.txt does not allow in .venv.
#
#   infra/checkov.sh --directory infra/terraform --framework terraform
#   infra/checkov.sh --file infra/Dockerfile --framework dockerfile
#
# Environment (optional): CHECKOV_VENV (default infra/.venv-checkov), PYTHON (default python3).
set -euo pipefail

CHECKOV_VERSION=3.3.30
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${CHECKOV_VENV:-$ROOT/infra/.venv-checkov}

if [[ $("$VENV/bin/checkov" --version 2>/dev/null) != "$CHECKOV_VERSION" ]]; then
  echo "[checkov] installing checkov==$CHECKOV_VERSION into $VENV" >&2
  "${PYTHON:-python3}" -m venv --clear "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
fi
# --skip-download: no calls to the Prisma Cloud API (offline, and no code leaves the machine).
exec "$VENV/bin/checkov" --skip-download --quiet --compact "$@"
