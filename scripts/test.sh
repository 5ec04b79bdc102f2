#!/usr/bin/env bash
# The one test command: what developers run and what CI runs.
#
# Finds PostgreSQL and Redis (DATABASE_URL / REDIS_URL, or the local
# defaults) or starts throwaway ones, then runs the format check, clippy,
# the compose file check, an end-to-end smoke test against a scripts/dev.sh
# stack, a schemathesis fuzz run against that stack's API (with and without
# a token), the short fault-injection run (scripts/chaos.sh), and every test
# (the dashboard's in a headless chromium when it is installed). Then, on a
# throwaway Redis Cluster (three masters, three replicas), the smoke test,
# the chaos run with a master killed, and the core library's, the API's and
# the workers' suites.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
# The first runs are on one Redis server; the cluster runs below say so
# themselves.
unset CONVEYOR_REDIS_CLUSTER

dev_pid=""
smoke_dbs=()
cleanup() {
  if [[ -n $dev_pid ]] && kill -0 "$dev_pid" 2>/dev/null; then
    kill -TERM "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
  fi
  if ((${#smoke_dbs[@]})) && psql_bin=$(pg_bin psql); then
    for db in "${smoke_dbs[@]}"; do
      "$psql_bin" "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
  fi
  stop_services
}
trap cleanup EXIT
ensure_services

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "docker-compose.yml against the Compose Specification"
bash scripts/check_compose.sh

# Starts a scripts/dev.sh stack (debug build) on database $1 and port $2,
# with logs in $3 and any further VAR=value settings, and runs the smoke
# test against it; the stack keeps running (dev_pid) until stop_smoke_stack.
smoke_test() {
  local db=$1 port=$2 logs=$3
  shift 3
  smoke_dbs+=("$db")
  env DEV_PROFILE=debug DEV_DATABASE="$db" DEV_LOG_DIR="$logs" DEV_WORKER_METRICS_PORT="$(free_port)" \
    CONVEYOR_API_ADDR="127.0.0.1:$port" CONVEYOR_PREFIX="smoke-$$" \
    CONVEYOR_RETRY_BASE_MS=100 CONVEYOR_RETRY_MAX_MS=400 CONVEYOR_SHUTDOWN_GRACE_SECS=2 \
    "$@" bash scripts/dev.sh >"$logs/dev.out" 2>&1 &
  dev_pid=$!
  for _ in $(seq 1 900); do
    curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    kill -0 "$dev_pid" 2>/dev/null || { cat "$logs/dev.out" >&2; die "scripts/dev.sh exited before the stack was ready"; }
    sleep 0.5
  done
  if ! DATABASE_URL=${DATABASE_URL%/*}/$db bash scripts/e2e_smoke.sh "http://127.0.0.1:$port"; then
    tail -n 30 "$logs"/*.log >&2
    die "the smoke test failed; logs above and in $logs"
  fi
}

stop_smoke_stack() {
  kill -TERM "$dev_pid"
  wait "$dev_pid" || true
  dev_pid=""
}

say "end-to-end smoke test against a scripts/dev.sh stack"
smoke_port=$(free_port)
smoke_db="conveyor_smoke_$$"
smoke_logs=$(mktemp -d "${TMPDIR:-/tmp}/conveyor-smoke.XXXXXX")
smoke_test "$smoke_db" "$smoke_port" "$smoke_logs"
say "fuzzing the API from its OpenAPI document (schemathesis), without a token"
bash scripts/fuzz_api.sh "http://127.0.0.1:$smoke_port"

say "fuzzing the API with a token required"
fuzz_port=$(free_port)
fuzz_token="fuzz-token-$$-$RANDOM$RANDOM"
DATABASE_URL=${DATABASE_URL%/*}/$smoke_db CONVEYOR_API_ADDR=127.0.0.1:$fuzz_port \
  CONVEYOR_PREFIX=smoke-$$ CONVEYOR_API_TOKEN=$fuzz_token \
  target/debug/conveyor-api >"$smoke_logs/fuzz-api.log" 2>&1 &
fuzz_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$fuzz_port/health" >/dev/null 2>&1 && break
  kill -0 "$fuzz_pid" 2>/dev/null || { cat "$smoke_logs/fuzz-api.log" >&2; die "the API with a token exited at start-up"; }
  sleep 0.2
done
fuzz_ok=0
bash scripts/fuzz_api.sh "http://127.0.0.1:$fuzz_port" "$fuzz_token" || fuzz_ok=$?
kill -TERM "$fuzz_pid"; wait "$fuzz_pid" || true
[[ $fuzz_ok == 0 ]] || die "the fuzz run with a token failed; the API's log is in $smoke_logs/fuzz-api.log"

stop_smoke_stack
if command -v redis-cli >/dev/null; then
  redis-cli -u "$REDIS_URL" --scan --pattern "smoke-$$:*" | xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null
fi
rm -rf "$smoke_logs"

# The chaos harness starts its own PostgreSQL and Redis, so it needs their
# server binaries even where the test servers run elsewhere.
if pg_bin initdb >/dev/null && command -v redis-server >/dev/null || [[ -n ${CONVEYOR_REQUIRE_CHAOS:-} ]]; then
  say "fault injection: scripts/chaos.sh (the short run, on the debug build)"
  bash scripts/chaos.sh --profile dev
else
  say "WARNING: skipped scripts/chaos.sh: it needs PostgreSQL's server binaries (initdb, pg_ctl) and redis-server installed locally"
fi

# The dashboard's browser tests drive Debian's chromium through
# chromedriver; without them they skip (CI requires them).
if command -v chromedriver >/dev/null && { command -v chromium || command -v chromium-browser || command -v google-chrome; } >/dev/null; then
  say "browser tests: chromedriver and chromium found"
elif [[ ${CONVEYOR_REQUIRE_BROWSER:-} == 1 ]]; then
  die "CONVEYOR_REQUIRE_BROWSER=1 but chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)"
else
  say "WARNING: the dashboard's browser tests will skip: install chromium and chromium-driver (Debian: apt-get install chromium chromium-driver)"
fi

# Tests wait on servers, not on the CPU: run more of them than there are cores.
threads=${CONVEYOR_TEST_THREADS:-4}
say "doc tests"
cargo test --workspace --locked --doc --quiet
if cargo nextest --version >/dev/null 2>&1; then
  say "cargo nextest run ($threads at a time)"
  cargo nextest run --workspace --locked --test-threads "$threads" --no-fail-fast
else
  say "cargo test ($threads at a time; install cargo-nextest for per-test processes)"
  cargo test --workspace --locked --no-fail-fast -- --test-threads "$threads"
fi

# Redis Cluster: the same code, told CONVEYOR_REDIS_CLUSTER=true, on a
# throwaway cluster started from redis-server (CI requires it).
if ! { { command -v redis-server || command -v valkey-server; } && { command -v redis-cli || command -v valkey-cli; }; } >/dev/null \
  && [[ -z ${CONVEYOR_REQUIRE_CLUSTER:-} ]]; then
  say "WARNING: skipped the Redis Cluster runs: they start a throwaway cluster from redis-server and redis-cli, which are not installed"
  exit 0
fi
start_redis_cluster
say "end-to-end smoke test against a scripts/dev.sh stack on a Redis Cluster ($CLUSTER_URL)"
cluster_logs=$(mktemp -d "${TMPDIR:-/tmp}/conveyor-smoke-cluster.XXXXXX")
smoke_test "conveyor_smoke_cluster_$$" "$(free_port)" "$cluster_logs" \
  REDIS_URL="$CLUSTER_URL" CONVEYOR_REDIS_CLUSTER=true
stop_smoke_stack
rm -rf "$cluster_logs"

if pg_bin initdb >/dev/null || [[ -n ${CONVEYOR_REQUIRE_CHAOS:-} ]]; then
  say "fault injection on a Redis Cluster, a master killed mid-run: scripts/chaos.sh --cluster"
  bash scripts/chaos.sh --profile dev --cluster
else
  say "WARNING: skipped scripts/chaos.sh --cluster: it needs PostgreSQL's server binaries (initdb, pg_ctl) installed locally"
fi

# A proxy in front of one node cannot cut a cluster client's connections
# (it talks to every node directly), so the two tests that cut Redis with
# one run on the single server only; the cluster chaos run kills a master
# instead. The browser tests read what the HTTP dashboard tests read.
say "the core library's, the API's and the workers' suites on the Redis Cluster"
proxied=(outages::a_worker_survives_a_redis_outage_and_keeps_working
  client::a_publish_redis_missed_is_tried_again_without_waiting_for_the_reconciler)
if cargo nextest --version >/dev/null 2>&1; then
  REDIS_URL=$CLUSTER_URL CONVEYOR_REDIS_CLUSTER=true \
    cargo nextest run --locked -p conveyor -p api -p worker --test-threads "$threads" --no-fail-fast \
    -E "not (test(=${proxied[0]}) | test(=${proxied[1]}) | test(/^browser::/))"
else
  REDIS_URL=$CLUSTER_URL CONVEYOR_REDIS_CLUSTER=true \
    cargo test --locked -p conveyor -p api -p worker --no-fail-fast -- --test-threads "$threads" \
    --skip "${proxied[0]}" --skip "${proxied[1]}" --skip browser::
fi
