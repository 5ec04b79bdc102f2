#!/usr/bin/env bash
# Drives a running Conveyor stack over HTTP through its main paths; exits
# non-zero at the first failure. Needs curl, and jq or python3.
#
#   scripts/e2e_smoke.sh [BASE_URL]          default http://127.0.0.1:8000
#
# The stuck-job step also needs to reach the database and run recover-stuck:
#   SMOKE_PSQL      command that runs SQL given on stdin
#                   (default: psql "$DATABASE_URL"; compose:
#                    "docker compose exec -T postgres psql -U postgres conveyor")
#   SMOKE_RECOVER   recover-stuck command (default: conveyor-worker recover-stuck from
#                   target/release, target/debug or PATH; compose:
#                   "docker compose run --rm worker recover-stuck")
#   SMOKE_SKIP_RECOVERY=1 skips that step.
#   CONVEYOR_API_TOKEN is sent as a bearer token when set.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${1:-${BASE_URL:-http://127.0.0.1:8000}}
BASE=${BASE%/}
WAIT_SECS=${SMOKE_WAIT_SECS:-30}
passed=0
run_id=$(date +%s)-$$-$RANDOM

auth=()
[[ -n ${CONVEYOR_API_TOKEN:-} ]] && auth=(-H "Authorization: Bearer $CONVEYOR_API_TOKEN")

