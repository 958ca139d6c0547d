"""The work pipeline: claim batches, run the handler on each document, write outcomes in bulk.

Four kinds of task share this object inside one event loop:

* the *claimer* leases the next batch as soon as fewer than ``BATCH_SIZE / 2`` claimed
  documents wait to start, so claiming overlaps processing and a backlog never sleeps;
  when a claim comes back empty it waits for a wake-up (change stream or a state change)
  or ``POLL_INTERVAL``. Due retries and expired leases are swept for at most every
  ``POLL_INTERVAL`` (they produce no wake-up event), fresh work on every claim;
* ``CONCURRENCY`` *workers* run the handler, one document each;
* the *flusher* writes outcomes with one ``bulk_write`` per batch (group commit: whatever
  accumulated while the previous write was in flight goes out in the next one);
* the *renewer* extends the leases of every batch still held, every ``LEASE_SECONDS / 3``.

The pipeline never decides the agent's state: it asks ``may_claim()`` before each claim and
calls ``on_settled()`` whenever it holds nothing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from pymongo.errors import PyMongoError

from pulling_agent.config import Settings
from pulling_agent.logs import get_logger
from pulling_agent.queue.model import (
    Claim,
    ClaimKind,
    Completion,
    OutcomeKind,
    WorkStore,
)
from pulling_agent.queue.results import kept
from pulling_agent.queue.retry import (
    AttemptsExhausted,
    RetryPolicy,
    error_history,
    error_info,
    failure_outcome,
)
from pulling_agent.queue.workflow import annotate, batch_summary
from pulling_agent.runtime.breaker import StoreBreaker
from pulling_agent.runtime.outcomes import Outbox
from pulling_agent.runtime.rate_limit import HORIZON, FleetBucket, RateLimiter
from pulling_agent.runtime.reports import StoreReports
from pulling_agent.runtime.tracing import Tracing
from pulling_agent.text import safe_text, secrets_first
from pulling_agent.timeouts import wait_event
from pulling_agent.work import Context, Outcome, Retry, Skip, accepts_context

Clock = Callable[[], datetime]
# called with (document) or, when it takes a second parameter, (document, context)
RunHandler = Callable[..., Awaitable[Any]]  # the handler's return value: queue.results

FLUSH_LINGER = 0.02  # seconds a partial batch of outcomes may wait for company
# ... under a rate limit, where outcomes trickle in one slot at a time: without it every
# document would cost its own write, the load a rate limit is there to spare MongoDB
PACED_FLUSH_LINGER = 0.25
# seconds (to twice that) before claiming again after a lost race, doubling while the
# races are lost in a row (up to POLL_INTERVAL): contention must not turn into a storm.
# 20 ms cost four no-op agents 50 % more round trips per document on nx-27017; 0.25 s
# about 15 %, with all of them working (bench/throughput.py, docs/BENCHMARKS.md)
CONTENDED_WAIT = 0.25
ROUTINE_SWEEP = 2.0  # seconds: a SWEEP_INTERVAL this short (run --embedded, demo) is routine
ERROR_BACKOFF = (0.5, 1.0, 2.0, 5.0)  # seconds between retries of a failing store call
FRESH_ONLY = (ClaimKind.FRESH,)
RECOVERY = (ClaimKind.EXPIRED, ClaimKind.ORPHANED, ClaimKind.DUE_RETRY)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _being_cancelled() -> bool:
    """Whether someone asked to cancel the current task (as opposed to code inside it
    raising ``CancelledError`` on its own)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@dataclass(slots=True)
