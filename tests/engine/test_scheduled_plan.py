"""A plan the resource marks `scheduled` is a tick, whatever woke it; otherwise drift.

A timer that unloads itself after firing (cron, ``remain_after_elapse:
false``) wakes its watch exactly as a ``systemctl stop`` does: only the
check can tell them apart, and says so with `Plan.scheduled`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

from helpers import EventLog, GraphQueue, run_async, until

from pymgmt.engine.engine import Engine
from pymgmt.graph.model import Graph
from pymgmt.report.events import Applying
from pymgmt.resources.base import CONVERGED, Change, Context, Plan, Resource
from pymgmt.world.local import LocalWorld


class Rearmed(Resource, kind="test-rearmed"):
    """Stopped until applied; `by_itself` says whether the stop was its own schedule."""

    armed: ClassVar[bool] = False
    by_itself: ClassVar[bool] = False
    ctx_of: ClassVar[Context | None] = None

    async def watch(self, ctx: Context) -> None:
        Rearmed.ctx_of = ctx
        ctx.ready()
        await asyncio.Event().wait()

    async def check(self) -> Plan:
        if Rearmed.armed:
            return CONVERGED
        return Plan((Change("state", "inactive", "active"),), scheduled=Rearmed.by_itself)

    async def apply(self, plan: Plan) -> None:
        Rearmed.armed = True


def test_a_scheduled_plan_is_a_tick_and_an_unscheduled_one_is_drift(tmp_path: Path) -> None:
    sink = EventLog()
    v = "Test-rearmed[t]"

    async def scenario() -> None:
        Rearmed.armed, Rearmed.by_itself = False, False
        engine = Engine(world=LocalWorld("h1"), reporter=sink, state_dir=tmp_path / "state")
        front = GraphQueue()
        g: Graph[Resource] = Graph(name="rearm")
        g.add(Rearmed(name="t"))
        front.q.put_nowait(g)
        task = asyncio.create_task(engine.run(front))
        await until(lambda: sink.applied(v) == 1, "the first start")
        for by_itself, n in ((True, 2), (False, 3)):
            Rearmed.armed, Rearmed.by_itself = False, by_itself
            assert Rearmed.ctx_of is not None
            Rearmed.ctx_of.event()  # the watch saw it stopped
            await until(lambda n=n: sink.applied(v) == n, f"apply {n}")
        engine.stop("test")
        await task

    run_async(scenario())
    runs = [(c.reason, c.drift) for c in sink.checks(v) if c.applied]
    assert runs == [("start", False), ("tick", False), ("event", True)]
    applying = [e.reason for e in sink.events if isinstance(e, Applying)]
    assert applying == ["start", "tick", "event"]
