"""timer: fires every ``interval`` seconds; a refresh notification resets it.

Each tick is a change, so ``notify`` edges from a timer deliver a refresh to
their targets periodically (run a command every N seconds, say). Because a
tick is activity, a graph with a timer only converges if the converged
timeout is shorter than the interval. A tick is reported with the reason
"tick" and is never "drift": nothing moved the system, the schedule came
round.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from ..types import MAX_TIMER_SECONDS, bound_problem
from .base import CONVERGED, Change, Context, Plan, Resource, param


class Timer(Resource, kind="timer"):
    """A periodic event source.

    Ticks every ``interval`` seconds; each tick is a change, so an edge with
    ``notify: true`` sends its target a refresh notification (an exec runs
    again, a service restarts). A refresh resets the timer. A tick is never
    counted as drift.
    """

    example = """\
graph: hourly
resources:
  timer:
  - name: hourly
    interval: 3600
  exec:
  - name: rotate
    cmd: /usr/local/bin/rotate-logs
edges:
- name: every-hour
  from: {kind: timer, name: hourly}
  to: {kind: exec, name: rotate}
  notify: true
"""

    #: a tick is the timer's own schedule, not the system moving: never drift
    scheduled: ClassVar[bool] = True

    interval: int = param(doc="seconds between ticks (1 to 31,536,000)")

    def problems(self) -> list[tuple[str, str]]:
        if self.interval < 1:
            return [("interval", f"must be at least 1 second, got {self.interval}")]
        bad = bound_problem(self.interval, 1, MAX_TIMER_SECONDS, "seconds (a year)")
        return [("interval", bad)] if bad else []

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self._fired = False
        self._ticks = 0
        self._reset = asyncio.Event()

    def refresh(self) -> None:
        self._fired = False
        self._reset.set()

    async def watch(self, ctx: Context) -> None:
        ctx.ready()
        while True:
            self._reset.clear()
            try:
                async with asyncio.timeout(self.interval):
                    await self._reset.wait()
                continue  # reset: start a new interval
            except TimeoutError:
                self._fired = True
                ctx.event()

    async def check(self) -> Plan:
        if not self._fired:
            return CONVERGED
        return Plan((Change("tick", self._ticks, self._ticks + 1),))

    async def apply(self, plan: Plan) -> None:
        self._ticks += 1
        self._fired = False
