#!/usr/bin/env python3
"""A Conveyor worker in Python, on the standard library alone.

It speaks Conveyor's worker protocol (docs/worker-protocol.md): it claims
jobs with a long-poll (POST /jobs/claim), runs each in a thread, keeps their
leases with heartbeats (POST /jobs/heartbeat) and reports each attempt
(POST /jobs/{id}/complete or /fail) with the token its claim gave. A job a
heartbeat says to stop (canceled, timed out, or lost to another worker) is
told to stop and nothing is reported for it. Reports are retried until they
get an answer: the API answers a repeated report as the first.

Run it against a stack (scripts/dev.sh serves one on 127.0.0.1:8000):

    CONVEYOR_URL=http://127.0.0.1:8000 CONVEYOR_QUEUES=python \\
        python3 examples/python/conveyor_worker.py

Settings (environment):
    CONVEYOR_URL            the API (default http://127.0.0.1:8000)
    CONVEYOR_WORKER_TOKEN   bearer token for the worker routes (or
                            CONVEYOR_API_TOKEN when the API has no worker token)
    CONVEYOR_QUEUES         queues in strict order, comma-separated (default "default")
    CONVEYOR_WORKER_NAME    this worker's name (default py-<host>-<pid>)
    CONVEYOR_CONCURRENCY    jobs run at once (default 4)
    CONVEYOR_SHUTDOWN_GRACE_SECS  time running jobs get after SIGTERM (default 25)

Your own tasks: import this file and register functions with
`@worker.task("name")`; each gets the job's payload and a Context, and
returns a JSON value (completed), raises PermanentError (failed now), or
raises anything else (retried after the backoff while attempts remain).
"""

import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

# The API's limits on one call.
MAX_CLAIM = 100
MAX_HEARTBEAT_JOBS = 1000
MAX_QUEUES = 16


class PermanentError(Exception):
    """Raised by a task: the job fails now, without another attempt."""


class Stopped(Exception):
    """Raised by Context.check() once the attempt must stop."""


def log(message):
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {message}\n")
    sys.stderr.flush()


class Context:
    """What a task may ask about its attempt while it runs."""

    def __init__(self, job):
        self.job = job
        self.id = job["id"]
        self.attempt = job["attempt"]
        self.stop_reason = None
        self._stopped = threading.Event()
        self._progress = None

    def progress(self, value):
        """Reported with the next heartbeat. Raises ValueError or TypeError
        at once for a value that is not JSON (NaN, a set, a date)."""
        json.dumps(value, allow_nan=False)
        self._progress = value

    def stopped(self):
        return self._stopped.is_set()

    def check(self):
        """Raises Stopped if the attempt must stop (canceled, timed out, lost)."""
        if self._stopped.is_set():
            raise Stopped(self.stop_reason)

    def sleep(self, seconds):
        """Sleeps, waking early (with Stopped) if the attempt must stop."""
        if self._stopped.wait(seconds):
            raise Stopped(self.stop_reason)

    def stop(self, reason):
        self.stop_reason = reason
        self._stopped.set()


