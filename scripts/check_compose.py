"""Structural checks of docker-compose.yml that its JSON schema cannot make.

Run by scripts/check_compose.sh with a Python that has ruamel.yaml (a
dependency of check-jsonschema). Exits non-zero naming every problem found.
"""

import re
import sys
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


compose = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
services = compose.get("services", {})

for name in ("postgres", "redis", "migrate", "api", "worker"):
    check(name in services, f"service {name!r} is missing")

for name in ("postgres", "redis", "api"):
    check("healthcheck" in services.get(name, {}), f"{name} has no health check")

check("pgdata" in compose.get("volumes", {}), "postgres has no named volume")
check("--appendonly" in services.get("redis", {}).get("command", []), "redis persistence (appendonly) is off")


def depends(service, on, condition):
    got = services.get(service, {}).get("depends_on", {}).get(on, {}).get("condition")
    check(got == condition, f"{service} must depend on {on} with condition {condition} (has {got})")


depends("migrate", "postgres", "service_healthy")
depends("api", "migrate", "service_completed_successfully")
depends("api", "redis", "service_healthy")
depends("worker", "migrate", "service_completed_successfully")
depends("worker", "redis", "service_healthy")

check("8000:8000" in services.get("api", {}).get("ports", []), "api must publish port 8000")
check("ports" not in services.get("worker", {}), "worker must not publish ports (it is scaled)")
check("container_name" not in services.get("worker", {}), "worker must not set container_name (it is scaled)")

# Binaries named in the compose file must be ones the Dockerfile copies and
# the workspace builds.
dockerfile = (ROOT / "Dockerfile").read_text()
built = set(re.findall(r"--bin (conveyor(?:-[a-z]+)?)\b", dockerfile))
declared = set()
for manifest in ROOT.glob("*/Cargo.toml"):
    declared.update(re.findall(r'name = "(conveyor(?:-[a-z]+)?)"', manifest.read_text()))
check(built == {"conveyor-api", "conveyor-worker", "conveyor-migrate", "conveyor"}, f"Dockerfile builds {sorted(built)}")
copied = set(re.findall(r"target/release/(conveyor(?:-[a-z]+)?)\b", dockerfile))
check(copied == built, f"Dockerfile builds {sorted(built)} but copies {sorted(copied)}")
check(built <= declared, f"Dockerfile names binaries the workspace does not declare: {sorted(built - declared)}")
for name, service in services.items():
    entry = service.get("entrypoint", [])
    if entry and entry[0].startswith("conveyor"):
        check(entry[0] in built, f"{name} runs {entry[0]}, which the image does not contain")

# A service that mounts a directory of this repository runs a file that is
# there (the Python example worker).
for name, service in services.items():
    command = service.get("command", [])
    for volume in service.get("volumes", []) or []:
        parts = str(volume).split(":")
        if len(parts) < 2 or not parts[0].startswith("./"):
            continue
        source, target = ROOT / parts[0], parts[1]
        check(source.is_dir(), f"{name} mounts {parts[0]}, which does not exist")
        for arg in command:
            if isinstance(arg, str) and arg.startswith(target + "/"):
                check((source / arg[len(target) + 1:]).is_file(), f"{name} runs {arg}, which {parts[0]} does not hold")

# The worker's stop grace must outlast its own shutdown grace.
worker = services.get("worker", {})
grace = int(compose.get("x-conveyor-env", {}).get("CONVEYOR_SHUTDOWN_GRACE_SECS", 0) or
            worker.get("environment", {}).get("CONVEYOR_SHUTDOWN_GRACE_SECS", 25))
stop = worker.get("stop_grace_period", "10s")
stop_secs = int(stop.rstrip("s"))
check(stop_secs > grace, f"worker stop_grace_period {stop} must exceed CONVEYOR_SHUTDOWN_GRACE_SECS={grace}")

# Every variable set in the compose file is a documented setting.
documented = (ROOT / "docs" / "operations.md").read_text()
for name, service in services.items():
    env = service.get("environment", {}) or {}
    for variable in env:
        if variable.startswith("POSTGRES_"):
            continue
        check(f"`{variable}`" in documented, f"{name} sets {variable}, which docs/operations.md does not list")

if problems:
    for problem in problems:
        print(f"docker-compose.yml: {problem}", file=sys.stderr)
    sys.exit(1)
print(f"docker-compose.yml: structure ok ({len(services)} services)")
