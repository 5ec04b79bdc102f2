#!/usr/bin/env bash
# Fault injection: runs a whole Conveyor stack -- its own throwaway
# PostgreSQL and Redis (own ports and data directories), the API, three
# workers and two Python workers of the worker protocol
# (examples/python/) as separate processes -- while a client submits jobs with
# idempotency keys, and kills, stops and restarts its parts. Then checks,
# from PostgreSQL and the workers' JSON logs, that nothing accepted was lost
# or left stuck and that no attempt's outcome was written twice; prints a
# table and exits non-zero if any invariant failed. See docs/guarantees.md.
#
#   scripts/chaos.sh                 about 60 s of faults (what scripts/test.sh runs)
#   scripts/chaos.sh --long          ten minutes
#   scripts/chaos.sh --profile dev   use the debug build (scripts/test.sh does)
#   scripts/chaos.sh --cluster       Redis as a cluster (three masters, three
#                                    replicas); a master is killed and another
#                                    stopped, and their replicas take over
#   other options go to conveyor-chaos: --rate N --seed N --duration-secs N
#
# Logs stay in the printed directory when a run fails (CHAOS_KEEP=1: always).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

profile=release
args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --long) args+=(--duration-secs 600); shift ;;
    --profile) profile=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

initdb=$(pg_bin initdb) && pg_ctl=$(pg_bin pg_ctl) || die "the chaos harness starts its own PostgreSQL, and initdb/pg_ctl are not installed.
  Install them, e.g.: Debian/Ubuntu: sudo apt-get install postgresql   macOS: brew install postgresql@16"
[[ $(dirname "$initdb") == "$(dirname "$pg_ctl")" ]] || die "initdb and pg_ctl are in different directories"
redis_server=$(command -v redis-server || command -v valkey-server) || die "the chaos harness starts its own Redis, and redis-server is not installed.
  Install it, e.g.: Debian/Ubuntu: sudo apt-get install redis-server   macOS: brew install redis"
command -v python3 >/dev/null || die "the chaos harness runs the Python example worker (examples/python/), and python3 is not installed.
  Install it, e.g.: Debian/Ubuntu: sudo apt-get install python3"
redis_cli=()
if cli=$(command -v redis-cli || command -v valkey-cli); then
  redis_cli=(--redis-cli "$cli")
elif [[ " ${args[*]} " == *" --cluster "* ]]; then
  die "the chaos harness's cluster run needs redis-cli (it comes with redis-server)"
fi

bins=(--bin conveyor-api --bin conveyor-worker --bin conveyor-migrate --bin conveyor-chaos)
if [[ $profile == release ]]; then
  say "building (release)"
  cargo build --release --locked "${bins[@]}"
  bin_dir=target/release
else
  say "building ($profile)"
  cargo build --profile "$profile" --locked "${bins[@]}"
  bin_dir=target/debug
  [[ $profile == dev ]] || bin_dir=target/$profile
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/conveyor-chaos.XXXXXX")
chmod 755 "$work"
run_as=()
if [[ $(id -u) == 0 ]]; then
  user=postgres
  id -u postgres >/dev/null 2>&1 || user=nobody
  run_as=(--run-as "$user")
fi
chaos_pid=""
# An interrupted run leaves nothing behind: the harness and everything it
# started share a process group, and PostgreSQL (a daemon) is stopped by
# its data directory.
cleanup() {
  if [[ -n $chaos_pid ]] && kill -0 "$chaos_pid" 2>/dev/null; then
    kill -TERM -- "-$chaos_pid" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$chaos_pid" 2>/dev/null || true
  fi
  if [[ -f $work/pg/postmaster.pid ]]; then
    local as=()
    [[ ${#run_as[@]} -gt 0 ]] && as=(runuser -u "${run_as[1]}" --)
    "${as[@]}" "$pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'say "interrupted; logs kept in $work"; exit 130' INT TERM

status=0
setsid "$bin_dir/conveyor-chaos" --bin-dir "$bin_dir" --pg-bin-dir "$(dirname "$initdb")" \
  --redis-server "$redis_server" "${redis_cli[@]}" --work-dir "$work" "${run_as[@]}" "${args[@]}" &
chaos_pid=$!
wait "$chaos_pid" || status=$?
chaos_pid=""
cleanup
if [[ $status == 0 && -z ${CHAOS_KEEP:-} ]]; then
  rm -rf "$work"
else
  say "logs kept in $work"
fi
exit "$status"