class Worker:
    def __init__(self, url, queues, name=None, concurrency=4, token=None, grace=25.0):
        if not 1 <= len(queues) <= MAX_QUEUES:
            raise ValueError(f"serve 1 to {MAX_QUEUES} queues (got {len(queues)})")
        self.url = url.rstrip("/")
        self.queues = queues
        self.name = name or f"py-{socket.gethostname()}-{os.getpid()}"
        self.concurrency = concurrency
        self.token = token
        self.grace = grace
        self.tasks = {}
        # (job id, token) -> (job, Context): one job can come back to this
        # worker as a new attempt while the old one is still stopping.
        self.running = {}
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(concurrency)
        self.stopping = threading.Event()
        self.lease_ms = 15000

    def task(self, name):
        def register(function):
            self.tasks[name] = function
            return function

        return register

    # -- HTTP -----------------------------------------------------------

    def call(self, path, body, timeout):
        """POSTs JSON; returns (status, parsed body or None). Raises OSError
        when no answer came."""
        data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read()
                return response.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as error:
            text = error.read()
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"detail": text.decode(errors="replace")}

    def call_until_answered(self, path, body, give_up_after=3600.0, timeout=30.0):
        """For requests safe to repeat (heartbeats, reports): tries until an
        answer other than a connection failure or a 5xx comes (a repeated
        report is answered as the first)."""
        delay, started = 0.1, time.monotonic()
        while True:
            try:
                status, answer = self.call(path, body, timeout=timeout)
                if status < 500:
                    return status, answer
            except (OSError, http.client.HTTPException, ValueError) as error:
                status, answer = None, str(error)
            if time.monotonic() - started > give_up_after:
                return status, answer
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- the loops --------------------------------------------------------

    def run(self):
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        beating = threading.Thread(target=self.heartbeat_loop, daemon=True)
        beating.start()
        log(f"worker {self.name} claiming from {','.join(self.queues)} at {self.url}")
        delay = 0.1
        while not self.stopping.is_set():
            if not self.slots.acquire(timeout=0.5):
                continue
            free = 1
            while free < min(self.concurrency, MAX_CLAIM) and self.slots.acquire(blocking=False):
                free += 1
            asked = time.monotonic()
            try:
                status, answer = self.call(
                    "/jobs/claim",
                    {"worker": self.name, "queues": self.queues, "max": free, "wait_ms": 2000},
                    timeout=35,
                )
                jobs = answer["jobs"] if status == 200 else []
                if status == 200:
                    self.lease_ms = answer["lease_ms"]
            except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as error:
                # No usable answer: any job it claimed runs again when its
                # lease runs out.
                status, answer, jobs = None, str(error), []
            for _ in range(free - len(jobs)):
                self.slots.release()
            if status not in (200, 204):
                log(f"claim failed ({status}): {answer}")
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            if status == 204 and time.monotonic() - asked < 0.5:
                # Answered without waiting (the API's places for waiting
                # claims are taken): do not poll in a tight loop.
                time.sleep(0.5)
            for job in jobs:
                context = Context(job)
                with self.lock:
                    self.running[(job["id"], job["token"])] = (job, context)
                threading.Thread(target=self.run_job, args=(job, context), daemon=True).start()
        self.drain()

    def drain(self):
        log(f"stopping: {len(self.running)} job(s) running get {self.grace} s")
        deadline = time.monotonic() + self.grace
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        # What still runs is put back, its attempt not counted, as
        # conveyor-worker does at shutdown (a put-back that fails leaves the
        # job to its lease: it runs again, that attempt counted).
        with self.lock:
            left = list(self.running.values())
        for job, context in left:
            context.stop("shutdown")
            body = {"worker": self.name, "token": job["token"]}
            status, answer = self.call_until_answered(f"/jobs/{job['id']}/release", body, give_up_after=5.0, timeout=5.0)
            log(f"job {job['id']}: put back ({status})")
        log(f"worker {self.name} stopped")

    def heartbeat_loop(self):
        while True:
            try:
                self.heartbeat_forever()
            except Exception as error:  # noqa: BLE001 - the beat must go on
                log(f"heartbeat failed: {type(error).__name__}: {error}")

    def heartbeat_forever(self):
        last = time.monotonic()
        while True:
            # A third of the lease, as the API last told it (a claim's
            # answer may shorten it at any time).
            time.sleep(0.05)
            if time.monotonic() - last < self.lease_ms / 3000.0:
                continue
            last = time.monotonic()
            with self.lock:
                held = list(self.running.values())
            jobs = []
            for job, context in held:
                beat = {"id": job["id"], "token": job["token"]}
                if context._progress is not None:
                    beat["progress"] = context._progress
                jobs.append(beat)
            # A beat that takes longer than a third of the lease is late:
            # give up on it and send the next.
            third = self.lease_ms / 3000.0
            states = []
            # Always one call (an empty one keeps the worker registered),
            # and at most the API's limit of attempts in each.
            for start in range(0, max(len(jobs), 1), MAX_HEARTBEAT_JOBS):
                chunk = jobs[start : start + MAX_HEARTBEAT_JOBS]
                status, answer = self.call_until_answered(
                    "/jobs/heartbeat", {"worker": self.name, "jobs": chunk}, give_up_after=third, timeout=third
                )
                if status != 200:
                    log(f"heartbeat failed ({status}): {answer}")
                    continue
                self.lease_ms = answer["lease_ms"]
                states.extend(answer["jobs"])
            for state in states:
                if state["state"] != "running":
                    with self.lock:
                        entry = self.running.get((state["id"], state["token"]))
                    if entry:
                        log(f"job {state['id']}: {state['state']}; stopping it")
                        entry[1].stop(state["state"])

    def run_job(self, job, context):
        try:
            log(f"job {job['id']} ({job['type']}) attempt {job['attempt']}: started")
            outcome = None
            try:
                task = self.tasks.get(job["type"])
                if task is None:
                    raise PermanentError(f"no task {job['type']!r} in this worker")
                result = task(job["payload"], context)
                try:
                    json.dumps(result, allow_nan=False)
                    outcome = ("complete", {"result": result})
                except (TypeError, ValueError) as error:
                    outcome = ("fail", {"error": f"the result is not JSON: {error}", "retry": False})
            except Stopped:
                outcome = None
            except PermanentError as error:
                outcome = ("fail", {"error": str(error) or "failed", "retry": False})
            except Exception as error:  # noqa: BLE001 - any other error is retried
                outcome = ("fail", {"error": f"{type(error).__name__}: {error}"[:10000], "retry": True})
            if outcome is None or context.stopped():
                log(f"job {job['id']}: stopped ({context.stop_reason}); nothing reported")
                return
            kind, body = outcome
            body.update({"worker": self.name, "token": job["token"]})
            status, answer = self.call_until_answered(f"/jobs/{job['id']}/{kind}", body)
            if status == 422 and kind == "complete":
                # A result the API cannot store (a NUL in a string, say):
                # every attempt would end so, so the job fails now.
                detail = (answer or {}).get("detail", "refused")
                body = {"worker": self.name, "token": job["token"], "error": f"result refused: {detail}", "retry": False}
                status, answer = self.call_until_answered(f"/jobs/{job['id']}/fail", body)
            if status == 200:
                log(f"job {job['id']}: {answer['status']}{' (repeated)' if answer['repeated'] else ''}")
            else:
                # 409: the attempt was taken from this worker meanwhile.
                log(f"job {job['id']}: report refused ({status}): {answer}")
        finally:
            with self.lock:
                self.running.pop((job["id"], job["token"]), None)
            self.slots.release()


