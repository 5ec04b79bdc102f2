#!/usr/bin/env bash
# The one test command: what developers run and what CI runs.
#
# Finds PostgreSQL and Redis (DATABASE_URL / REDIS_URL, or the local
# defaults) or starts throwaway ones, then runs the format check, clippy and
# every test against them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

trap stop_services EXIT
ensure_services

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Tests wait on servers, not on the CPU: run more of them than there are cores.
threads=${CONVEYOR_TEST_THREADS:-4}
if cargo nextest --version >/dev/null 2>&1; then
  say "doc tests"
  cargo test --workspace --locked --doc --quiet
  say "cargo nextest run ($threads at a time)"
  cargo nextest run --workspace --locked --test-threads "$threads" --no-fail-fast
else
  say "cargo test ($threads at a time; install cargo-nextest for per-test processes)"
  cargo test --workspace --locked --no-fail-fast -- --test-threads "$threads"
fi
say "all checks passed"
