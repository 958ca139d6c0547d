"""The agent: lifecycle, control, task supervision and graceful shutdown.

``Agent.run()`` goes ``starting`` → (``running`` | ``paused``) → … → ``stopping`` →
``stopped`` and returns the process exit code. It reads the control file before its first
claim, so a standing pause is honoured from the start. Control sources each hold their own
pause request (:mod:`pulling_agent.control.requests`); the agent processes only while none
does. Shutdown: stop claiming, hand back documents whose handler has not started, wait up
to ``SHUTDOWN_TIMEOUT`` for running handlers, cancel the rest and hand back their leases,
write outstanding outcomes, remove the health files.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from pymongo.errors import OperationFailure, PyMongoError

from pulling_agent.config import Settings
from pulling_agent.control import file as control_file
from pulling_agent.control.requests import PauseRequest, PauseRequests, Source
from pulling_agent.errors import ConfigError, PullingAgentError
from pulling_agent.logs import get_logger
from pulling_agent.queue.database import AUTHENTICATION_FAILED, describe_error, describe_failure
from pulling_agent.queue.model import WorkStore
from pulling_agent.runtime import signals as early_signals
from pulling_agent.runtime.breaker import StoreBreaker
from pulling_agent.runtime.companion import Companion, Draining, ThreadWatch
from pulling_agent.runtime.health import HealthFiles
from pulling_agent.runtime.pipeline import Clock, Pipeline, RunHandler, utcnow
from pulling_agent.runtime.rate_limit import FleetBucket
from pulling_agent.runtime.state import AgentState, check_transition, is_ready
from pulling_agent.timeouts import cancel_and_wait, wait_event

Wakeup = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
STARTUP_ATTEMPT = 3.0  # an unreachable server is reported after this long, not after 30 s
STARTUP_RETRY = 5.0
# Shutdown ends within SHUTDOWN_TIMEOUT + SHUTDOWN_MARGIN whatever MongoDB or a companion
# does: the steps around the drain share the margin, each with its own cap. Closing the
# client (database.CLOSE_SECONDS) and the loop (timeouts.EXIT_GRACE, twice) add at most
# 2 s: the process exits within SHUTDOWN_TIMEOUT + EXIT_MARGIN.
SHUTDOWN_MARGIN = 6.0
EXIT_MARGIN = 8.0
STEP_CAP = 1.5  # one store call or companion stop during shutdown
CANCEL_CAP = 0.5  # tasks that ignore a cancellation longer are abandoned
TASK_RESTARTS = 5  # a pipeline task that fails more often than this per minute stops the agent
TASK_RESTART_WINDOW = 60.0


class Agent:
    def __init__(
        self,
        settings: Settings,
        store: WorkStore,
        run_handler: RunHandler,
        *,
        wakeup: Wakeup | None = None,
        clock: Clock = utcnow,
        on_handler_done: Callable[[float, str], None] | None = None,
        threads: ThreadWatch | None = None,
        fleet: FleetBucket | None = None,
    ) -> None:
        self.settings = settings
        self.threads = threads
        self._stuck_logged = False
        self.state = AgentState.STARTING
        self.pauses = PauseRequests()
        self.health = HealthFiles(settings.health_dir)
        self.started_at: datetime = clock()
        self._store = store
        self._wakeup = wakeup
        self._clock = clock
        self._log = get_logger(agent_id=settings.agent_id)
        self.breaker = StoreBreaker(
            settings.store_outage_seconds, self._store_changed, settings.agent_id
        )
        self.pipeline = Pipeline(
            settings,
            store,
            run_handler,
            may_claim=lambda: self.state is AgentState.RUNNING and self.clock_blocked() is None,
            on_settled=self._settled,
            clock=clock,
            on_handler_done=on_handler_done,
            breaker=self.breaker,
            fleet=fleet,
        )
        self.companions: dict[str, Companion] = {}
        # why claiming must wait for the clock (runtime.clock), None when it need not
        self.clock_gate: Callable[[], str | None] | None = None
        self._started: list[str] = []  # companions whose start() completed, in order
        self.backlog: Callable[[], dict[str, int]] | None = None  # as last counted
        self.backlog_age: Callable[[], float | None] | None = None  # seconds since then
        self._last_progress: tuple[dict[str, int], float] = ({}, 0.0)
        self._progress_logged = False
        self.changed = asyncio.Event()  # state or control changed: tell the registry now
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._ignored_file_value: str | None = None
        self._exit_code = EXIT_OK

    # ----------------------------------------------------------------- control

    def request_pause(self, source: Source, reason: str, by: str) -> None:
        self.pauses.hold(PauseRequest(source, reason, by, self._clock()))
        self._apply_control()

    def request_resume(self, source: Source) -> None:
        if self.pauses.release(source):
            self._apply_control()
        if self.pauses.paused and self.state is not AgentState.STOPPING:
            self._log.info(
                "Resume requested but still paused by another source",
                action="control.still_paused",
                source=source.value,
                paused_by=self.pauses.summary(),
            )

    def request_shutdown(self, reason: str) -> None:
        if self._stop.is_set():
            self._log.warning("Second shutdown request: forcing exit", action="control.force")
            self._exit_code = EXIT_FAILED
            self._force.set()
            return
        self._log.info("Shutdown requested", action="control.shutdown", reason=reason)
        self._stop.set()

    def _apply_control(self) -> None:
        if self.state in (AgentState.STARTING, AgentState.STOPPING, AgentState.STOPPED):
            return
        if self.pauses.paused and self.state is AgentState.RUNNING:
            self._log.info("Pausing agent", action="control.pause", paused_by=self.pauses.summary())
            self._set_state(AgentState.PAUSING if self.pipeline.held else AgentState.PAUSED)
        elif not self.pauses.paused and self.state in (AgentState.PAUSING, AgentState.PAUSED):
            self._log.info("Resuming agent", action="control.resume")
            self._set_state(AgentState.RUNNING)
            self.pipeline.kick.set()

    def notify_changed(self) -> None:
        self.changed.set()

    def snapshot(self) -> dict[str, Any]:
        """The agent's state for status displays, the registry and metrics."""
        return {
            "agent_id": self.settings.agent_id,
            "state": self.state.value,
            "paused_by": [r.as_dict() for r in self.pauses.holders()],
            "counters": self.pipeline.counters.as_dict(),
            "throttled_seconds": dict(self.pipeline.rate_limit.throttled.seconds),
            "held": self.pipeline.held,
            "in_flight": self.pipeline.in_flight,
            "abandoned_threads": self.threads.abandoned if self.threads else 0,
            "ready": self.ready,
            "store": self.breaker.as_dict(),
            "started_at": self.started_at,
        }

    def _store_changed(self) -> None:
        self._write_health()
        self.changed.set()
        self.pipeline.kick.set()

    @property
    def ready(self) -> bool:
        """Running, not paused, the store answered recently and the server's clock is
        known well enough to claim."""
        return is_ready(self.state) and self.breaker.available and self.clock_blocked() is None

    def clock_blocked(self) -> str | None:
        return self.clock_gate() if self.clock_gate is not None else None

    def _tick(self) -> None:
        self.breaker.evaluate()
        self._write_health()
        if not self._progress_logged:  # the first outcomes are said at once, not a minute on
            counters = self.pipeline.counters
            if counters.processed or counters.failed or counters.retried:
                self._progress()

    def _progress(self) -> None:
        """One info line at a steady interval while the agent works: what it did since
        the last line, and the backlog as last counted."""
        self._progress_logged = True
        now = asyncio.get_running_loop().time()
        counters = self.pipeline.counters.as_dict()
        last, last_at = self._last_progress
        self._last_progress = (counters, now)
        done = {k: counters[k] - last.get(k, 0) for k in ("processed", "retried", "failed")}
        seconds = max(now - last_at, 1e-9)
        self._log.info(
            "progress",
            action="agent.progress",
            state=self.state.value,
            **done,
            malformed=counters["malformed"] - last.get("malformed", 0),
            per_second=round(done["processed"] / seconds, 1),
            backlog=self.backlog() if self.backlog else None,
            backlog_counted_seconds_ago=_rounded(self.backlog_age() if self.backlog_age else None),
            store=self.breaker.summary(),
        )

    def _settled(self) -> None:
        if self.state is AgentState.PAUSING:
            self._set_state(AgentState.PAUSED)

    def _set_state(self, target: AgentState) -> None:
        check_transition(self.state, target)
        previous, self.state = self.state, target
        self._log.info(
            "state changed", action="agent.state", state=target.value, previous=previous.value
        )
        self._write_health()
        self.changed.set()

    def _write_health(self) -> None:
        details: dict[str, object] = {
            "agent_id": self.settings.agent_id,
            "pid": os.getpid(),
            "held": self.pipeline.held,
            "in_flight": self.pipeline.in_flight,
            **self.pipeline.counters.as_dict(),
            "paused_by": self.pauses.summary(),
            "store": self.breaker.summary(),
        }
        unhealthy = None
        if self.threads is not None:
            details["abandoned_threads"] = self.threads.abandoned
            unhealthy = self._stuck_threads(self.threads)
        try:
            self.health.write(self.state.value, self.ready, details, unhealthy)
        except OSError as exc:
            self._log.error("cannot write health files", action="health.error", error=str(exc))

    def _stuck_threads(self, threads: ThreadWatch) -> str | None:
        """Liveness fails once the abandoned handler threads reach their limit: the pool
        is starving and only a restart frees those threads."""
        if threads.abandoned < threads.max_abandoned:
            self._stuck_logged = False
            return None
        reason = (
            f"{threads.abandoned} handler threads stuck past HANDLER_TIMEOUT "
            f"(limit MAX_ABANDONED_THREADS={threads.max_abandoned}); restart needed"
        )
        if not self._stuck_logged:
            self._stuck_logged = True
            self._log.error(
                "liveness failing: handler threads are stuck; Kubernetes will restart the pod",
                action="agent.threads_stuck",
                abandoned_threads=threads.abandoned,
                limit=threads.max_abandoned,
            )
        return reason

    def _startup_failed(self, exc: BaseException) -> None:
        """One concise line per attempt (a steady interval), never a topology dump."""
        if isinstance(exc, TimeoutError):
            cause = self._store.connection_problem()
            exc = TimeoutError(
                f"no answer within {STARTUP_ATTEMPT:g}s" + (f" ({cause})" if cause else "")
            )
            self.breaker.failed(exc)
        self._log.warning(
            "MongoDB unreachable at start-up, retrying",
            action="agent.connect_error",
            hosts=self.settings.mongodb_hosts,
            error=describe_error(exc, self.settings.secrets()),
            retry_in=STARTUP_RETRY,
        )
        self._write_health()

    def read_control_file(self) -> None:
        reading = control_file.read(self.settings.control_file)
        if reading.command is None:
            if reading.raw != self._ignored_file_value:
                self._ignored_file_value = reading.raw
                self._log.warning(
                    "Ignoring control file value (expected pause, resume or running)",
                    action="control.file_invalid",
                    path=str(self.settings.control_file),
                    value=reading.raw,
                )
            return
        self._ignored_file_value = None
        wants_pause = reading.command is control_file.FileCommand.PAUSE
        if wants_pause == self.pauses.holds(Source.CONTROL_FILE):
            return
        self._log.info(
            f"Control file command detected: {reading.command.value}",
            action="control.file",
            command=reading.command.value,
        )
        if wants_pause:
            self.request_pause(Source.CONTROL_FILE, "control file says pause", "control_file")
        else:
            self.request_resume(Source.CONTROL_FILE)

    # ----------------------------------------------------------------- lifecycle

    def prepare_health(self) -> None:
        """Create the health directory and write the first liveness file; a
        :class:`ConfigError` naming ``HEALTH_DIR`` when that is not possible."""
        try:
            self.health.prepare()
            self._write_health()
        except OSError as exc:
            raise ConfigError(
                f"HEALTH_DIR={self.settings.health_dir}: cannot write the health files "
                f"({exc.strerror or type(exc).__name__}): set HEALTH_DIR to a writable "
                "directory (an emptyDir in Kubernetes)"
            ) from None

    async def run(self, install_signals: bool = True) -> int:
        """Run until shut down. Returns the exit code (0 after a graceful shutdown); raises
        :class:`ConfigError` when the health files cannot be written (before any log)."""
        self.prepare_health()
        self._log.info(
            "Starting agent",
            action="agent.start",
            pid=os.getpid(),
            batch_size=self.settings.batch_size,
            concurrency=self.settings.concurrency,
            lease_seconds=self.settings.lease_seconds,
        )
        if install_signals:
            self._install_signals()
        try:
            try:
                prepared = await self._prepare()
            except PullingAgentError as exc:
                self._log.error(str(exc), action="agent.start_failed")
                self._exit_code = EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILED
                await self._stop_companions()
                prepared = False
            if prepared:
                self.started_at = self._clock()  # measured by now: on the server's clock
                self._set_state(AgentState.PAUSED if self.pauses.paused else AgentState.RUNNING)
                if self.pauses.paused:
                    self._log.info(
                        "Starting paused", action="control.pause", paused_by=self.pauses.summary()
                    )
                await self._serve()
            else:
                self._set_state(AgentState.STOPPING)
            self._set_state(AgentState.STOPPED)
            self.health.clear()
            self._log.info(
                "Agent stopped",
                action="agent.stop",
                exit_code=self._exit_code,
                **self.pipeline.counters.as_dict(),
            )
            return self._exit_code
        finally:
            if install_signals:
                self._remove_signals()

    async def _prepare(self) -> bool:
        """Create indexes (retrying while the server is unreachable) and read the control
        file. Returns False if shutdown was requested before the agent could start."""
        while not self._stop.is_set():
            try:
                async with asyncio.timeout(STARTUP_ATTEMPT):
                    warnings = await self.breaker.call(self._store.ensure_indexes())
                    kept = await self.breaker.call(
                        self._store.ensure_retention(self.settings.retention)
                    )
            except OperationFailure as exc:
                if exc.code != AUTHENTICATION_FAILED:
                    self._startup_failed(exc)
                    await wait_event(self._stop, STARTUP_RETRY)
                    continue
                raise ConfigError(describe_failure(exc, self.settings.secrets())) from None
            except (PyMongoError, TimeoutError) as exc:
                self._startup_failed(exc)
                await wait_event(self._stop, STARTUP_RETRY)
                continue
            except Exception as exc:  # the driver could not use the server's answer
                raise ConfigError(describe_failure(exc, self.settings.secrets())) from None
            for warning in warnings:
                self._log.warning("queue index missing", action="queue.index", detail=warning)
            for level, message in kept:
                say = self._log.warning if level == "warning" else self._log.info
                say(message, action="queue.retention")
            break
        if self._stop.is_set():
            return False
        self.read_control_file()
        for name, companion in self.companions.items():
            if not await self._unless_stopped(companion.start()):
                return False
            self._started.append(name)
            self._log.debug("companion started", action="agent.companion", companion=name)
        return True

    async def _unless_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` unless shutdown is requested first (then cancel it)."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False
        task.result()
        return True

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_progress = ({}, loop.time())
        factories: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            **self.pipeline.tasks(),
            "heartbeat": lambda: self._every(self.settings.heartbeat_interval, self._tick),
            "control-file": lambda: self._every(
                self.settings.control_file_interval, self.read_control_file
            ),
            "progress": lambda: self._every(self.settings.progress_interval, self._progress),
        }
        restartable = set(factories)
        if self._wakeup is not None:
            wakeup = self._wakeup
            factories["wakeup"] = lambda: wakeup(self.pipeline.kick)
        for name, companion in self.companions.items():
            assert name not in factories, f"companion name {name!r} is taken"
            factories[name] = companion.run
        tasks = {name: asyncio.create_task(make(), name=name) for name, make in factories.items()}
        failures: list[float] = []
        stop = asyncio.create_task(self._stop.wait(), name="stop")
        while not self._stop.is_set():
            done, _ = await asyncio.wait(
                {stop, *(t for t in tasks.values() if not t.done())},
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done - {stop}:
                if task.cancelled() or task.exception() is None:
                    continue  # a side task that had nothing to do (e.g. polling-only wake-up)
                name = task.get_name()
                now = loop.time()
                failures = [t for t in failures if now - t < TASK_RESTART_WINDOW] + [now]
                if name in restartable and len(failures) <= TASK_RESTARTS:
                    self._log.error(
                        "internal task failed; restarting it",
                        action="agent.task_restarted",
                        task=name,
                        exc_info=task.exception(),
                    )
                    tasks[name] = asyncio.create_task(factories[name](), name=name)
                    continue
                self._log.error(
                    "internal task failed; shutting down",
                    action="agent.task_failed",
                    task=name,
                    exc_info=task.exception(),
                )
                self._exit_code = EXIT_FAILED
                self._stop.set()
        stop.cancel()
        await self._shutdown(tasks)

    async def _shutdown(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        """Stop in stages, each with a deadline; the whole sequence ends within
        ``SHUTDOWN_TIMEOUT + SHUTDOWN_MARGIN`` whatever the store or a companion does."""
        self._set_state(AgentState.STOPPING)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout + SHUTDOWN_MARGIN

        def budget(cap: float) -> float:
            return max(0.0, min(cap, deadline - loop.time()))

        pipeline = self.pipeline
        pipeline.stop_claiming()
        claimer = tasks["claimer"]
        await asyncio.wait({claimer}, timeout=budget(STEP_CAP))
        self._abandon("claimer", await cancel_and_wait([claimer], budget(CANCEL_CAP)))
        unstarted = await self._bounded("release", pipeline.release_unstarted(), budget(STEP_CAP))
        # the drain keeps what the later steps need of the margin
        drain = min(self.settings.shutdown_timeout, deadline - loop.time() - SHUTDOWN_MARGIN)
        drains = [
            c.drain(max(0.0, drain)) for c in self.companions.values() if isinstance(c, Draining)
        ]
        drained, *_ = await asyncio.gather(
            pipeline.wait_for_running(max(0.0, drain), self._force), *drains
        )
        workers = [t for name, t in tasks.items() if name.startswith("worker-")]
        self._abandon("worker", await cancel_and_wait(workers, budget(CANCEL_CAP)))
        abandoned = await self._bounded("release", pipeline.release_abandoned(), budget(STEP_CAP))
        await self._bounded("flush", pipeline.flush(), budget(STEP_CAP))
        self._abandon("task", await cancel_and_wait(list(tasks.values()), budget(CANCEL_CAP)))
        await self._stop_companions(deadline)
        self._log.info(
            "Leases released",
            action="agent.released",
            unstarted=unstarted,
            unfinished=abandoned,
            drained=drained,
        )

    async def _bounded(
        self, step: str, work: Coroutine[Any, Any, int | None], seconds: float
    ) -> int:
        """One shutdown step that talks to the store: abandoned (and logged) at its deadline.
        Leases it did not hand back expire on their own; nothing is lost."""
        try:
            async with asyncio.timeout(seconds):
                return (await work) or 0
        except TimeoutError:
            self._log.error(
                "shutdown step timed out; its leases will expire instead",
                action="agent.shutdown_step_timeout",
                step=step,
                seconds=round(seconds, 2),
            )
            return 0

    def _abandon(self, kind: str, names: list[str]) -> None:
        if names:
            self._log.error(
                "tasks ignored their cancellation; abandoned",
                action="agent.task_abandoned",
                kind=kind,
                tasks=names,
            )

    async def _stop_companions(self, deadline: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        order = list(reversed(self._started))
        order.sort(key=lambda name: bool(getattr(self.companions[name], "stops_last", False)))
        for name in order:
            companion = self.companions[name]
            seconds = (
                STEP_CAP if deadline is None else max(0.0, min(STEP_CAP, deadline - loop.time()))
            )
            task = asyncio.create_task(companion.stop(), name=f"stop-{name}")
            done, _ = await asyncio.wait({task}, timeout=seconds)
            if not done:
                self._log.error(
                    "companion did not stop in time; abandoned",
                    action="agent.companion_stop_timeout",
                    companion=name,
                    seconds=round(seconds, 2),
                )
                await cancel_and_wait([task], 0.1)
            elif not task.cancelled() and task.exception() is not None:
                self._log.error(
                    "companion did not stop cleanly",
                    action="agent.companion_stop_failed",
                    companion=name,
                    exc_info=task.exception(),
                )

    async def _every(self, seconds: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            action()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self._on_signal, signal.SIGUSR1)
        loop.add_signal_handler(signal.SIGUSR2, self._on_signal, signal.SIGUSR2)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        for sig in early_signals.take():  # received while the process was starting
            self._log.info(
                "signal received during start-up", action="agent.early_signal", signal=sig.name
            )
            self._on_signal(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if sig is signal.SIGUSR1:
            self.request_pause(Source.SIGNAL, "SIGUSR1", "signal")
        elif sig is signal.SIGUSR2:
            self.request_resume(Source.SIGNAL)
        else:
            self.request_shutdown(sig.name)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in early_signals.SIGNALS:
            loop.remove_signal_handler(sig)
        early_signals.capture()  # the process is ending: a late signal must not kill it
