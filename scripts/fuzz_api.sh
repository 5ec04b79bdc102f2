#!/usr/bin/env bash
# Fuzzes a running API from its own OpenAPI document with schemathesis,
# every check on: no 5xx, every status and body as documented, invalid
# input refused, valid input accepted, auth enforced where declared.
#
#   scripts/fuzz_api.sh http://127.0.0.1:8000 [token]
#
# Schemathesis is installed from PyPI into target/tools/ on first use.
# FUZZ_EXAMPLES (default 50) sets the examples per operation; the seed is
# fixed so a run can be repeated exactly.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: scripts/fuzz_api.sh BASE_URL [TOKEN]}
token=${2:-}

venv=target/tools/schemathesis
if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
  rm -rf "$venv"
  command -v python3 >/dev/null || { echo "error: python3 is needed to fuzz the API" >&2; exit 1; }
  echo "==> installing schemathesis into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis==4.32.5'
fi

auth=()
if [[ -n $token ]]; then
  auth=(--header "Authorization: Bearer $token")
fi
# Schemathesis and Hypothesis keep caches in the working directory: run
# from one under target/, not from the work tree.
repo=$PWD
mkdir -p target/fuzz
cd target/fuzz
# Long-polling claims are cut short (scripts/fuzz_hooks.py).
PYTHONPATH="$repo/scripts" SCHEMATHESIS_HOOKS=fuzz_hooks \
  "$repo/$venv/bin/schemathesis" --config-file "$repo/scripts/schemathesis.toml" run "$base/openapi.json" \
  --checks all --max-examples "${FUZZ_EXAMPLES:-50}" --seed 20261129 \
  --request-timeout 10 "${auth[@]}"
