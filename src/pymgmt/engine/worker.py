"""One worker per vertex: its watch, and the loop that checks and applies.

Scheduling is local, with no global scheduler: a vertex runs when it is
*dirty* (it has never run, its watch fired, or an upstream vertex changed
something) and *all its parents are OK* (their last check succeeded and
nothing happened since). When a vertex finishes it pokes its children, which
re-evaluate. Independent branches therefore run at the same time and the
makespan of a graph is its critical path.

Bursts of events collapse: an event only sets ``dirty`` and wakes the loop,
so any number of events that arrive during one check cause exactly one more.

A worker is *busy* from the moment something wakes it until its loop has
nothing left to do; the converger counts busy workers, so "converged" needs
no polling and no graph walk.

Cost per vertex (issue 13: 100k files): a worker is one task and one slotted
object. A kind whose watch is only a subscription to a shared watcher
(`traits.Subscribing`: a file on the inotify hub) gets no watch task; the
wake-up and "idle" signals are a flag plus a future made only while someone
waits, not two asyncio.Events (each with its own deque) per vertex.

Refresh notifications go along ``notify`` edges through the engine's
durable store (engine/refresh.py): written ahead of the sender's apply,
snapshotted when the receiver's run starts, removed after it succeeded.
Once the engine is stopping no check starts; the ones under way finish and
are reported.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
import traceback
from collections.abc import Callable
from typing import Literal

from ..errors import InternalError, PymgmtError, ResourceError
from ..graph.model import Edge
from ..report.events import Applying, ChangeInfo, Checked, Failed, Reason
from ..resources.base import Context, Plan, Resource
from ..traits import BatchChecked, Refreshable, Sendable, Subscribing, has
from .ratelimit import TokenBucket
from .retry import RetryBudget
from .services import Services, Standing

log = logging.getLogger("pymgmt.engine")


Phase = Literal["init", "watch", "check", "apply"]

#: after failures for good in a row, the pause before the next check (see
#: `Worker._cooling`): 0.1 s after the second, doubling, at most 5 s
COOL_FIRST = 0.1
COOL_MAX = 5.0


class Status(enum.Enum):
    PENDING = "pending"  # has not completed a check yet
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


class _Halted(Exception):
    """A check found work, but the engine is stopping: the apply never starts."""


class Worker:
    __slots__ = (
        "_dirty",
        "_idle_waiters",
        "_phase",
        "_place",
        "_standing",
        "_status",
        "_status_before",
        "_unsubscribe",
        "_waiter",
        "_woken",
        "_would_change",
        "bucket",
        "busy",
        "check_budget",
        "checks",
        "children",
        "closed",
        "converged_once",
        "ctx",
        "dead",
        "dormant",
        "event_reason",
        "fail_streak",
        "failed_at",
        "in_check",
        "in_edges",
        "name",
        "out_edges",
        "parents",
        "pending_on",
        "rank",
        "reason",
        "received",
        "res",
        "retiring",
        "sema_ids",
        "sent",
        "services",
        "task",
        "upstream",
        "watch_budget",
        "watching",
    )

    def __init__(self, services: Services, res: Resource) -> None:
        self.services = services
        self._standing: Standing | None = services.standing
        self._place: set[Worker] | None = None
        self._status = Status.PENDING
        self._dirty = True
        self._would_change = False
        #: its position in the engine's graph (orders the names `Settled` lists)
        self.rank = 0
        self.res = res
        self.name = str(res)
        self.parents: list[Worker] = []
        self.children: list[Worker] = []
        self.in_edges: list[tuple[Worker, Edge]] = []
        self.out_edges: list[tuple[Worker, Edge]] = []
        #: the last values this vertex sent (Send/Recv), by output name
        self.sent: dict[str, object] = {}
        #: the status before the current run, restored if the run never starts
        self._status_before = Status.PENDING
        self.reason: Reason = "start"
        #: dirty (also) because an upstream vertex changed: only a run settles it
        self.upstream = False
        #: what the watch firing means: the system moved ("event"), or the
        #: kind's own schedule came round ("tick": a timer, never drift)
        self.event_reason: Reason = "tick" if res.scheduled else "event"
        #: Send/Recv: the last value received into each param, by name
        self.received: dict[str, object] = {}
        self.watching = False
        self.converged_once = False  # reached OK under these params
        self.checks = 0  # completed check() calls, for tests and stats
        #: noop only: upstream vertices whose would-be changes this one waits on
        self.pending_on: list[str] = []
        #: woken: something happened since the loop last looked (see `_wait_wake`)
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self.busy = False
        self.closed = False  # the task has ended: nothing can wake it any more
        #: checked by the engine's first pass and converged: no task until woken
        self.dormant = False
        #: takes the watch's subscription off the shared watcher (a Subscribing kind)
        self._unsubscribe: Callable[[], None] | None = None
        self.dead = False  # init or watch failed for good
        #: replaced or removed by a changeover: no check starts any more
        self.retiring = False
        #: a check or apply of this vertex is under way (see `wait_idle`)
        self.in_check = False
        self._idle_waiters: list[asyncio.Future[None]] | None = None
        self._phase: Literal["check", "apply"] = "check"
        self.task: asyncio.Task[None] | None = None
        self.ctx: Context | None = None
        meta = res.meta
        self.check_budget = RetryBudget(meta)
        self.watch_budget = RetryBudget(meta)
        #: check/apply failures for good in a row, and when the last one was
        #: (see `_cooling`); a completed check ends the streak
        self.fail_streak = 0
        self.failed_at = 0.0
        self.bucket = TokenBucket(meta.limit, meta.burst)
        self.sema_ids = services.semaphores.declare([*meta.sema, *services.global_sema])
        self._stand()  # pending and dirty: unfinished

    def __repr__(self) -> str:
        return f"<Worker {self.name} {self.status.value} dirty={self.dirty}>"

    # -- where it stands: kept in `Standing` as it changes ---------------------------

    @property
    def status(self) -> Status:
        return self._status

    @status.setter
    def status(self, status: Status) -> None:
        self._status = status
        self._stand()

    @property
    def dirty(self) -> bool:
        """Work is due: an event, a parent's change or a retry since the last check."""
        return self._dirty

    @dirty.setter
    def dirty(self, dirty: bool) -> None:
        self._dirty = dirty
        self._stand()

    @property
    def would_change(self) -> bool:
        """noop only: the last check found changes it did not make."""
        return self._would_change

    @would_change.setter
    def would_change(self, would: bool) -> None:
        self._would_change = would
        self._stand()

    def _stand(self) -> None:
        """Move into the `Standing` set that says where this worker now stands."""
        standing = self._standing
        if standing is None:
            return  # not (or no longer) in the engine's graph
        if self._status is Status.FAILED:
            place: set[Worker] | None = standing.failed
        elif self._status is Status.OK and not self._dirty:
            place = standing.would_change if self._would_change else None
        else:
            place = standing.unfinished
        if place is not self._place:
            if self._place is not None:
                self._place.discard(self)
            if place is not None:
                place.add(self)
            self._place = place

    def leave_standing(self) -> None:
        """Out of the engine's graph (replaced or removed): counted no more."""
        if self._place is not None:
            self._place.discard(self)
        self._place = self._standing = None

    # -- signals from outside ---------------------------------------------------

    def poke(self) -> None:
        """Ask the loop to re-evaluate (a parent finished, or an event).

        A dormant worker (converged in the engine's first pass, no task) gets
        its task now if there is work to do; with none (a parent finished),
        its loop would only find nothing to do.
        """
        if self.closed:
            return  # a dead worker must never count as busy (or the run would hang)
        if self.dormant:
            if not self.dirty or self.halting():
                return  # nothing to do, or no check may start: stays as it is
            self.dormant = False
            self.task = self.services.spawn(self)
        self.set_busy(True)
        self._wake()

    def _wake(self) -> None:
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait_wake(self) -> None:
        """Wait until woken, then take the wake-up (like Event.wait + clear)."""
        if not self._woken:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        self._woken = False

    async def wait_idle(self) -> None:
        """Until no check or apply of this vertex is under way."""
        if not self.in_check:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._idle_waiters is None:
            self._idle_waiters = []
        self._idle_waiters.append(waiter)
        await waiter

    def _set_idle(self) -> None:
        self.in_check = False
        waiters, self._idle_waiters = self._idle_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def on_event(self) -> None:
        self.dirty = True
        self.reason = self.event_reason
        self.poke()

    def on_tick(self) -> None:
        self.dirty = True
        self.reason = "tick"
        self.poke()

    def on_ready(self) -> None:
        if not self.watching:
            self.watching = True
            self.watch_budget.reset()
            if self.converged_once:
                # A restarted watch may have missed events while it was down.
                self.dirty = True
                self.reason = "event"
            self.poke()

    def mark_upstream_changed(self) -> None:
        self.upstream = True
        if not self.dirty:
            self.dirty = True
            self.reason = "upstream"

    def set_busy(self, busy: bool) -> None:
        if busy != self.busy:
            self.busy = busy
            self.services.converger.busy_changed(+1 if busy else -1)

    # -- the task ------------------------------------------------------------------

    async def run(self, make_context: Callable[[Worker], Context]) -> None:
        """The vertex's task: start it (unless the engine's first pass did), then its loop."""
        self.set_busy(True)
        watch: asyncio.Task[None] | None = None
        try:
            if self.ctx is None and not await self.start(make_context):
                return
            ctx = self.ctx
            assert ctx is not None
            if self._unsubscribe is None:
                watch = asyncio.get_running_loop().create_task(
                    self._watch(ctx), name=f"watch {self.name}"
                )
            await self._loop()
        finally:
            if watch is not None:
                # What a TaskGroup did here: the watch ends with the loop
                # (its own failures are caught and reported in `_watch`).
                watch.cancel()
                await asyncio.wait([watch])
            await self.close()

    async def start(self, make_context: Callable[[Worker], Context]) -> bool:
        """Make the context, init, and subscribe if the kind allows it; False if init failed.

        The failure is reported (`_fail`). Subscribing arms the watch before
        any check, so a change made after it is an event, never lost.
        """
        ctx = self.ctx = make_context(self)
        try:
            await self.res.init(ctx)
        except Exception as e:
            self._fail("init", e)
            return False
        self._unsubscribe = self._subscribe(ctx)
        return True

    @property
    def subscribed(self) -> bool:
        """Watched by a plain subscription (no watch task needed)."""
        return self._unsubscribe is not None

    async def close(self) -> None:
        """The vertex's end: its subscription off, nothing wakes it any more, cleanup once.

        Its task's end, and the engine's stop for a worker without a task
        (dormant, or never started). A worker that was never started has
        nothing to clean up.
        """
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        if self.closed:
            return
        self.closed = True
        self.dormant = False
        self.set_busy(False)
        if self.ctx is None:
            return
        try:
            await self.res.cleanup()
        except Exception as e:  # cleanup trouble must not hide the real exit
            log.warning("%s: cleanup failed: %s", self.name, e)

    def _subscribe(self, ctx: Context) -> Callable[[], None] | None:
        """Watch by a plain subscription if the kind allows it; None: a watch task is needed.

        A subscription that fails (the inotify watch limit) falls back to the
        watch task, which retries under the watch budget and reports it.
        """
        res = self.res
        if res.meta.poll > 0 or not has(res, Subscribing):
            return None
        try:
            unsubscribe = res.subscribe(ctx)
        except Exception:
            return None
        self.on_ready()
        return unsubscribe

    async def _watch(self, ctx: Context) -> None:
        """Run the resource's watch (or the poll metaparam), retrying on failure."""
        meta = self.res.meta
        while True:
            try:
                if meta.poll > 0:
                    await _poll(ctx, meta.poll)
                else:
                    await self.res.watch(ctx)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                delay = self.watch_budget.next_delay()
                if delay is None:
                    self._fail("watch", e)
                    return
                self.watching = False
                self.set_busy(True)  # busy until the restarted watch is ready
                self.services.emit(failure(self.name, "watch", e, retry_in=delay))
                self.services.converger.activity()
                with self.services.converger.holding():
                    await asyncio.sleep(delay)

    def _fail(self, phase: Phase, e: Exception) -> None:
        """A permanent failure: descendants stay blocked until an event fixes it."""
        self.status = Status.FAILED
        self.services.emit(failure(self.name, phase, e))
        self.services.converger.activity()
        if phase in ("check", "apply"):
            self.fail_streak += 1
            self.failed_at = time.monotonic()
        if phase in ("init", "watch"):
            # Without a watch nothing will ever wake this vertex again: it
            # stays failed even if a check that was already running succeeds.
            self.dead = True
            self.watching = True
            self.dirty = False
            self._wake()  # let the loop see it and go idle
            for c in self.children:
                c.poke()

    async def _loop(self) -> None:
        while True:
            if not self._woken and self.watching:
                # Until its watch is ready the first check is still to
                # come: stay busy, or the graph "converges" before it ran.
                self.set_busy(False)
            await self._wait_wake()
            if not self.watching or not self.dirty:
                continue
            if any(p.status is not Status.OK for p in self.parents):
                continue  # a parent will poke us when it is OK
            if self.halting():
                continue  # stays dirty: pending work, never started
            wait = max(self.bucket.wait_time(), self._cooling())
            if wait > 0:
                # Rate limited, or cooling after failures: stay busy and dirty;
                # events arriving meanwhile collapse into the one check that
                # runs when the wait is over.
                await asyncio.sleep(wait)
                self._woken = True
                continue
            self.bucket.take()
            await self._process()

    def _cooling(self) -> float:
        """Seconds to wait before checking a vertex that keeps failing again (<= 0: now).

        A failure for good waits for an event to try again, and the first
        event after one is acted on at once: the operator may just have
        fixed the cause. But a failing apply can itself make the event
        that wakes it (systemd signals the job it refused, a half-made
        file is seen by its own watch), and without a pause such a vertex
        would fail a hundred times a second, burning a core and flooding
        the log. So from the second failure in a row the next check waits
        `COOL_FIRST` seconds, doubling each time up to `COOL_MAX`; a
        completed check ends the streak. The retry metaparams are apart:
        they schedule tries of their own, with their own delays.
        """
        if self.fail_streak < 2:
            return 0.0
        pause = min(COOL_FIRST * (1 << min(self.fail_streak - 2, 16)), COOL_MAX)
        return self.failed_at + pause - time.monotonic()

    def halting(self) -> bool:
        """No check or apply may start: the engine stops, or a changeover retires us."""
        return self.services.stopping or self.retiring

    async def _process(self) -> None:
        self._status_before = self.status
        self.dirty = False
        self.upstream = False
        self.status = Status.RUNNING
        noop = self.services.noop or self.res.meta.noop
        if self.sema_ids:
            async with self.services.semaphores.hold(self.sema_ids):
                delay = await self._attempt(noop)
        else:
            delay = await self._attempt(noop)
        if delay is not None:
            await asyncio.sleep(delay)  # still busy: a retry is pending work
            self.dirty = True
            self.reason = "retry"
            self._woken = True

    async def _attempt(self, noop: bool) -> float | None:
        """One check (and apply), reported; returns the delay of a retry, if one is due.

        Once the engine is stopping no new check starts, but one that already
        started runs to its end and is reported (a graceful stop waits for it):
        what it changed must show in the recap.
        """
        async with self.services.attempts:  # at most MAX_ATTEMPTS at once
            if self.halting():
                self.dirty = True  # never ran: still pending work
                self.status = self._status_before
                return None
            flight = self.services.in_flight
            flight.enter()
            self.in_check = True
            try:
                return await self._attempt_in_flight(noop)
            finally:
                self._set_idle()
                flight.leave()

    async def _attempt_in_flight(self, noop: bool) -> float | None:
        reason = self.reason
        self._phase = "check"
        refresh = self.services.refresh
        # What this run delivers: notifications arriving from now on are kept
        # for one more run (issue 8: a refresh landing mid-run was lost).
        delivered = refresh.snapshot(self.res.key)
        start = time.monotonic()
        try:
            self._receive()
            if delivered and not noop and has(self.res, Refreshable):
                self.res.refresh()
            plan, applied = await self._timed(noop)
            reason = _scheduled(plan, reason)
        except asyncio.CancelledError:
            raise
        except _Halted:
            # Nothing was changed and the work is still to do: pending. The
            # refresh it would have delivered stays on disk for the next agent.
            self.dirty = True
            self.reason = reason
            return None
        except Exception as e:
            if noop and self._noop_pending():
                # Upstream would have changed first; a check against today's
                # state cannot be trusted, so this is pending, not a failure.
                self._finish_noop_pending(reason, _message(e))
                return None
            delay = self.check_budget.next_delay()
            if delay is None:
                self._fail(self._phase, e)
                return None
            self.status = Status.FAILED
            self.services.emit(failure(self.name, self._phase, e, retry_in=delay))
            self.services.converger.activity()
            return delay
        seconds = time.monotonic() - start
        self.check_budget.reset()
        self.fail_streak = 0
        if plan:
            self.services.converger.activity()
        if has(self.res, Sendable):
            self.sent = dict(self.res.sends())
        notified: list[str] = []
        if (applied or (noop and plan)) and self.out_edges:
            notified = [child.name for child, edge in self.out_edges if edge.notify]
        if delivered and not noop:
            await refresh.consume(self.res.key, delivered)
        # Drift means the system moved by itself (the watch fired) and was put
        # back; a refresh run, a timer tick, a retry or an upstream change is not.
        # A plan the resource says follows from a change of what is wanted
        # (a source edited just as the echo of the last write came) is none.
        drift = (
            applied
            and self.converged_once
            and reason == "event"
            and not delivered
            and not plan.wanted_moved
        )
        self.status = Status.FAILED if self.dead else Status.OK
        self.converged_once = True
        self.would_change = bool(plan) and noop
        self.pending_on = self._noop_pending() if noop else []
        self.services.emit(
            Checked(
                vertex=self.name,
                reason=reason,
                changes=self._changes(plan),
                applied=applied,
                noop=bool(plan) and noop,
                drift=drift,
                seconds=seconds,
                pending_on=self.pending_on,
                refreshed=bool(delivered) and not noop,
                notified=notified,
            )
        )
        if applied:
            for c in self.children:
                c.mark_upstream_changed()
        for c in self.children:
            c.poke()
        return None

    def batchable(self) -> bool:
        """Whether the engine's first pass may check this vertex with others of its kind.

        Only a plain vertex: a kind that checks in batches and watches by a
        subscription, and nothing that must surround its check (a semaphore,
        a rate limit, a timeout, a poll, a value received, a pending refresh).
        """
        res, meta = self.res, self.res.meta
        return (
            has(res, BatchChecked)
            and has(res, Subscribing)
            and not self.sema_ids
            and meta.poll <= 0
            and not meta.timeout
            and self.bucket.unlimited
            and not any(edge.recv for _, edge in self.in_edges)
            and not self.services.refresh.pending(self.res.key)
        )

    def ready_for_batch(self) -> bool:
        """Started, subscribed, and free to be checked now: every parent OK, no stop."""
        return (
            self.subscribed
            and not self.closed
            and not self.halting()
            and all(p.status is Status.OK for p in self.parents)
        )

    def converged_at_start(self, seconds: float) -> None:
        """The engine's first pass found this vertex as wanted (`ready_for_batch` held).

        What a check with an empty plan does (`_attempt_in_flight`): OK,
        clean, reported checked and unchanged, its children poked; then the
        worker is dormant: no task until something wakes it (`poke`).
        """
        self.dirty = False
        self.upstream = False
        self.converged_once = True
        if has(self.res, Sendable):
            self.sent = dict(self.res.sends())
        self._unchanged(self.reason, seconds)
        self._woken = False
        self.dormant = True
        self.set_busy(False)

    def may_be_echo(self) -> bool:
        """OK, and dirty only because its watch fired: maybe just its own write.

        An apply's own write reaches the watch while the apply is still under
        way, so a graceful stop would call every vertex applied meanwhile
        pending (issue 8 review, finding 5). `verify` tells the two apart.
        """
        return (
            self.status is Status.OK
            and self.dirty
            and self.reason == "event"
            and not self.upstream
            and not self.closed
            and not self.services.refresh.pending(self.res.key)
        )

    async def verify(self) -> None:
        """Check only (never apply): clean again if nothing differs from what is wanted."""
        try:
            plan = await self.res.check()
        except Exception as e:  # stays pending: the next agent's run will tell
            log.debug("%s: check on the way out failed: %s", self.name, _message(e))
            return
        self.checks += 1
        if not plan:
            self.dirty = False

    async def _timed(self, noop: bool) -> tuple[Plan, bool]:
        """check (and apply unless noop) under the ``timeout`` metaparam."""
        timeout = self.res.meta.timeout
        if not timeout:
            return await self._check_apply(noop)
        try:
            async with asyncio.timeout(timeout / 1000):
                return await self._check_apply(noop)
        except TimeoutError:
            raise ResourceError(f"{self._phase} timed out after {timeout} ms") from None

    async def _check_apply(self, noop: bool) -> tuple[Plan, bool]:
        plan = await self.res.check()
        self.checks += 1
        if not plan or noop:
            return plan, False
        if self.halting():
            # The stop (or a changeover) came while this check ran: a graceful stop lets work
            # under way finish, but an apply that has not begun is not under
            # way (issue 8 review: a package transaction started after ^C).
            raise _Halted
        if self.out_edges:
            await self._notify_ahead()
        self._phase = "apply"
        why = _scheduled(plan, self.reason)
        self.services.emit(Applying(self.name, why, [c.field for c in plan.changes]))
        await self.res.apply(plan)
        return plan, True

    async def _notify_ahead(self) -> None:
        """Write-ahead: persist the refresh of each notify edge before applying.

        Persisted after the apply, a kill -9 the instant the change was made
        lost the refresh for good (issue 8); persisted before, it is at worst
        delivered once too often (engine/refresh.py states the guarantee).
        """
        for child, edge in self.out_edges:
            if edge.notify:
                await self.services.refresh.add(child.res.key, self.res.key, self.name)
                # Dirty now: if the child is running, one more run follows it.
                child.mark_upstream_changed()

    def _receive(self) -> None:
        """Send/Recv: pull upstream outputs into this resource's params."""
        values: dict[str, object] = {}
        for parent, edge in self.in_edges:
            if edge.recv and edge.send in parent.sent:
                values[edge.recv] = parent.sent[edge.send]
        if not values:
            return
        changed = frozenset(k for k, v in values.items() if self.res.holds(k) != v)
        if changed:
            for k in sorted(changed):
                # The first value is no news: only a value that differs from
                # the one received before is "new" (it was said on every run).
                if k in self.received:
                    log.info("%s: SendRecv: received new %s", self.name, k)
                else:
                    log.debug("%s: SendRecv: received %s", self.name, k)
            self.res.receive({k: values[k] for k in changed}, changed)
        self.received.update(values)

    def _noop_pending(self) -> list[str]:
        """Upstream vertices (nearest first) that would change before this one."""
        out: list[str] = []
        for p in self.parents:
            if p.would_change:
                out.append(p.name)
            out.extend(n for n in p.pending_on if n not in out)
        return out

    def _finish_noop_pending(self, reason: Reason, error: str) -> None:
        self.would_change = False
        self.pending_on = self._noop_pending()
        note = f"check failed against the current state: {error}"
        self._unchanged(reason, 0.0, noop=True, note=note)

    def _unchanged(
        self, reason: Reason, seconds: float, *, noop: bool = False, note: str = ""
    ) -> None:
        """OK after a check that changed nothing: counted, reported, the children told."""
        self.status = Status.OK
        self.checks += 1
        self.services.emit(
            Checked(
                vertex=self.name,
                reason=reason,
                changes=[],
                applied=False,
                noop=noop,
                drift=False,
                seconds=seconds,
                pending_on=self.pending_on,
                note=note,
            )
        )
        for c in self.children:
            c.poke()

    def _changes(self, plan: Plan) -> list[ChangeInfo]:
        red = self.res.redact
        return [
            ChangeInfo(
                c.field,
                red(c.field, c.old),
                red(c.field, c.new),
                "" if self.res.is_secret(c.field) else c.diff,
            )
            for c in plan.changes
        ]