class Counters:
    claimed: int = 0
    processed: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0
    lost_leases: int = 0
    store_errors: int = 0
    idle_waits: int = 0
    lease_renewals: int = 0
    malformed: int = 0
    rescheduled: int = 0
    cancelled: int = 0
    batches_closed: int = 0
    dependents_cancelled: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        store: WorkStore,
        run_handler: RunHandler,
        *,
        may_claim: Callable[[], bool],
        on_settled: Callable[[], None],
        clock: Clock = utcnow,
        jitter: Callable[[], float] = random.random,
        on_handler_done: Callable[[float, str], None] | None = None,
        breaker: StoreBreaker | None = None,
        fleet: FleetBucket | None = None,
    ) -> None:
        self._settings = settings
        # never stored in a result or an error (queue.results, queue.retry), longest first
        self._secrets = secrets_first(settings.secrets())
        self._store = store
        self.breaker = breaker or StoreBreaker(settings.store_outage_seconds, lambda: None)
        self._run_handler = run_handler
        self._may_claim = may_claim
        self._on_settled = on_settled
        self._clock = clock
        self._jitter = jitter
        self._on_handler_done = on_handler_done
        self._policy = RetryPolicy(
            settings.max_attempts, settings.retry_base_seconds, settings.retry_max_seconds
        )
        self._low_water = settings.batch_size // 2
        self._log = get_logger(agent_id=settings.agent_id, component="pipeline")
        self.counters = Counters()
        self.kick = asyncio.Event()  # something changed: the claimer should look again
        self._stop = asyncio.Event()
        self._ready: asyncio.Queue[Claim] = asyncio.Queue()
        self._running: set[Claim] = set()
        self._abandoned: list[Claim] = []
        self._held: dict[str, int] = defaultdict(int)  # lease token -> documents not yet settled
        self._held_total = 0
        self._claiming = False
        self._claim_failures = 0
        self._lost_races = 0  # claims in a row that came back empty, lost to other agents
        self._with_context = accepts_context(run_handler)
        self._contexts: dict[Claim, Context] = {}  # running attempts, for their progress
        self._handling: dict[Claim, asyncio.Task[Any] | None] = {}  # running, by worker
        self._cancel_ids: set[tuple[str, Any]] = set()  # (token, _id) asked to cancel
        self._cancel_sent: dict[Claim, bool] = {}  # worker tasks cancelled for a request
        self._cancellable = bool(getattr(run_handler, "cancellable", True))
        self._namespace = f"{settings.mongodb_database}.{settings.mongodb_collection}"
        StoreReports(self.counters, self._log).listen(store)
        self.tracing = Tracing.of(settings, self._log)
        # rate limits: each claimed document gets a start time (claims sized to HORIZON
        # seconds of it); workers wait for it
        self.rate_limit = RateLimiter(settings, fleet, lambda: self._clock().timestamp())
        self._unstarted: list[Claim] = []  # taken by a worker that was waiting for a slot
        self._pacing = 0  # workers waiting for a slot
        self._paced = self.rate_limit.paced
        self._outbox = Outbox(
            store,
            self.breaker,
            clock,
            linger=PACED_FLUSH_LINGER if self._paced else FLUSH_LINGER,
            stopping=self._stop,
            give_up_after=len(ERROR_BACKOFF),
            on_written=self._written,
            on_store_error=self._store_error,
            log=self._log,
            tracing=self.tracing,
        )

    # ----------------------------------------------------------------- observation

    @property
    def held(self) -> int:
        """Documents this agent holds a lease on (waiting, running, or outcome unwritten),
        plus one while a claim is in flight: its result is not known yet."""
        return self._held_total + int(self._claiming)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def tasks(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """The pipeline's tasks by name, as factories: a task that fails unexpectedly is
        restarted with a fresh coroutine (the pipeline's state lives on this object)."""
        work: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "claimer": self._claimer,
            "flusher": self._outbox.run,
            "renewer": self._renewer,
        }
        for n in range(self._settings.concurrency):
            work[f"worker-{n}"] = self._worker
        return work

    # ----------------------------------------------------------------- claiming

    async def _claimer(self) -> None:
        loop = asyncio.get_running_loop()
        last_sweep = float("-inf")
        # the first slow sweep after half to one interval: not at every start of every agent
        # of a fleet at once (it costs a find per BSON type; see WorkStore.sweep)
        last_deep_sweep = loop.time() - self._settings.sweep_interval * self._jitter() / 2
        while not self._stop.is_set():
            self.kick.clear()
            if not self._may_claim() or self._ready.qsize() > self._low_water:
                await self.kick.wait()
                continue
            if not self.breaker.available:
                await self._probe()  # half-open: one probe at a time, no claims
                continue
            ahead = self.rate_limit.ahead()
            if ahead > HORIZON:  # rate-limited: enough documents wait for their slot
                await wait_event(self.kick, ahead - HORIZON)
                continue
            if loop.time() - last_deep_sweep >= self._settings.sweep_interval:
                last_deep_sweep = loop.time()
                await self._sweep()
                if not self._may_claim():
                    continue  # paused meanwhile: no claim after the sweep
            sweep_due = loop.time() - last_sweep >= self._settings.poll_interval
            claims = await self._claim(RECOVERY + FRESH_ONLY if sweep_due else FRESH_ONLY)
            if claims is None:  # the store failed; _claim already waited
                continue
            self._claim_failures = 0
            if sweep_due:
                last_sweep = loop.time()
            if claims and not self._may_claim():
                # paused (or stopping) while the claim was in flight: hand them straight back
                self._register(claims)
                await self._release(claims, undo_attempt=True)
                continue
            if claims and not await self._schedule(claims):
                continue
            if claims:
                self._lost_races = 0
                self._accept(claims)
                continue
            if self._held_total == 0:
                self._on_settled()  # a pause that waited for this claim can now complete
            if self._store.lost_race:  # work is there; other agents were quicker this time
                self._lost_races += 1
                backoff = CONTENDED_WAIT * 2 ** min(self._lost_races - 1, 8)
                wait = min(self._settings.poll_interval, backoff) * (1 + self._jitter())
                await wait_event(self.kick, wait)
                continue
            self._lost_races = 0
            self.counters.idle_waits += 1
            await wait_event(self.kick, self._settings.poll_interval)

    async def _claim(self, kinds: tuple[ClaimKind, ...]) -> list[Claim] | None:
        """One claim; None when the store failed (after a back-off)."""
        self._claiming = True
        started = time.time_ns()
        try:
            claims = await self.breaker.call(
                self._store.claim(
                    self._settings.agent_id,
                    self.rate_limit.claim_size,
                    self._settings.lease_seconds,
                    self._clock(),
                    kinds,
                )
            )
        except PyMongoError as exc:
            self._claim_failures = await self._store_error("claim", exc, self._claim_failures)
            return None
        else:
            self.tracing.claimed(started, claims)
            return claims
        finally:
            self._claiming = False

    async def _schedule(self, claims: list[Claim]) -> bool:
        """Give each claimed document its start time under the rate limits. False when the
        fleet's bucket could not be read: the claims are handed back (attempt undone)."""
        try:
            await self.rate_limit.schedule(claims, self.breaker.call)
        except PyMongoError as exc:
            self._register(claims)
            await self._release(claims, undo_attempt=True)
            self._claim_failures = await self._store_error("fleet_rate", exc, self._claim_failures)
            return False
        return True

    async def _probe(self) -> None:
        try:
            await self.breaker.call(self._store.ping())
        except PyMongoError as exc:
            self._claim_failures = await self._store_error("probe", exc, self._claim_failures)
        else:
            self._claim_failures = 0

    async def _sweep(self) -> None:
        """Documents no claim filter matches as they stand (see ``WorkStore.sweep``)."""
        try:
            changed = await self.breaker.call(self._store.sweep(self._clock()))
        except PyMongoError as exc:
            self._log.warning(
                "sweep failed; trying again later", action="queue.sweep_error", error=str(exc)[:300]
            )
            return
        if changed:  # routine with a development server's frequent sweeps: not worth INFO
            say = (
                self._log.debug
                if self._settings.sweep_interval <= ROUTINE_SWEEP
                else self._log.info
            )
            say("swept unclaimable documents", action="queue.sweep", count=changed)

    def _register(self, claims: list[Claim]) -> None:
        self.counters.claimed += len(claims)
        for claim in claims:
            self._held[claim.token] += 1
            self._held_total += 1

    def _accept(self, claims: list[Claim]) -> None:
        self._register(claims)
        for claim in claims:
            self._ready.put_nowait(claim)
        self._log.debug("claimed", action="queue.claim", count=len(claims))

    # ----------------------------------------------------------------- processing

    async def _worker(self) -> None:
        while True:
            claim = await self._ready.get()
            if self._ready.qsize() <= self._low_water:
                self.kick.set()
            if self._paced:  # without rate limits, no cost per document
                await self._paced_start(claim)
            self._running.add(claim)
            try:
                with self.tracing.process(claim, self._clock) as traced:
                    completion = traced.done(await self._attempt(claim))
            except asyncio.CancelledError:
                self._abandoned.append(claim)
                raise
            finally:
                self._running.discard(claim)
            self._outbox.add(annotate(completion, claim.document))
            if len(self._outbox) >= self._settings.batch_size or not self._busy():
                self._outbox.flush_soon()

    async def _paced_start(self, claim: Claim) -> None:
        self._pacing += 1
        try:
            await self.rate_limit.wait_for_slot(claim)
        except asyncio.CancelledError:
            self._unstarted.append(claim)  # handed back with its attempt undone
            raise
        finally:
            self._pacing -= 1

    async def _attempt(self, claim: Claim) -> Completion:
        now = self._clock()
        if claim.attempts > self._settings.max_attempts:
            exc = AttemptsExhausted(
                f"claimed {claim.attempts} times without a recorded outcome "
                "(its agents died or lost the lease each time)"
            )
            error = error_info(exc, now, claim.attempts, self._secrets)
            history = error_history(claim.document, error)
            return Completion(claim.doc_id, claim.token, OutcomeKind.FAILED, error, history)
        key = (claim.token, claim.doc_id)
        if key in self._cancel_ids or claim.document.get("cancel_requested"):
            return self._cancelled(claim, "before its handler started")
        started = time.perf_counter()
        task = asyncio.current_task()
        try:
            self._handling[claim] = task
            if self._with_context:  # built only for handlers that take it: no cost otherwise
                ctx = self._contexts[claim] = self._context(claim, now)
                value = await self._run_handler(claim.document, ctx)
            else:
                value = await self._run_handler(claim.document)
        except asyncio.CancelledError as exc:
            if task is not None and self._cancel_sent.pop(claim, False):
                if task.cancelling() == 1:  # only the cancel request: not a shutdown too
                    task.uncancel()
                    self._handler_done(started, OutcomeKind.CANCELLED)
                    return self._cancelled(claim, "while its handler ran")
                task.uncancel()
            if _being_cancelled():
                raise  # the agent's own cancellation (shutdown): the lease is handed back
            failure: BaseException = exc  # the handler raised CancelledError itself
        except Outcome as said:
            outcome = self._explicit(claim, said)
            self._handler_done(started, outcome.kind)
            return outcome
        except BaseException as exc:  # SystemExit, KeyboardInterrupt...: the document fails
            failure = exc
        else:
            if key in self._cancel_ids:  # a sync handler told through ctx.cancelled
                self._handler_done(started, OutcomeKind.CANCELLED)
                return self._cancelled(claim, "while its handler ran")
            self._handler_done(started, OutcomeKind.PROCESSED)
            return self._processed(claim, value)
        finally:
            self._handling.pop(claim, None)
            self._contexts.pop(claim, None)
            self._cancel_ids.discard(key)
            if task is not None and self._cancel_sent.pop(claim, False) and task.cancelling():
                task.uncancel()  # the handler swallowed the request's cancellation
        now = self._clock()
        outcome = failure_outcome(
            claim,
            error_info(failure, now, claim.attempts, self._secrets),
            self._policy,
            now,
            self._jitter(),
        )
        self._log.warning(
            "handler failed",
            action="queue.handler_error",
            doc_id=safe_text(claim.doc_id, 200),
            attempt=claim.attempts,
            error_type=type(failure).__qualname__,
            error=safe_text(failure, 500),
            outcome=outcome.kind.value,
            retry_at=outcome.available_at.isoformat() if outcome.available_at else None,
        )
        self._handler_done(started, outcome.kind)
        return outcome

    def _cancelled(self, claim: Claim, when: str) -> Completion:
        reason = f"cancelled by request {when}"
        self._log.info(
            "document cancelled",
            action="queue.cancelled",
            doc_id=safe_text(claim.doc_id, 200),
            reason=reason,
        )
        return Completion(claim.doc_id, claim.token, OutcomeKind.CANCELLED, reason=reason)

    def request_cancel(self, token: str, doc_ids: Iterable[Any]) -> None:
        """Cancel documents this agent holds under ``token``: one not started yet is
        recorded cancelled when a worker takes it; a running async handler is cancelled
        at its next ``await``; a sync handler sees ``ctx.cancelled``."""
        wanted = set(doc_ids)
        for doc_id in wanted:
            self._cancel_ids.add((token, doc_id))
        for claim, task in list(self._handling.items()):
            if claim.token != token or claim.doc_id not in wanted:
                continue
            ctx = self._contexts.get(claim)
            if ctx is not None:
                ctx.cancelled = True
            if self._cancellable and task is not None and claim not in self._cancel_sent:
                self._cancel_sent[claim] = True
                task.cancel()

    def _processed(self, claim: Claim, value: Any) -> Completion:
        result = kept(value, self._settings.result_max_bytes, self._secrets)
        if result.error:
            self._doc_log(claim).warning(
                "result not stored", action="result.refused", error=result.error
            )
        return Completion(claim.doc_id, claim.token, OutcomeKind.PROCESSED, result=result)

    def _doc_log(self, claim: Claim) -> Any:
        return self._log.bind(doc_id=safe_text(claim.doc_id, 200), attempt=claim.attempts)

    def _context(self, claim: Claim, now: datetime) -> Context:
        settings = self._settings
        timeout = settings.handler_timeout
        summary = batch_summary(claim.document)
        return Context(
            doc_id=claim.doc_id,
            attempt=claim.attempts,
            max_attempts=settings.max_attempts,
            agent_id=settings.agent_id,
            lease_token=claim.token,
            deadline=now + timedelta(seconds=timeout) if timeout else None,
            namespace=self._namespace,
            make_log=lambda: self._doc_log(claim),
            batch=summary,
            read_members=None
            if summary is None
            else partial(self._store.batch_members, summary["id"]),
            loop=asyncio.get_running_loop(),
        )

    def _explicit(self, claim: Claim, said: Outcome) -> Completion:
        """What a handler's Retry, Fail or Skip/Cancel turns into."""
        now = self._clock()
        log = self._doc_log(claim)
        if isinstance(said, Retry):
            due = said.due(now)
            error = error_info(said, now, claim.attempts, self._secrets) if said.record else None
            history = error_history(claim.document, error) if error else ()
            log.info(
                "handler asked for a retry", action="queue.retry_requested", at=due.isoformat()
            )
            return Completion(
                claim.doc_id, claim.token, OutcomeKind.RESCHEDULE, error, history, available_at=due
            )
        if isinstance(said, Skip):
            log.info("handler skipped the document", action="queue.skipped", reason=said.reason)
            return Completion(claim.doc_id, claim.token, OutcomeKind.CANCELLED, reason=said.reason)
        error = error_info(said, now, claim.attempts, self._secrets)
        log.warning("handler failed the document", action="queue.failed", reason=said.reason)
        history = error_history(claim.document, error)
        return Completion(claim.doc_id, claim.token, OutcomeKind.FAILED, error, history)

    def _handler_done(self, started: float, outcome: OutcomeKind) -> None:
        if self._on_handler_done is not None:
            self._on_handler_done(time.perf_counter() - started, outcome.value)

    def _busy(self) -> bool:
        return bool(self._running) or self._pacing > 0 or not self._ready.empty()

    # ----------------------------------------------------------------- completing

    async def flush(self) -> None:
        """Write every outcome collected so far (retrying while the store is down)."""
        await self._outbox.flush()

    def _written(self, batch: list[Completion], applied: int | None) -> None:
        self._count(batch, applied)
        self._settle(c.token for c in batch)
        if any(c.dependents or c.batch_id is not None for c in batch):
            self.kick.set()  # settling them may have made documents pending: look now

    def _count(self, batch: list[Completion], applied: int | None) -> None:
        if applied is None:
            return
        for c in batch:
            if c.kind is OutcomeKind.PROCESSED:
                self.counters.processed += 1
            elif c.kind is OutcomeKind.RETRY:
                self.counters.retried += 1
            elif c.kind is OutcomeKind.RESCHEDULE:
                self.counters.rescheduled += 1
            elif c.kind is OutcomeKind.CANCELLED:
                self.counters.cancelled += 1
            else:
                self.counters.failed += 1
        lost = len(batch) - applied
        if lost > 0:
            self.counters.lost_leases += lost
            self._log.warning(
                "outcomes discarded: lease lost (taken over after expiry)",
                action="queue.lease_lost",
                count=lost,
            )

    def _settle(self, tokens: Iterable[str]) -> None:
        for token in tokens:
            self._held[token] -= 1
            self._held_total -= 1
            if self._held[token] <= 0:
                del self._held[token]
        if self.held == 0:
            self._on_settled()

    # ----------------------------------------------------------------- leases

    async def _renewer(self) -> None:
        interval = self._settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            await self.renew()

    async def renew(self) -> None:
        expires = self._clock() + timedelta(seconds=self._settings.lease_seconds)
        for token in list(self._held):
            progress = self._progress_of(token)
            try:
                renewed = await self.breaker.call(
                    self._store.renew(self._settings.agent_id, token, expires, progress)
                )
            except PyMongoError as exc:
                self._log.warning(
                    "lease renewal failed", action="queue.renew_error", error=str(exc)
                )
                self.counters.store_errors += 1
                continue
            self.counters.lease_renewals += renewed
            try:
                asked = await self.breaker.call(self._store.cancel_requested(token))
            except PyMongoError:
                asked = []
            if asked:
                self.request_cancel(token, asked)
            lost = self._held.get(token, 0) - renewed
            if lost > 0:
                self.counters.lost_leases += lost
                self._log.warning(
                    "leases lost before renewal", action="queue.lease_lost", count=lost
                )

    def _progress_of(self, token: str) -> dict[Any, Any]:
        """Progress values set since the last renewal by the handlers of ``token``."""
        progress = {}
        for claim, ctx in list(self._contexts.items()):
            if claim.token == token:
                dirty, value = ctx.take_progress()
                if dirty:
                    progress[claim.doc_id] = value
        return progress

    # ----------------------------------------------------------------- shutdown

    def stop_claiming(self) -> None:
        self._stop.set()
        self.kick.set()

    async def release_unstarted(self) -> int:
        """Hand back every claimed document whose handler has not started (attempt undone)."""
        waiting: list[Claim] = []
        while not self._ready.empty():
            waiting.append(self._ready.get_nowait())
        return await self._release(waiting, undo_attempt=True)

    async def wait_for_running(self, grace: float, force: asyncio.Event) -> bool:
        """Wait until no handler runs, ``grace`` seconds pass or ``force`` is set."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._running and loop.time() < deadline and not force.is_set():
            await wait_event(force, min(0.05, max(0.0, deadline - loop.time())))
        return not self._running

    async def release_abandoned(self) -> int:
        """After the workers were cancelled: hand back what their handlers did not finish
        (and, attempt undone, what was still waiting for a rate-limit slot)."""
        abandoned, self._abandoned = self._abandoned, []
        unstarted, self._unstarted = self._unstarted, []
        released = await self._release(unstarted, undo_attempt=True)
        return released + await self._release(abandoned, undo_attempt=False)

    async def _release(self, claims: list[Claim], undo_attempt: bool) -> int:
        self.rate_limit.forget(claims)
        by_token: dict[str, list[Any]] = defaultdict(list)
        for claim in claims:
            by_token[claim.token].append(claim.doc_id)
        released = 0
        for token, ids in by_token.items():
            try:
                released += await self.breaker.call(self._store.release(token, ids, undo_attempt))
            except PyMongoError as exc:
                self._log.error(
                    "leases not released; the documents return after the lease expires",
                    action="queue.release_error",
                    count=len(ids),
                    error=str(exc),
                )
        self.counters.released += released
        self._settle(c.token for c in claims)
        return released

    async def _store_error(
        self, what: str, exc: PyMongoError, attempt: int, interruptible: bool = True
    ) -> int:
        self.counters.store_errors += 1
        delay = ERROR_BACKOFF[min(attempt, len(ERROR_BACKOFF) - 1)]
        self._log.warning(
            "store unavailable, retrying",
            action=f"queue.{what}_error",
            error=str(exc)[:500],
            retry_in=delay,
        )
        if not interruptible:
            await asyncio.sleep(delay)
            return attempt + 1
        await wait_event(self._stop, delay)
        return attempt + 1
