"""A loopback TCP proxy that holds every chunk ``delay`` seconds in each direction.

It stands in for the network between a pod and a managed MongoDB in another zone: the
round trip grows by about ``2 * delay`` while bandwidth stays unlimited and order is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, chunk))
    except ConnectionError:
        pass
    finally:
        queue.put_nowait((loop.time(), b""))
        with contextlib.suppress(ConnectionError):
            await sender


class DelayProxy:
    """The proxy server, inside the current event loop."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            _pump(reader, up_writer, self.delay),
            _pump(up_reader, writer, self.delay),
            return_exceptions=True,
        )

    async def __aenter__(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


async def _serve(target_port: int, delay: float) -> None:
    async with DelayProxy(target_port, delay) as proxy:
        print(proxy.port, flush=True)
        await asyncio.Event().wait()


class ProxyProcess:
    """``with ProxyProcess(target_port, delay) as proxy: proxy.port`` - the proxy in its own
    process, so the benchmark's own CPU use does not stretch the delay."""

    def __init__(self, target_port: int, delay: float) -> None:
        self._args = [sys.executable, "-m", "bench.delay_proxy", str(target_port), str(delay)]
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> ProxyProcess:
        self._process = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target_port", type=int)
    parser.add_argument("delay", type=float, help="seconds per direction")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.target_port, args.delay))