def demo_worker():
    """A worker with the demonstration tasks the tests and the chaos run use."""
    worker = Worker(
        url=os.environ.get("CONVEYOR_URL", "http://127.0.0.1:8000"),
        queues=[q for q in os.environ.get("CONVEYOR_QUEUES", "default").split(",") if q],
        name=os.environ.get("CONVEYOR_WORKER_NAME") or None,
        concurrency=int(os.environ.get("CONVEYOR_CONCURRENCY", "4")),
        token=os.environ.get("CONVEYOR_WORKER_TOKEN") or os.environ.get("CONVEYOR_API_TOKEN"),
        grace=float(os.environ.get("CONVEYOR_SHUTDOWN_GRACE_SECS", "25")),
    )

    @worker.task("py.echo")
    def echo(payload, ctx):
        return payload

    @worker.task("py.sleep")
    def sleep(payload, ctx):
        total = payload.get("ms", 100) / 1000.0
        slept = 0.0
        while slept < total:
            step = min(0.1, total - slept)
            ctx.sleep(step)
            slept += step
            ctx.progress({"slept_ms": int(slept * 1000)})
        return {"slept_ms": int(total * 1000)}

    @worker.task("py.flaky")
    def flaky(payload, ctx):
        if ctx.attempt < payload.get("succeed_on", 1 << 30):
            raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
        return {"succeeded_on": ctx.attempt}

    @worker.task("py.reject")
    def reject(payload, ctx):
        raise PermanentError(payload.get("reason", "rejected on purpose"))

    return worker


if __name__ == "__main__":
    demo_worker().run()