step() { printf '\n== %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf '   ok: %s\n' "$*"; }
fail() {
  printf '   FAILED: %s\n' "$*" >&2
  printf 'smoke: %d passed, 1 failed\n' "$passed"
  exit 1
}

# json EXPR < document: a value of the JSON on stdin (jq syntax for simple paths).
if command -v jq >/dev/null; then
  json() { jq -r "$1 // empty"; }
else
  command -v python3 >/dev/null || { echo "error: jq or python3 is required" >&2; exit 1; }
  json() {
    python3 -c '
import json, sys
value = json.load(sys.stdin)
for part in sys.argv[1].lstrip(".").split("."):
    if part:
        value = value.get(part) if isinstance(value, dict) else None
print("" if value is None else (json.dumps(value) if isinstance(value, (dict, list)) else str(value).lower() if isinstance(value, bool) else value))
' "$1"
  }
fi

# request METHOD PATH [curl args...]: sets $status and $body.
request() {
  local method=$1 path=$2; shift 2
  local out
  out=$(curl -sS -m 10 -X "$method" "${auth[@]}" -w '\n%{http_code}' "$@" "$BASE$path") || fail "$method $path: no answer from $BASE"
  status=${out##*$'\n'}
  body=${out%$'\n'*}
}

post_json() { request POST "$1" -H 'content-type: application/json' --data "$2" "${@:3}"; }

expect_status() {
  [[ $status == "$1" ]] || fail "$2: expected HTTP $1, got $status: $body"
}

# wait_for ID STATUS: polls until the job has STATUS; records every status seen.
seen=""
wait_for() {
  local id=$1 want=$2 deadline=$((SECONDS + WAIT_SECS)) current=""
  seen=""
  while ((SECONDS < deadline)); do
    request GET "/jobs/$id"
    current=$(json .status <<<"$body")
    [[ " $seen " == *" $current "* ]] || seen="$seen $current"
    [[ $current == "$want" ]] && return 0
    case $current in completed|failed|canceled) [[ $current != "$want" ]] && fail "job $id ended $current, expected $want: $body" ;; esac
    sleep 0.05
  done
  fail "job $id did not become $want within ${WAIT_SECS}s (last: $current)"
}

create() {
  post_json /jobs "$1"
  expect_status 201 "create $1"
  json .id <<<"$body"
}

step "health"
request GET /health; expect_status 200 "GET /health"; ok "/health is 200"
request GET /ready; expect_status 200 "GET /ready"; ok "/ready is 200: $(json .postgres <<<"$body") postgres, $(json .redis <<<"$body") redis"

step "a successful job completes with its result"
ok_id=$(create '{"type": "demo", "payload": {"hello": "smoke"}}')
wait_for "$ok_id" completed
[[ $(json .result.processed <<<"$body") == true ]] || fail "result lacks processed=true: $body"
request GET "/jobs/$ok_id/result"; expect_status 200 "GET result"
ok "job $ok_id completed: $(json .result <<<"$body")"

step "a permanent failure fails at once"
fail_id=$(create '{"type": "demo", "payload": {"fail": true}}')
wait_for "$fail_id" failed
[[ $(json .attempts <<<"$body") == 1 ]] || fail "expected 1 attempt: $body"
[[ $(json .error_message <<<"$body") == "Forced failure requested by payload" ]] || fail "wrong error: $body"
request GET "/jobs/$fail_id/result"; expect_status 409 "result of a failed job"
ok "job $fail_id failed after 1 attempt"

step "a transient failure is retried, then fails after four attempts"
retry_id=$(create '{"type": "demo", "payload": {"transient_fail": true}}')
wait_for "$retry_id" failed
[[ " $seen " == *" retrying "* ]] || fail "never saw status retrying (saw:$seen)"
[[ $(json .attempts <<<"$body") == 4 ]] || fail "expected 4 attempts: $body"
ok "job $retry_id went through:$seen, 4 attempts"

step "a delayed job is canceled before it runs; a second cancel is 409"
delayed_id=$(create '{"type": "demo", "payload": {}, "delay_seconds": 300}')
request POST "/jobs/$delayed_id/cancel"; expect_status 200 "cancel a waiting job"
[[ $(json .status <<<"$body") == canceled ]] || fail "not canceled: $body"
request POST "/jobs/$delayed_id/cancel"; expect_status 409 "second cancel"
[[ $(json .code <<<"$body") == job_not_cancelable ]] || fail "wrong problem: $body"
ok "job $delayed_id canceled; second cancel answered 409"

step "idempotency keys"
key="smoke-$run_id"
post_json /jobs '{"type": "demo", "payload": {"order": 1}}' -H "Idempotency-Key: $key"
expect_status 201 "first request with a key"; first_id=$(json .id <<<"$body")
post_json /jobs '{"type": "demo", "payload": {"order": 1}}' -H "Idempotency-Key: $key"
expect_status 200 "same request again"
[[ $(json .id <<<"$body") == "$first_id" ]] || fail "replay returned another job: $body"
post_json /jobs '{"type": "demo", "payload": {"order": 2}}' -H "Idempotency-Key: $key"
expect_status 409 "different request under the same key"
ok "same key: 201, then 200 with job $first_id, then 409 for a changed request"

step "every attempt is kept; a failed job is retried by filter"
request GET "/jobs/$retry_id/attempts"; expect_status 200 "GET attempts"
attempts=$(grep -o '"outcome":"failed"' <<<"$body" | wc -l)
[[ $attempts == 4 ]] || fail "expected 4 failed attempts: $body"
ok "job $retry_id has 4 failed attempts on record"
post_json /jobs/retry '{"status": "failed", "type": "nonexistent-smoke-type"}'
expect_status 200 "bulk retry"
[[ $(json .changed <<<"$body") == 0 ]] || fail "bulk retry changed jobs it should not: $body"
post_json /jobs/retry '{}'
expect_status 422 "bulk retry without a filter"
ok "bulk retry by filter answers how many changed; without a filter it is 422"

step "a queue is paused, limited and resumed"
queue="smoke-$RANDOM"
request POST "/queues/$queue/pause"; expect_status 200 "pause"
[[ $(json .paused <<<"$body") == true ]] || fail "not paused: $body"
held_id=$(create "{\"type\": \"demo\", \"payload\": {}, \"queue\": \"$queue\"}")
request PATCH "/queues/$queue" -H 'content-type: application/json' --data '{"concurrency_limit": 2, "rate_limit": 50}'
expect_status 200 "configure"
[[ $(json .concurrency_limit <<<"$body") == 2 ]] || fail "limit not set: $body"
request GET /queues; expect_status 200 "GET /queues"
[[ $body == *"\"$queue\""* ]] || fail "GET /queues does not list $queue"
request GET "/jobs/$held_id"
[[ $(json .status <<<"$body") == queued ]] || fail "a job of a paused queue left queued: $body"
request POST "/queues/$queue/resume"; expect_status 200 "resume"
ok "queue $queue paused with job $held_id waiting, limited, listed and resumed"

step "the dashboard shows a failed job's attempts"
request GET "/ui/find?q=$retry_id"
if [[ $status == 303 && $body == "" && ${#auth[@]} -gt 0 ]]; then
  ok "the dashboard asks for a login (a token is set)"
else
  expect_status 303 "find a job on the dashboard"
  request GET "/ui/jobs/$retry_id"; expect_status 200 "the job's page"
  [[ $body == *"Transient failure requested by payload"* && $body == *'id="attempts"'* ]] \
    || fail "the job's page does not show its attempts' errors"
  ok "/ui finds job $retry_id and shows its attempts' errors"
fi

step "listing by status"
for pair in "canceled:$delayed_id" "completed:$ok_id" "failed:$fail_id"; do
  wanted=${pair%%:*} id=${pair#*:}
  request GET "/jobs?status=$wanted&limit=100"; expect_status 200 "list $wanted"
  [[ $body == *"\"$id\""* ]] || fail "GET /jobs?status=$wanted does not list $id"
  ok "status=$wanted lists $id"
done

step "an uploaded text file is counted"
upload=$(mktemp)
printf 'héllo wörld\n' >"$upload"
request POST /jobs -F "file=@$upload;type=text/plain"
rm -f "$upload"
expect_status 201 "upload"
upload_id=$(json .id <<<"$body")
wait_for "$upload_id" completed
[[ $(json .result.characters <<<"$body") == 12 ]] || fail "expected 12 characters: $body"
ok "job $upload_id counted 12 characters"

step "a stuck job is recovered by recover-stuck"
if [[ ${SMOKE_SKIP_RECOVERY:-0} == 1 ]]; then
  echo "   skipped (SMOKE_SKIP_RECOVERY=1)"
else
  psql_cmd=${SMOKE_PSQL:-}
  if [[ -z $psql_cmd ]]; then
    [[ -n ${DATABASE_URL:-} ]] || fail "set DATABASE_URL or SMOKE_PSQL to reach the database (or SMOKE_SKIP_RECOVERY=1)"
    psql_cmd="psql $DATABASE_URL -q"
  fi
  recover_cmd=${SMOKE_RECOVER:-}
  if [[ -z $recover_cmd ]]; then
    for candidate in target/release/conveyor-worker target/debug/conveyor-worker "$(command -v conveyor-worker || true)"; do
      [[ -n $candidate && -x $candidate ]] && { recover_cmd="$candidate recover-stuck"; break; }
    done
    [[ -n $recover_cmd ]] || fail "conveyor-worker not found; set SMOKE_RECOVER"
  fi
  stuck_id=$(create '{"type": "sleep", "payload": {"ms": 120000}, "max_attempts": 1}')
  wait_for "$stuck_id" running
  # Make it look as if it had been running for 20 minutes.
  echo "UPDATE jobs SET started_at = now() - interval '20 minutes' WHERE id = '$stuck_id';" | $psql_cmd >/dev/null \
    || fail "could not reach the database with: $psql_cmd"
  output=$($recover_cmd --timeout-minutes 10) || fail "recover-stuck failed: $output"
  [[ $output == *"$stuck_id"* && $output == *"recovered "* ]] || fail "recover-stuck did not report $stuck_id: $output"
  request GET "/jobs/$stuck_id"
  [[ $(json .status <<<"$body") == failed && $(json .error_message <<<"$body") == "Job timed out while running" ]] \
    || fail "job not recovered: $body"
  ok "job $stuck_id marked failed: Job timed out while running"
fi

printf '\nsmoke: %d passed, 0 failed\n' "$passed"
