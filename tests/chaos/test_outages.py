"""MongoDB outages against real agent processes: readiness follows the store, start-up
against an unreachable server is reported at once and concisely, bad credentials exit 2,
and shutdown is bounded whatever MongoDB does."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from pulling_agent.dev.embedded import EmbeddedServer, free_port
from pulling_agent.runtime.agent import EXIT_MARGIN
from tests.conftest import wait_until
from tests.system.conftest import statuses

pytestmark = pytest.mark.system

# process start, interpreter exit and loaded CI machines on top of the agent's own bound
PROCESS_SLACK = 3.0


def docs(n: int) -> list[dict[str, Any]]:
    return [{"status": "pending", "n": i} for i in range(n)]


def _insert(uri: str, n: int) -> bool:
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=2_000)
    try:
        client.outage.work.insert_many(docs(n))
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


def _outage_work(server: EmbeddedServer, n: int) -> tuple[MongoClient[dict[str, Any]], Any]:
    """A client of the agent's own server and its work collection, with ``n`` documents."""
    client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
    work = client.outage.work
    work.insert_many(docs(n))
    return client, work


def test_readiness_drops_during_an_outage_and_returns_after_it(
    spawn: Any, own_server: EmbeddedServer
) -> None:
    client, work = _outage_work(own_server, 10)
    agent = spawn(
        "agent",
        MONGODB_URI=own_server.uri + "?serverSelectionTimeoutMS=1000",
        MONGODB_DATABASE="outage",
        STORE_OUTAGE_SECONDS="1",
    )
    ready = agent.health_dir / "readiness"
    wait_until(lambda: statuses(work) == {"processed": 10}, what="processed")
    wait_until(ready.exists, what="ready")
    client.close()
    own_server.stop()
    wait_until(lambda: not ready.exists(), what="readiness dropped")
    assert any(line.startswith("store=unavailable since") for line in agent.liveness())
    stamp = agent.liveness()[1]
    wait_until(lambda: agent.liveness()[1] != stamp, what="liveness still refreshed")
    own_server.start()
    wait_until(lambda: _insert(own_server.uri, 5), what="server back")
    wait_until(ready.exists, timeout=30, what="readiness restored")
    client = MongoClient(own_server.uri)
    wait_until(lambda: statuses(client.outage.work) == {"processed": 15}, what="resumed")
    client.close()
    events = [e.get("action") for e in agent.events()]
    assert events.count("store.unavailable") == 1 and events.count("store.available") == 1
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0


def test_an_unreachable_server_at_start_up_is_reported_at_once_in_one_line(spawn: Any) -> None:
    port = free_port()
    agent = spawn("agent", MONGODB_URI=f"mongodb://127.0.0.1:{port}/")

    def reports() -> list[dict[str, Any]]:
        return [e for e in agent.events() if e.get("action") == "agent.connect_error"]

    wait_until(lambda: len(reports()) >= 2, timeout=30, what="two reports")
    for report in reports():
        assert report["hosts"] == f"127.0.0.1:{port}"
        assert report["retry_in"] > 0
        assert len(report["error"]) < 400 and "Topology" not in report["error"]
    # the cause the driver knows, not only that nothing answered in time
    assert any("refused" in r["error"] or "Connect call failed" in r["error"] for r in reports())
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0


def test_credentials_the_server_cannot_use_exit_2_with_one_line(
    spawn: Any, own_server: EmbeddedServer
) -> None:
    uri = own_server.uri.replace("mongodb://", "mongodb://app:s3cret@") + "?bogusOption=1"
    agent = spawn("agent", MONGODB_URI=uri)
    assert agent.wait(timeout=60) == 2
    log = agent.log()
    assert "Traceback" not in log and "s3cret" not in log
    [failure] = [e for e in agent.events() if e.get("action") == "agent.start_failed"]
    assert failure["event"].startswith("MONGODB_URI:")
    warnings = [e for e in agent.events() if e.get("logger") == "py.warnings"]
    assert warnings and "bogusoption" in warnings[0]["event"].lower(), "warnings are JSON events"


def test_shutdown_with_mongodb_down_fits_the_grace_period(
    spawn: Any, own_server: EmbeddedServer
) -> None:
    """Before: SIGTERM with MongoDB down took 76 s against a 45 s grace period."""
    client, work = _outage_work(own_server, 30)
    shutdown_timeout = 2.0
    agent = spawn(
        "agent",
        MONGODB_URI=own_server.uri,  # the driver's default 30 s server selection
        MONGODB_DATABASE="outage",
        HANDLER="tests.system.handlers:hang",
        SHUTDOWN_TIMEOUT=str(shutdown_timeout),
        CONCURRENCY="2",
        BATCH_SIZE="10",
    )
    wait_until(lambda: statuses(work).get("processing", 0) >= 2, what="handlers running")
    client.close()
    own_server.stop()
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=shutdown_timeout + EXIT_MARGIN + PROCESS_SLACK) == 0
