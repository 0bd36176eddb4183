"""Kinds whose watch is one hub subscription (traits.Subscribing) need no watch task.

At 100k files a watch task per vertex (its frame, its Event, one scheduling
step) was a large share of the engine's memory and start-up (issue 13). The
engine subscribes such a vertex itself; drift is still repaired, the
subscription ends with the worker, and a subscription that fails falls back
to the kind's ``watch``, retried under the watch budget.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from helpers import EventLog, run_async, until

from pymgmt import File, GraphBuilder
from pymgmt.engine.engine import Engine
from pymgmt.frontends import api
from pymgmt.report.events import Checked, Failed
from pymgmt.resources.base import CONVERGED, Context, Plan, Resource
from pymgmt.world.local import LocalWorld


class _Once:
    def __init__(self, graph: Any) -> None:
        self.graph = graph

    async def graphs(self, ctx: Any) -> Any:
        yield self.graph
        await asyncio.Event().wait()


def test_file_vertices_watch_by_subscription_without_a_task_each(tmp_path: Path) -> None:
    n = 20
    (tmp_path / "d").mkdir()
    g = GraphBuilder("subs")
    for i in range(n):
        g.add(File(name=f"f{i}", path=str(tmp_path / "d" / f"f{i}"), content=f"{i}\n"))
    sink = EventLog()

    async def scenario() -> None:
        engine = Engine(world=LocalWorld("t"), reporter=sink, state_dir=tmp_path / "state")
        task = asyncio.create_task(engine.run(_Once(g.build())))
        await until(lambda: all(sink.applied(f"File[f{i}]") for i in range(n)), "first applies")
        names = [t.get_name() for t in asyncio.all_tasks()]
        assert not [x for x in names if x.startswith("watch ")], names
        # One task per vertex, not two: the worker's own.
        assert sum(1 for x in names if x.startswith("File[")) == n
        # The subscription still sees drift, and the vertex repairs it.
        victim = tmp_path / "d" / "f7"
        victim.write_text("drifted\n")
        await until(lambda: sink.applied("File[f7]") == 2, "the repair")
        assert victim.read_text() == "7\n"
        engine.stop("test")
        await task
        assert engine.hub.watch_count == 0  # every subscription was taken off again

    run_async(scenario())


class _FlakySubscriber(Resource):
    """Subscribing fails; its plain ``watch`` works: the engine must fall back to it."""

    kind: ClassVar[str] = "test-flaky-subscriber"
    watched: ClassVar[list[str]] = []

    def subscribe(self, ctx: Context) -> Any:
        raise OSError(28, "no inotify watches left")

    async def watch(self, ctx: Context) -> None:
        self.watched.append(self.name)
        ctx.ready()
        await asyncio.Event().wait()

    async def check(self) -> Plan:
        return CONVERGED

    async def apply(self, plan: Plan) -> None:
        raise AssertionError("nothing to apply")


def test_a_failed_subscription_falls_back_to_the_kinds_watch(tmp_path: Path) -> None:
    g = GraphBuilder("flaky")
    g.add(_FlakySubscriber(name="s"))
    result = run_async(api.run_async(g, converged_timeout=0, state_dir=tmp_path / "s"))
    assert _FlakySubscriber.watched == ["s"]
    assert not [e for e in result.events if isinstance(e, Failed)]
    assert [e.vertex for e in result.events if isinstance(e, Checked)] == [
        "Test-flaky-subscriber[s]"
    ]
    assert result.exit_code == 0
