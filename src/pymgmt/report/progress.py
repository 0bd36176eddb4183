"""Progress: what long work is doing while it does it (issue 12).

An apt transaction took 22 s of silence before this: a person could not
tell working from stuck. `Progress` is a reporter that follows the
engine's `Applying` events (a `Checked` or `Failed` ends an apply) and says

* at once, that an apply expected to be slow began (a package transaction:
  `SLOW_KINDS`), and of any other apply, once it has run `announce_after`
  seconds (an exec's command that takes a while);
* ``still running: applying for 20 s`` every `every` seconds for anything
  still busy;
* on a terminal, a live one-line status (``pymgmt: 12/40 checked, 2
  applying (Exec[build] 4 s), 26 pending``) kept below the log lines, which
  `Output` clears before each line and draws again after it. It appears only
  once the graph has been busy for `status_after` seconds, so a quick run
  leaves nothing on the screen but its lines, and it goes when the graph is
  converged.

Timers run on the event loop (`call_at`), never a thread, and only while
something is busy: an idle agent wakes for nothing. A first apply of 10k
files has thousands of applies in flight at once, so nothing here walks
them: what is due next waits in a queue and a heap, the longest-running
applies are the oldest entries of `busy`, and the pending count is kept
as events come (issue 13: scanning every apply on each tick cost ~9 % of
such a run).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass

from .events import (
    Applying,
    Checked,
    Converged,
    Event,
    Failed,
    Finished,
    GraphStarted,
    GraphSwapped,
    Settled,
    Stopping,
)
from .logs import Output

#: kinds whose every apply is a long transaction, announced as it begins
SLOW_KINDS = {"pkg": "a package transaction"}


@dataclass
class _Busy:
    """One apply under way."""

    started: float
    fields: list[str]
    #: its start was said (at once for a slow kind, else after `announce_after`)
    announced: bool
    #: when the next "still running" line is due
    next_still: float


class Progress:
    """A reporter: lines about long applies, and a live status line on a terminal."""

    def __init__(
        self,
        output: Output,
        *,
        announce_after: float = 1.0,
        every: float = 20.0,
        status_after: float = 0.5,
        status_every: float = 0.25,
    ) -> None:
        self.output = output
        self.announce_after = announce_after
        self.every = every
        self.status_after = status_after
        self.status_every = status_every
        #: the applies under way, oldest first (a new apply of a vertex moves it last)
        self.busy: dict[str, _Busy] = {}
        # What falls due, without a walk of `busy` (entries of applies that
        # ended are dropped when reached). An announcement and the first
        # "still running" are due a fixed time after the start, so they
        # wait in start order; the later ones, of the few applies that run
        # that long, in a heap.
        self._to_announce: deque[tuple[str, _Busy]] = deque()
        self._first_still: deque[tuple[str, _Busy]] = deque()
        self._later_still: list[tuple[float, int, str, _Busy]] = []
        self._order = itertools.count()  # ties in the heap: the earlier start first
        #: how many of `busy` are not in `done` (the pending count without a union)
        self._busy_undone = 0
        #: vertices of the running graph checked (or failed) since it started
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.total = 0
        #: since when the graph has had work (None: it is converged, or stopping)
        self.working_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def emit(self, event: Event) -> None:
        if isinstance(event, Applying):
            self._applying(event)
        elif isinstance(event, Checked | Failed):
            self._ended(event)
        elif isinstance(event, GraphStarted):
            self.total = event.vertices
            self.done.clear()
            self.failed.clear()
            self._busy_undone = len(self.busy)
            self._work()
        elif isinstance(event, GraphSwapped):
            self.total += len(event.added) - len(event.removed)
            for name in (*event.replaced, *event.added, *event.removed):
                self._unbusy(name)
                self.done.discard(name)
                self.failed.discard(name)
            self._work()
        elif isinstance(event, Converged | Settled | Stopping | Finished):
            self.working_since = None
            if not self.busy:
                self.output.status("")

    def close(self) -> None:
        """Stop the timer and take the status line away (the run is over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.output.status("")

    # -- events --------------------------------------------------------------

    def _applying(self, ev: Applying) -> None:
        now = self._now()
        kind = ev.vertex.split("[", 1)[0].lower()
        slow = SLOW_KINDS.get(kind)
        self._unbusy(ev.vertex)
        b = self.busy[ev.vertex] = _Busy(now, ev.fields, slow is not None, now + self.every)
        if ev.vertex not in self.done:
            self._busy_undone += 1
        self._first_still.append((ev.vertex, b))
        if slow is None:
            self._to_announce.append((ev.vertex, b))
        if slow is not None:
            self.output.line(logging.INFO, f"applying {_fields(ev.fields)}({slow})", ev.vertex)
        self._work()
        self._schedule(now + (self.every if slow else self.announce_after))

    def _ended(self, ev: Checked | Failed) -> None:
        self._unbusy(ev.vertex)
        self.done.add(ev.vertex)
        if isinstance(ev, Failed) and ev.retry_in is None:
            self.failed.add(ev.vertex)
        else:
            self.failed.discard(ev.vertex)
        if not self.busy and self.working_since is None:
            self.output.status("")  # the last apply of a stop ended

    def _unbusy(self, name: str) -> None:
        """`name`'s apply is over (its entries in the queues are dropped when reached)."""
        if self.busy.pop(name, None) is not None and name not in self.done:
            self._busy_undone -= 1

    def _work(self) -> None:
        """New work began: a status line to draw soon, an apply to follow."""
        if self.working_since is None:
            self.working_since = self._now()
        if self._timer is None:
            self._schedule()

    # -- the clock -------------------------------------------------------------

    def _now(self) -> float:
        loop = self._running_loop()
        return loop.time() if loop is not None else time.monotonic()

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
        return self._loop

    def _schedule(self, when: float | None = None) -> None:
        """Wake at `when`, or (None) at the next thing due: an announcement, a
        "still running", a status redraw. An earlier wake-up already set is
        kept: a stream of events must not push a redraw away forever."""
        loop = self._running_loop()
        if loop is None:
            return
        if when is None:
            when = self._next_due(loop.time())
            if when is None:
                return
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._tick)

    def _next_due(self, now: float) -> float | None:
        due = []
        if (announce := self._head(self._to_announce)) is not None:
            due.append(announce.started + self.announce_after)
        if (first := self._head(self._first_still)) is not None:
            due.append(first.next_still)
        if (later := self._later_head()) is not None:
            due.append(later.next_still)
        if self.output.live and self.working_since is not None:
            # the first draw once busy long enough, then a redraw (elapsed times move)
            due.append(max(self.working_since + self.status_after, now + self.status_every))
        # never more often than 20 times a second, however staggered the deadlines
        return max(min(due), now + 0.05) if due else None

    def _head(self, queue: deque[tuple[str, _Busy]]) -> _Busy | None:
        """The first apply in `queue` still under way (those before it are dropped)."""
        while queue:
            name, b = queue[0]
            if self.busy.get(name) is b:
                return b
            queue.popleft()
        return None

    def _later_head(self) -> _Busy | None:
        heap = self._later_still
        while heap:
            _, _, name, b = heap[0]
            if self.busy.get(name) is b:
                return b
            heapq.heappop(heap)
        return None

    def _tick(self) -> None:
        self._timer = None
        now = self._now()
        while (b := self._head(self._to_announce)) and b.started + self.announce_after <= now:
            name, _ = self._to_announce.popleft()
            b.announced = True
            self.output.line(
                logging.INFO,
                f"applying {_fields(b.fields)}(running for {now - b.started:.0f} s)",
                name,
            )
        while (b := self._head(self._first_still)) and b.next_still <= now:
            name, _ = self._first_still.popleft()
            self._still_running(name, b, now)
        while (b := self._later_head()) and b.next_still <= now:
            _, order, name, _ = heapq.heappop(self._later_still)
            self._still_running(name, b, now, order)
        self._draw(now)
        self._schedule()

    def _still_running(self, name: str, b: _Busy, now: float, order: int | None = None) -> None:
        """Say it, and queue the next one."""
        elapsed = round((now - b.started) / self.every) * self.every
        self.output.line(logging.INFO, f"still running: applying for {elapsed:g} s", name)
        b.next_still += self.every
        order = next(self._order) if order is None else order
        heapq.heappush(self._later_still, (b.next_still, order, name, b))

    def _draw(self, now: float) -> None:
        since = self.working_since
        if not self.output.live or since is None or now - since < self.status_after:
            return
        self.output.status(self.status_text(now))

    def status_text(self, now: float) -> str:
        """``pymgmt: 12/40 checked, 2 applying (Exec[build] 4 s, ...), 26 pending, 1 failed``."""
        checked = len(self.done)
        pending = max(self.total - checked - self._busy_undone, 0)
        text = f"pymgmt: {checked}/{self.total} checked, {len(self.busy)} applying"
        if self.busy:
            longest = itertools.islice(self.busy.items(), 3)  # the oldest come first
            text += " (" + ", ".join(f"{n} {now - b.started:.0f} s" for n, b in longest)
            text += ", ...)" if len(self.busy) > 3 else ")"
        text += f", {pending} pending"
        if self.failed:
            text += f", {len(self.failed)} failed"
        return text


def _fields(fields: list[str]) -> str:
    return f"{', '.join(fields)} " if fields else ""
