"""Wire an agent to MongoDB from :class:`Settings`: the work queue, cluster control, the
registry, metrics and the HTTP API, and run it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI

from pulling_agent.api.app import create_app
from pulling_agent.api.auth import TokenAuth
from pulling_agent.api.server import ApiServer
from pulling_agent.api.throttle import FailedAuth
from pulling_agent.config import ChangeStreams, Settings
from pulling_agent.control.cluster_store import ClusterControlStore
from pulling_agent.control.follower import ClusterFollower
from pulling_agent.fleet.registry import AgentRegistry, Heartbeat
from pulling_agent.fleet.service import AgentService, ClusterService
from pulling_agent.logs import get_logger
from pulling_agent.queue.clock import ServerClock
from pulling_agent.queue.database import Client, close_client, open_client
from pulling_agent.queue.fairness import Walk
from pulling_agent.queue.limits import Limiter, Limits, limits_of
from pulling_agent.queue.model import claim_scope
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.queue.spread import Spread
from pulling_agent.queue.wakeup import watch_for_work
from pulling_agent.runtime.agent import Agent
from pulling_agent.runtime.clock import ClockWatch
from pulling_agent.runtime.handlers import HandlerRunner, TypedHandlers
from pulling_agent.runtime.metrics import AgentMetrics
from pulling_agent.runtime.pipeline import Clock, RunHandler, utcnow
from pulling_agent.runtime.rate_limit import FleetBucket
from pulling_agent.scheduler.definitions import JobDefinition
from pulling_agent.scheduler.runner import Scheduler
from pulling_agent.scheduler.service import JobService
from pulling_agent.scheduler.store import ScheduleStore


@dataclass
class Node:
    """One agent process's parts."""

    agent: Agent
    cluster: ClusterService
    metrics: AgentMetrics
    follower: ClusterFollower | None
    clock: ClockWatch | None = None
    api: ApiServer | None = None
    app: FastAPI | None = None
    scheduler: Scheduler | None = None
    types: list[str | None] | None = None  # what the agent claims (None: every document)
    limiter: Limiter | None = None  # the fleet-wide limits it claims under

    def snapshot(self) -> dict[str, Any]:
        follower = self.follower
        return {
            **self.agent.snapshot(),
            "version_seen": follower.version_seen if follower else 0,
            "control_ignored": follower.ignored if follower else None,
            "watch_mode": follower.watch_mode if follower else "disabled",
            "jobs": sorted(self.scheduler.jobs) if self.scheduler else [],
            "types": self.types,
            **(self.clock.snapshot() if self.clock else {}),
            **({"limits": self.limiter.snapshot()} if self.limiter and self.limiter.active else {}),
        }


def cluster_service(settings: Settings, client: Client, clock: Clock = utcnow) -> ClusterService:
    """Fleet-wide operations; needs MongoDB only (also used by ``ctl --mongodb-uri``)."""
    db = client[settings.mongodb_database]
    return ClusterService(
        ClusterControlStore(db[settings.control_collection]),
        AgentRegistry(db[settings.agents_collection], settings.heartbeat_interval),
        MongoWorkStore(db[settings.mongodb_collection]),
        clock,
    )


def job_service(settings: Settings, client: Client, clock: Clock = utcnow) -> JobService:
    """Scheduled jobs as seen from MongoDB alone (``pulling-agent jobs --mongodb-uri``)."""
    db = client[settings.mongodb_database]
    return JobService(
        ScheduleStore(db[settings.jobs_collection], db[settings.job_runs_collection]),
        AgentRegistry(db[settings.agents_collection], settings.heartbeat_interval),
        None,
        clock,
    )


