"""Start a local MongoDB-wire server (nx-27017) as a subprocess, for the demo and tests.

Production code never imports this module. The server gets its own data directory, pid file
and log file, binds to loopback on a free port, and is stopped by its PID.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from pulling_agent.errors import EmbeddedServerError

START_TIMEOUT = 20.0


PORT_RANGE = (20_000, 32_000)  # below Linux's ephemeral range (32768-60999)


PORT_FILE = "port"


def free_port() -> int:
    """A free loopback port *outside* the ephemeral range, so that no outgoing connection
    (whose source port is ephemeral) can take it while the server restarts, and no
    self-connection to it can succeed while it is down."""
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise EmbeddedServerError("no free loopback port between 20000 and 32000")


def _executable() -> list[str]:
    found = shutil.which(
        "nx-27017",
        path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    if found is None:
        raise EmbeddedServerError(
            "the embedded server nx-27017 is not installed: pip install 'pulling-agent[embedded]'"
        )
    return [found]


class EmbeddedServer:
    """``with EmbeddedServer() as server: server.uri``."""

    def __init__(self, directory: Path | None = None) -> None:
        self._own_dir = directory is None
        self.temporary = self._own_dir  # the data directory is deleted at stop
        self.directory = directory or Path(tempfile.mkdtemp(prefix="pulling-agent-nx-"))
        self.port = self._kept_port() or free_port()
        self.pid_file = self.directory / "nx.pid"
        self.log_file = self.directory / "nx.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _kept_port(self) -> int | None:
        """A kept data directory keeps its address: the port it had last time (in
        ``PORT_FILE``), if that port is free now - so other shells keep working."""
        if self._own_dir:
            return None
        try:
            port = int((self.directory / PORT_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        if not PORT_RANGE[0] <= port <= PORT_RANGE[1]:
            return None
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return None
        return port

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> EmbeddedServer:
        command = [
            *_executable(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.directory / "data"),
            "--pid-file",
            str(self.pid_file),
            "--log-file",
            str(self.log_file),
        ]
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedServerError(f"nx-27017 exited at start; see {self.log_file}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    if not self._own_dir:
                        (self.directory / PORT_FILE).write_text(f"{self.port}\n")
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EmbeddedServerError(f"nx-27017 did not listen within {START_TIMEOUT:.0f}s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
