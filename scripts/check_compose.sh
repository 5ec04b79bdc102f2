#!/usr/bin/env bash
# Validates docker-compose.yml without a Docker engine: against the Compose
# Specification's JSON schema (check-jsonschema's built-in copy), then
# structurally (scripts/check_compose.py).
# check-jsonschema is installed from PyPI into target/tools/ on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/tools/compose-check
# A venv stops working when its directory moves (its scripts name their
# interpreter by absolute path): rebuild it then, rather than fail.
if ! "$venv/bin/check-jsonschema" --version >/dev/null 2>&1; then
  rm -rf "$venv"
  command -v python3 >/dev/null || { echo "error: python3 is needed to validate docker-compose.yml" >&2; exit 1; }
  echo "==> installing check-jsonschema into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'check-jsonschema==0.*'
fi

"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
"$venv/bin/python" scripts/check_compose.py