def _scheduled(plan: Plan, reason: Reason) -> Reason:
    """What woke the run, as reported: a watch event the resource calls its own schedule is a tick.

    A timer that unloads itself after firing looks to its watch like a
    ``systemctl stop``; only its check can tell the two apart (`Plan.scheduled`).
    """
    return "tick" if plan.scheduled and reason == "event" else reason


def _cause(e: BaseException) -> BaseException:
    """Exception groups (from a resource's own task group) show their first cause."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def _message(e: BaseException) -> str:
    """What a person needs to read about a failure."""
    e = _cause(e)
    if isinstance(e, PymgmtError | OSError):
        return str(e)
    return str(InternalError(f"{type(e).__name__}: {e}"))


def failure(
    vertex: str, phase: Phase, exc: BaseException, *, retry_in: float | None = None
) -> Failed:
    """The `Failed` event for `exc`, with the structured facts JSON consumers read.

    An exception that is neither a PymgmtError nor an OSError is nobody's
    input and no state of the system: it is a bug, reported as an internal
    error with its traceback (logged at debug, carried in the event) instead
    of passing for a user error (issue 8).
    """
    e = _cause(exc)
    msg = _message(e)
    if isinstance(e, ResourceError):
        return Failed(
            vertex, phase, msg, retry_in, "resource", e.errno, e.path, e.command, e.exit_status
        )
    if isinstance(e, PymgmtError):
        return Failed(vertex, phase, msg, retry_in)
    if isinstance(e, OSError):
        path = os.fsdecode(e.filename) if isinstance(e.filename, str | bytes) else None
        return Failed(vertex, phase, msg, retry_in, "os", e.errno, path)
    trace = "".join(traceback.format_exception(e))
    log.debug("%s: %s raised an unexpected exception:\n%s", vertex, phase, trace.rstrip())
    return Failed(vertex, phase, msg, retry_in, "internal", traceback=trace)


async def _poll(ctx: Context, every: int) -> None:
    """The poll metaparam: an event every `every` seconds instead of a watch."""
    ctx.ready()
    while True:
        await asyncio.sleep(every)
        ctx.event()
