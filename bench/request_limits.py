"""What a client that has not signed in can make an agent hold: one large POST to the
sign-in form and to a console action, streamed from another process, against a real agent
process (with its own embedded nx-27017 server). Prints the agent's resident memory
before and after, and how long the refusal took; asserts nothing.

    python -m bench.request_limits [--mib 150]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pulling_agent.dev.embedded import EmbeddedServer, free_port

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"
CHUNK = 1024 * 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(port: int, path: str, mib: int, chunked: bool) -> tuple[str, float]:
    """Send a ``mib`` MiB body (as fast as the agent reads it); the status line and the
    seconds until the answer."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
        length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {mib * CHUNK}"
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{length}\r\n"
        conn.sendall((head + "Content-Type: application/json\r\n\r\n").encode())
        body = b"x" * CHUNK
        try:
            for _ in range(mib):
                conn.sendall(b"%x\r\n%s\r\n" % (CHUNK, body) if chunked else body)
            if chunked:
                conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # refused before the body: the agent closed the connection
        try:
            answer = conn.recv(200).split(b"\r\n", 1)[0].decode().split(" ", 2)[1]
        except OSError as exc:
            answer = type(exc).__name__
    return answer, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=150)
    args = parser.parse_args()
    table = Table(title=f"one {args.mib} MiB POST, not signed in (agent RSS in MiB)")
    for column in ("route", "body", "answer", "seconds", "RSS before", "RSS after", "growth"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(Path(tmp) / "nx") as server:
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MONGODB_URI": server.uri,
            "MONGODB_DATABASE": "bench",
            "MONGODB_COLLECTION": "work",
            "HANDLER": "tests.system.handlers:record",
            "API_PORT": str(port),
            "API_HOST": "127.0.0.1",
            "API_TOKENS": f"ops:{TOKEN}",
            "HEALTH_DIR": str(Path(tmp) / "health"),
            "CONTROL_FILE": str(Path(tmp) / "state"),
            "LOG_LEVEL": "WARNING",
        }
        agent = subprocess.Popen(
            [sys.executable, "-m", "pulling_agent", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            for path in ("/ui/login", "/ui/actions/requeue"):
                for chunked in (False, True):
                    before = rss_mib(agent.pid)
                    answer, seconds = post(port, path, args.mib, chunked)
                    after = rss_mib(agent.pid)
                    table.add_row(
                        path,
                        "chunked" if chunked else "Content-Length",
                        answer,
                        f"{seconds:.2f}",
                        f"{before:.0f}",
                        f"{after:.0f}",
                        f"{after - before:+.0f}",
                    )
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
