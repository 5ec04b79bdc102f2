#!/usr/bin/env bash
# Benchmarks Conveyor on this machine against a stack it starts itself: a
# release build, its own database and Redis prefix, the API, and N workers
# (started per scenario by conveyor-bench). Prints every figure as the median
# of several runs with min and max, beside the machine's own ceilings
# (pgbench, redis-benchmark) measured in the same run, and writes JSON to
# target/bench/results.json. All traffic goes to 127.0.0.1; every load loop
# is bounded in count and time.
#
#   scripts/bench.sh [--cluster] [conveyor-bench options]
#     --cluster        Redis as a throwaway cluster (three masters, three
#                      replicas) started here; JSON to target/bench/results-cluster.json
#     --workers N (2)  --concurrency C (100)  --runs R (3)
#     --submit-count --drain-count (100000) --e2e-count --latency-count
#     --scenarios submit,submit-batch,drain,drain-defaults,end-to-end,latency,remote-drain
#     (and on request, each with --runs 1:
#       --scenarios reconcile [--reconcile-count N]
#       --scenarios growth [--finished-rows N] [--backlog N] [--load-seconds S]
#                   [--plots-dir D]: 1/2/4 workers, a table of finished rows,
#                   a deep backlog, latency at half load; PNG plots
#       --scenarios instructions [--cost-jobs N]: instructions per job of the
#                   API and of a worker, under valgrind's callgrind)
#   conveyor-bench --plot-from F [--plots-dir D] draws the plots of an
#   earlier results file again.
#   BENCH_SQL='...' runs those statements on the benchmark's database after
#   its migrations (to measure a schema change before writing it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

cluster=false
bench_args=()
for arg in "$@"; do
  if [[ $arg == --cluster ]]; then cluster=true; else bench_args+=("$arg"); fi
done

api_pid=""
bench_db="conveyor_bench_$$"
pgbench_db="conveyor_pgbench_$$"
cleanup() {
  [[ -n $api_pid ]] && kill -TERM "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  if psql_bin=$(pg_bin psql); then
    for db in "$bench_db" "$pgbench_db"; do
      "$psql_bin" "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
  fi
  [[ $cluster == true ]] || { command -v redis-cli >/dev/null && redis-cli -u "$REDIS_URL" del mylist >/dev/null 2>&1; } || true
  stop_services
}
trap cleanup EXIT
# The single-server figures are measured on one Redis; --cluster says
# otherwise.
unset CONVEYOR_REDIS_CLUSTER
ensure_services
redis_settings=(--redis-url "$REDIS_URL")
if [[ $cluster == true ]]; then
  start_redis_cluster
  export REDIS_URL=$CLUSTER_URL CONVEYOR_REDIS_CLUSTER=true
  redis_settings=(--redis-url "$CLUSTER_URL" --redis-cluster true)
  # The cluster's figures go beside the single server's, unless told.
  [[ " ${bench_args[*]} " == *" --out "* ]] || redis_settings+=(--out target/bench/results-cluster.json)
  say "Redis: a throwaway cluster of three masters and three replicas"
fi
psql_bin=$(pg_bin psql) || die "psql is needed to create the benchmark databases"

say "building (release)"
cargo build --release --locked --bin conveyor-api --bin conveyor-worker --bin conveyor-migrate --bin conveyor-bench

server=${DATABASE_URL%/*}
"$psql_bin" "$DATABASE_URL" -qc "CREATE DATABASE \"$bench_db\"" -c "CREATE DATABASE \"$pgbench_db\""
export DATABASE_URL_BENCH="$server/$bench_db"
DATABASE_URL=$DATABASE_URL_BENCH target/release/conveyor-migrate up >/dev/null
# BENCH_SQL: statements run on the benchmark's database after the
# migrations, to measure a schema change (an index dropped or added) before
# writing its migration, e.g. BENCH_SQL='DROP INDEX jobs_type_created_idx'.
if [[ -n ${BENCH_SQL:-} ]]; then
  say "BENCH_SQL: $BENCH_SQL"
  "$psql_bin" "$DATABASE_URL_BENCH" -v ON_ERROR_STOP=1 -qc "$BENCH_SQL"
fi

port=$(free_port)
prefix="bench-$$"
say "starting conveyor-api on 127.0.0.1:$port"
DATABASE_URL=$DATABASE_URL_BENCH CONVEYOR_PREFIX=$prefix CONVEYOR_API_ADDR=127.0.0.1:$port \
  RUST_LOG=${BENCH_API_LOG:-warn} LOG_FORMAT=json target/release/conveyor-api >/dev/null 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/ready" >/dev/null || die "conveyor-api did not start"

say "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(postgres --version 2>/dev/null || "$(pg_bin postgres)" --version); $(redis-server --version | cut -d' ' -f1-3)"
target/release/conveyor-bench \
  --api-url "http://127.0.0.1:$port" --api-pid "$api_pid" \
  --database-url "$DATABASE_URL_BENCH" --pgbench-url "$server/$pgbench_db" \
  "${redis_settings[@]}" --prefix "$prefix" \
  --worker-bin target/release/conveyor-worker "${bench_args[@]}"
