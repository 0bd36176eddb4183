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
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from ..errors import PymgmtError, ResourceError
from ..graph.model import Edge
from ..report.events import ChangeInfo, Checked, Failed
from ..resources.base import Context, Plan, Resource
from ..traits import Refreshable, Sendable, has
from .ratelimit import TokenBucket
from .retry import RetryBudget

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("pymgmt.engine")


class Status(enum.Enum):
    PENDING = "pending"  # has not completed a check yet
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


class Worker:
    def __init__(self, engine: Engine, res: Resource) -> None:
        self.engine = engine
        self.res = res
        self.name = str(res)
        self.parents: list[Worker] = []
        self.children: list[Worker] = []
        self.in_edges: list[tuple[Worker, Edge]] = []
        self.out_edges: list[tuple[Worker, Edge]] = []
        #: a refresh notification waits for this vertex (persisted by the engine)
        self.refresh_pending = engine.refresh.pending(res.key)
        #: the last values this vertex sent (Send/Recv), by output name
        self.sent: dict[str, object] = {}
        self.status = Status.PENDING
        self.dirty = True
        self.reason: Literal["start", "event", "upstream", "retry"] = "start"
        self.watching = False
        self.converged_once = False  # reached OK under these params
        self.checks = 0  # completed check() calls, for tests and stats
        #: noop only: upstream vertices whose would-be changes this one waits on
        self.pending_on: list[str] = []
        self.would_change = False
        self.wake = asyncio.Event()
        self.busy = False
        self.closed = False  # the task has ended: nothing can wake it any more
        self.dead = False  # init or watch failed for good
        self.task: asyncio.Task[None] | None = None
        self.ctx: Context | None = None
        meta = res.meta
        self.check_budget = RetryBudget(meta)
        self.watch_budget = RetryBudget(meta)
        self.bucket = TokenBucket(meta.limit, meta.burst)
        self.sema_ids = engine.semaphores.declare([*meta.sema, *engine.global_sema])

    def __repr__(self) -> str:
        return f"<Worker {self.name} {self.status.value} dirty={self.dirty}>"

    # -- signals from outside ---------------------------------------------------

    def poke(self) -> None:
        """Ask the loop to re-evaluate (a parent finished, or an event)."""
        if self.closed:
            return  # a dead worker must never count as busy (or the run would hang)
        self.set_busy(True)
        self.wake.set()

    def on_event(self) -> None:
        self.dirty = True
        self.reason = "event"
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
        if not self.dirty:
            self.dirty = True
            self.reason = "upstream"

    def set_busy(self, busy: bool) -> None:
        if busy != self.busy:
            self.busy = busy
            self.engine.converger.busy_changed(+1 if busy else -1)

    # -- the task ------------------------------------------------------------------

    async def run(self, make_context: Callable[[Worker], Context]) -> None:
        self.set_busy(True)
        ctx = self.ctx = make_context(self)
        try:
            try:
                await self.res.init(ctx)
            except Exception as e:
                self._fail("init", e)
                return
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch(ctx), name=f"watch {self.name}")
                await self._loop()
        finally:
            self.closed = True
            self.set_busy(False)
            try:
                await self.res.cleanup()
            except Exception as e:  # cleanup trouble must not hide the real exit
                log.warning("%s: cleanup failed: %s", self.name, e)

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
                self.engine.emit(Failed(self.name, "watch", _message(e), retry_in=delay))
                self.engine.converger.activity()
                with self.engine.converger.holding():
                    await asyncio.sleep(delay)

    def _fail(self, phase: Literal["init", "watch", "check", "apply"], e: Exception) -> None:
        """A permanent failure: descendants stay blocked until an event fixes it."""
        self.status = Status.FAILED
        self.engine.emit(Failed(self.name, phase, _message(e)))
        self.engine.converger.activity()
        if phase in ("init", "watch"):
            # Without a watch nothing will ever wake this vertex again: it
            # stays failed even if a check that was already running succeeds.
            self.dead = True
            self.watching = True
            self.dirty = False
            self.wake.set()  # let the loop see it and go idle
            self.engine.wake_children(self)

    async def _loop(self) -> None:
        while True:
            if not self.wake.is_set():
                if self.watching:
                    # Until its watch is ready the first check is still to
                    # come: stay busy, or the graph "converges" before it ran.
                    self.set_busy(False)
                await self.wake.wait()
            self.wake.clear()
            if not self.watching or not self.dirty:
                continue
            if any(p.status is not Status.OK for p in self.parents):
                continue  # a parent will poke us when it is OK
            wait = self.bucket.wait_time()
            if wait > 0:
                # Rate limited: stay busy and dirty; events arriving meanwhile
                # collapse into the one check that runs when a token is free.
                await asyncio.sleep(wait)
                self.wake.set()
                continue
            self.bucket.take()
            await self._process()

    async def _process(self) -> None:
        self.dirty = False
        reason = self.reason
        self.status = Status.RUNNING
        noop = self.engine.noop or self.res.meta.noop
        self._phase: Literal["check", "apply"] = "check"
        refreshing = self.refresh_pending
        start = time.monotonic()
        try:
            self._receive()
            if refreshing and not noop and has(self.res, Refreshable):
                self.res.refresh()
            if self.sema_ids:
                async with self.engine.semaphores.hold(self.sema_ids):
                    start = time.monotonic()  # the wait for a slot is not check time
                    plan, applied = await self._timed(noop)
            else:
                plan, applied = await self._timed(noop)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if noop and self._noop_pending():
                # Upstream would have changed first; a check against today's
                # state cannot be trusted, so this is pending, not a failure.
                self._finish_noop_pending(reason, str(e))
                return
            delay = self.check_budget.next_delay()
            if delay is None:
                self._fail(self._phase, e)
                return
            self.status = Status.FAILED
            self.engine.emit(Failed(self.name, self._phase, _message(e), retry_in=delay))
            self.engine.converger.activity()
            await asyncio.sleep(delay)  # still busy: a retry is pending work
            self.dirty = True
            self.reason = "retry"
            self.wake.set()
            return
        self.check_budget.reset()
        if plan:
            self.engine.converger.activity()
        if has(self.res, Sendable):
            self.sent = dict(self.res.sends())
        notified: list[str] = []
        if (applied or (noop and plan)) and self.out_edges:
            for child, edge in self.out_edges:
                if edge.notify:
                    notified.append(child.name)
                    if applied:
                        # Durable before this vertex counts as converged.
                        self.engine.refresh.add(child.res.key, self.name)
                        child.refresh_pending = True
        if refreshing and not noop:
            self.engine.refresh.clear(self.res.key)
            self.refresh_pending = False
        drift = applied and self.converged_once
        self.status = Status.FAILED if self.dead else Status.OK
        self.converged_once = True
        self.would_change = bool(plan) and noop
        self.pending_on = self._noop_pending() if noop else []
        self.engine.emit(
            Checked(
                vertex=self.name,
                reason=reason,
                changes=self._changes(plan),
                applied=applied,
                noop=bool(plan) and noop,
                drift=drift,
                seconds=time.monotonic() - start,
                pending_on=self.pending_on,
                refreshed=refreshing,
                notified=notified,
            )
        )
        if applied:
            for c in self.children:
                c.mark_upstream_changed()
        for c in self.children:
            c.poke()

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
        self._phase = "apply"
        await self.res.apply(plan)
        return plan, True

    def _receive(self) -> None:
        """Send/Recv: pull upstream outputs into this resource's params."""
        values: dict[str, object] = {}
        for parent, edge in self.in_edges:
            if edge.recv and edge.send in parent.sent:
                values[edge.recv] = parent.sent[edge.send]
        if not values:
            return
        changed = frozenset(k for k, v in values.items() if getattr(self.res, k) != v)
        if changed:
            for k in sorted(changed):
                self.ctx_log(f"SendRecv: received new {k}")
            self.res.receive({k: values[k] for k in changed}, changed)

    def ctx_log(self, msg: str) -> None:
        log.info("%s: %s", self.name, msg)

    def _noop_pending(self) -> list[str]:
        """Upstream vertices (nearest first) that would change before this one."""
        out: list[str] = []
        for p in self.parents:
            if p.would_change:
                out.append(p.name)
            out.extend(n for n in p.pending_on if n not in out)
        return out

    def _finish_noop_pending(
        self, reason: Literal["start", "event", "upstream", "retry"], error: str
    ) -> None:
        self.status = Status.OK
        self.would_change = False
        self.pending_on = self._noop_pending()
        self.checks += 1
        self.engine.emit(
            Checked(
                vertex=self.name,
                reason=reason,
                changes=[],
                applied=False,
                noop=True,
                drift=False,
                seconds=0.0,
                pending_on=self.pending_on,
                note=f"check failed against the current state: {error}",
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


def _message(e: BaseException) -> str:
    """What a person needs to read about a failure (groups show their first cause)."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return str(e) if isinstance(e, PymgmtError | OSError) else f"{type(e).__name__}: {e}"


async def _poll(ctx: Context, every: int) -> None:
    """The poll metaparam: an event every `every` seconds instead of a watch."""
    ctx.ready()
    while True:
        await asyncio.sleep(every)
        ctx.event()