def build_node(
    settings: Settings,
    client: Client,
    run_handler: RunHandler,
    clock: Clock | None = None,
    jobs: Sequence[JobDefinition] = (),
) -> Node:
    """The agent's parts. Every time they write or compare is MongoDB's (a
    :class:`ServerClock`, measured before the first claim) unless ``clock`` is given."""
    server_clock = ServerClock.of(client) if clock is None else None
    clock = server_clock.now if server_clock is not None else clock
    assert clock is not None
    collection = client[settings.mongodb_database][settings.mongodb_collection]
    wakeup = None
    if settings.enable_change_streams is not ChangeStreams.OFF:
        wakeup = partial(watch_for_work, client, collection, settings.enable_change_streams)
    types = (
        run_handler.served_types
        if isinstance(run_handler, TypedHandlers)
        else settings.served_types
    )
    store = MongoWorkStore(collection, scope=claim_scope(settings.type_field, types))
    store.clock = clock
    store.limiter, store.walk = Limiter(fleet_limits(settings, run_handler)), fair_walk(settings)
    db = client[settings.mongodb_database]
    fleet = None
    if settings.fleet_rate_limit:
        control = db[settings.control_collection]
        fleet = FleetBucket(
            control, settings.mongodb_collection, settings.fleet_rate_limit, settings.batch_size
        )
    agent = Agent(
        settings,
        store,
        run_handler,
        wakeup=wakeup,
        clock=clock,
        on_handler_done=lambda seconds, outcome: node.metrics.observe(seconds, outcome),
        threads=run_handler if isinstance(run_handler, HandlerRunner | TypedHandlers) else None,
        fleet=fleet,
    )
    watch = None if server_clock is None else watch_clock(agent, server_clock, settings)
    cluster = cluster_service(settings, client, clock)
    follower = None
    if settings.enable_distributed_control:
        follower = ClusterFollower(
            cluster.control,
            client,
            settings.enable_change_streams,
            settings.control_polling_interval,
            agent,
            settings.agent_id,
        )
    node = Node(
        agent, cluster, AgentMetrics(lambda: node.snapshot(), store.counts), follower, watch
    )
    node.types = types
    node.limiter = store.limiter
    if follower is not None:
        agent.companions["cluster-follower"] = follower
        cluster.on_issued = follower.apply
    heartbeat = Heartbeat(cluster.registry, settings.agent_id, node.snapshot, agent.changed, clock)
    agent.companions["registry"] = heartbeat
    store.spread = Spread(lambda: heartbeat.share)  # agents read apart in the queue's head
    agent.companions["metrics"] = node.metrics
    agent.backlog = node.metrics.backlog
    agent.backlog_age = node.metrics.backlog_age
    schedules = ScheduleStore(db[settings.jobs_collection], db[settings.job_runs_collection])
    if jobs:
        node.scheduler = Scheduler(
            list(jobs),
            schedules,
            cluster.control,
            db,
            settings.agent_id,
            clock,
            settings.job_history_days,
            on_run=node.metrics.observe_job,
            lease_seconds=settings.job_lease_seconds,
        )
        agent.companions["scheduler"] = node.scheduler
    if settings.enable_api:
        throttle = FailedAuth(node.metrics.auth_failed)
        auth = TokenAuth(settings.tokens, settings.metrics_require_token, throttle)
        job_service = JobService(schedules, cluster.registry, node.scheduler, clock)
        node.app = app = create_app(
            cluster,
            AgentService(agent, client, node.snapshot, settings.redacted_uri),
            job_service,
            auth,
            node.metrics.render,
            settings.secrets(),
        )
        if settings.enable_console:
            install_console(app, settings, db, cluster, job_service, auth, clock, store.limiter)
        node.api = ApiServer(
            app, settings.api_bind_host, settings.api_port, settings.agent_id, bool(settings.tokens)
        )
        agent.companions["api"] = node.api
    return node


def fleet_limits(settings: Settings, run_handler: RunHandler) -> Limits:
    """The fleet-wide limits this agent claims under: the environment's, over a Worker's."""
    if isinstance(run_handler, TypedHandlers):
        return limits_of(settings, run_handler.fleet_limits, run_handler.key_limits)
    return limits_of(settings)


def fair_walk(settings: Settings) -> Walk:
    return Walk(settings.concurrency_key if settings.fair_claiming else None)


def watch_clock(agent: Agent, clock: ServerClock, settings: Settings) -> ClockWatch:
    """The first of the agent's companions: the server's clock is measured before anything
    else starts, and claiming waits while the estimate is not good enough."""
    watch = ClockWatch(
        clock,
        settings.agent_id,
        settings.lease_seconds,
        settings.heartbeat_interval,
        agent.pipeline.kick.set,
    )
    agent.companions["clock"] = watch
    agent.clock_gate = watch.blocked
    return watch


def install_console(
    app: FastAPI,
    settings: Settings,
    db: Any,
    cluster: ClusterService,
    jobs: JobService,
    auth: TokenAuth,
    clock: Clock,
    limiter: Limiter,
) -> None:
    """The web console (``ENABLE_CONSOLE``) on the API's app, authorised as the API; it
    shows the limits this agent claims under."""
    from pulling_agent.console.data import ConsoleData
    from pulling_agent.console.revocations import Revocations
    from pulling_agent.console.routes import UI, install
    from pulling_agent.console.session import Sessions

    data = ConsoleData(
        MongoWorkStore(db[settings.mongodb_collection]),
        cluster.registry,
        settings.max_attempts,
        clock,
        limiter.limits,
        settings.lease_seconds,
        settings.trace_url,
    )
    revocations = Revocations(db[settings.control_collection])
    sessions = Sessions(settings.tokens, clock=lambda: clock().timestamp())
    ui = UI(data, cluster, jobs, cluster.work.requeue, auth, sessions, revocations)
    install(app, ui)


async def run_agent(
    settings: Settings,
    run_handler: RunHandler,
    install_signals: bool = True,
    jobs: Sequence[JobDefinition] = (),
) -> int:
    """Run one agent against ``MONGODB_URI`` until it is shut down; returns the exit code.
    Raises :class:`ConfigError` for a URI the driver cannot use (before anything is logged)."""
    client = open_client(settings)  # parses the URI; connects lazily
    try:
        node = build_node(settings, client, run_handler, jobs=jobs)
        node.agent.prepare_health()  # a bad HEALTH_DIR is one line, before any log
        get_logger(agent_id=settings.agent_id).info(
            "Connecting to MongoDB",
            action="agent.connect",
            uri=settings.redacted_uri,
            database=settings.mongodb_database,
            collection=settings.mongodb_collection,
        )
        return await node.agent.run(install_signals=install_signals)
    finally:
        if not await close_client(client):
            get_logger(agent_id=settings.agent_id).warning(
                "MongoDB client not closed in time; exiting anyway", action="agent.close_timeout"
            )
