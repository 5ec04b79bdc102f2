"""Schemathesis hooks for scripts/fuzz_api.sh.

A claim may wait up to 30 s for a job (a long-poll); the fuzz run sends
hundreds of claims to an API with no job to give, and would spend most of
its time, and its request timeout, waiting. A valid wait is cut to 200 ms
before the request is sent; an invalid one (negative, too long, not a
number) is left as generated, so the API is still seen to refuse it. The
API's own tests cover long waits (api/tests/it/remote.rs).
"""

import schemathesis

LONGEST_WAIT_MS = 200


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.path != "/jobs/claim" or not isinstance(case.body, dict):
        return
    wait = case.body.get("wait_ms")
    if isinstance(wait, int) and not isinstance(wait, bool) and 0 <= wait <= 30000:
        case.body["wait_ms"] = min(wait, LONGEST_WAIT_MS)
