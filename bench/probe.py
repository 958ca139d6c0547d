"""The health probe's cost inside the container, under a CPU limit like the manifests'.

Starts the embedded server and one agent container (``--cpus`` like the manifests' CPU
request, 0.1 by default) with a no-op handler, then times ``pulling-agent health`` run
inside it ``--runs`` times by one shell loop (no ``docker exec`` overhead per call).
Needs a Docker engine (``DOCKER_HOST``) and the image (``make docker-build``).
Prints a table; asserts nothing.

    DOCKER_HOST=unix:///var/cache/pulling-agent-docker/docker.sock \\
        python -m bench.probe [--image pulling-agent:test] [--cpus 0.1] [--runs 20]
"""

from __future__ import annotations

import argparse
import subprocess
import time

from rich.console import Console
from rich.table import Table

from pulling_agent.dev.embedded import EmbeddedServer

LOOP = (
    "start=$(date +%s%N); i=0; while [ $i -lt {runs} ]; do "
    "pulling-agent health --max-age 30 --ready >/dev/null; i=$((i+1)); done; "
    "echo $(( ($(date +%s%N) - start) / {runs} / 1000000 ))"
)


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=300
    ).stdout.strip()


def main(image: str, cpus: str, runs: int) -> None:
    table = Table(title=f"pulling-agent health inside the container, {runs} calls")
    for column in ("CPU limit", "ms per probe (mean)", "probes' timeoutSeconds"):
        table.add_column(column, justify="right")
    with EmbeddedServer() as server:
        for limit in ("none", cpus):
            name = f"pa-probe-{int(time.time())}"
            extra = [] if limit == "none" else ["--cpus", limit]
            docker(
                "run",
                "--detach",
                "--name",
                name,
                "--network",
                "host",
                *extra,
                "-e",
                f"MONGODB_URI={server.uri}",
                "-e",
                "MONGODB_DATABASE=probe",
                "-e",
                "MONGODB_COLLECTION=work",
                "-e",
                "HANDLER=pulling_agent.dev.demo:demo_handler",
                "-e",
                "API_PORT=0",
                image,
            )
            try:
                for _ in range(100):  # until the agent wrote its health files
                    done = subprocess.run(
                        ["docker", "exec", name, "pulling-agent", "health", "--ready"],
                        capture_output=True,
                    )
                    if done.returncode == 0:
                        break
                    time.sleep(0.2)
                ms = docker("exec", name, "sh", "-c", LOOP.format(runs=runs))
                table.add_row(limit, ms, "5 s")
            finally:
                subprocess.run(["docker", "rm", "--force", name], capture_output=True)
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default="pulling-agent:test")
    parser.add_argument("--cpus", default="0.1")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    main(args.image, args.cpus, args.runs)
