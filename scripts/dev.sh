#!/usr/bin/env bash
# The whole stack without Docker: PostgreSQL and Redis (found, or started
# throwaway), conveyor-migrate, conveyor-api and two conveyor-workers.
# Ctrl-C stops everything this script started.
#
# Environment (all optional):
#   DATABASE_URL, REDIS_URL   servers to use (default: the local ones, else throwaway)
#   DEV_DATABASE              database created and used on that server (default conveyor_dev,
#                             or the database named in DATABASE_URL)
#   DEV_WORKERS               number of workers (default 2)
#   DEV_PROFILE               release (default) or debug
#   DEV_LOG_DIR               where logs go (default .dev/logs)
#   DEV_WORKER_METRICS_PORT   first worker's metrics port (default 9101; one port per worker)
#   CONVEYOR_*                any setting of docs/operations.md, passed through
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

workers=${DEV_WORKERS:-2}
profile=${DEV_PROFILE:-release}
logs=${DEV_LOG_DIR:-.dev/logs}
export CONVEYOR_API_ADDR=${CONVEYOR_API_ADDR:-127.0.0.1:8000}
pids=()

cleanup() {
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    say "stopping (workers get their shutdown grace period)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  stop_services
}
trap cleanup EXIT
trap 'exit 130' INT TERM

requested_db=""
if [[ -n ${DATABASE_URL:-} ]]; then
  requested_db=${DATABASE_URL##*/}; requested_db=${requested_db%%\?*}
  [[ $requested_db == postgres ]] && requested_db=""
fi
ensure_services
db_name=${DEV_DATABASE:-${requested_db:-conveyor_dev}}
server_url=${DATABASE_URL%/*}/postgres
export DATABASE_URL=${DATABASE_URL%/*}/$db_name

psql_bin=$(pg_bin psql) || psql_bin=""
if [[ -n $psql_bin ]]; then
  if ! "$psql_bin" "$server_url" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1; then
    say "creating database $db_name"
    "$psql_bin" "$server_url" -qc "CREATE DATABASE \"$db_name\""
  fi
else
  say "psql not found: assuming database $db_name exists"
fi

case $profile in
  release) cargo_flags=(--release); bin_dir=target/release ;;
  debug) cargo_flags=(); bin_dir=target/debug ;;
  *) die "DEV_PROFILE must be release or debug (got $profile)" ;;
esac
say "building ($profile)"
cargo build "${cargo_flags[@]}" --locked --bin conveyor-api --bin conveyor-worker --bin conveyor-migrate

say "migrating $db_name"
"$bin_dir/conveyor-migrate" up

# Each process gets a session of its own, so a Ctrl-C in this terminal
# reaches only this script, which then stops them with one SIGTERM each (a
# second signal would make a worker skip its graceful shutdown).
detach=()
command -v setsid >/dev/null && detach=(setsid)
mkdir -p "$logs"
"${detach[@]}" "$bin_dir/conveyor-api" >"$logs/api.log" 2>&1 &
pids+=($!)
metrics_base=${DEV_WORKER_METRICS_PORT:-9101}
for n in $(seq 1 "$workers"); do
  CONVEYOR_WORKER_METRICS_ADDR=127.0.0.1:$((metrics_base + n - 1)) \
    "${detach[@]}" "$bin_dir/conveyor-worker" >"$logs/worker-$n.log" 2>&1 &
  pids+=($!)
done

base="http://$CONVEYOR_API_ADDR"
base=${base/0.0.0.0/127.0.0.1}
for _ in $(seq 1 600); do
  curl -fsS "$base/ready" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { tail -n 20 "$logs/api.log" >&2; die "conveyor-api exited; see $logs/api.log"; }
  sleep 0.1
done
curl -fsS "$base/ready" >/dev/null || die "conveyor-api did not become ready within 60 s; see $logs/api.log"

cat <<INFO

Conveyor is running ($workers workers):
  dashboard $base/ui
  API       $base
  docs      $base/docs
  metrics   $base/metrics, workers: http://127.0.0.1:$metrics_base/metrics ... (one port each)
  logs      $logs/api.log, $logs/worker-*.log
  database  $db_name on ${server_url%/postgres}  (DATABASE_URL=$DATABASE_URL)
  redis     $REDIS_URL  (prefix ${CONVEYOR_PREFIX:-conveyor})

Try:  scripts/e2e_smoke.sh $base
Press Ctrl-C to stop.
INFO

# Stop everything if any process dies; otherwise wait for Ctrl-C.
set +e
wait -n "${pids[@]}"
status=$?
say "a Conveyor process exited (status $status); stopping the rest. Logs: $logs"
exit 1
