"""Stopping the engine: it returns, lets running work finish, and tells the truth.

Issue 8: a stop during a live changeover hung the agent (the caller's own
cancellation was swallowed and new workers were started after the stop);
^C reported convergence that did not happen and did not count an apply
that did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import run_async, until

from pymgmt import File, GraphBuilder
from pymgmt.engine.engine import Engine
from pymgmt.errors import InputError
from pymgmt.graph.model import Graph
from pymgmt.report.events import (
    Checked,
    Event,
    Finished,
    GraphSwapped,
    Settled,
    Stopping,
)
from pymgmt.resources.base import CONVERGED, Change, Context, Plan, Resource
from pymgmt.world.local import LocalWorld


class _Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


class _Queue:
    def __init__(self) -> None:
        self.q: asyncio.Queue[Graph[Resource] | InputError] = asyncio.Queue()

    async def graphs(self, hub: Any) -> AsyncIterator[Graph[Resource] | InputError]:
        while True:
            yield await self.q.get()


def _engine(tmp_path: Path, sink: _Sink, **kw: Any) -> Engine:
    return Engine(world=LocalWorld("test"), reporter=sink, state_dir=tmp_path / "state", **kw)


class _SlowCleanup(Resource):
    """Its cleanup takes long: a changeover waits for it (not a registered kind)."""

    kind: ClassVar[str] = "test-slow-cleanup"
    version: int = 0
    started: ClassVar[list[int]] = []
    cleaning: ClassVar[asyncio.Event | None] = None

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self.started.append(self.version)

    async def check(self) -> Plan:
        return CONVERGED

    async def cleanup(self) -> None:
        assert self.cleaning is not None
        self.cleaning.set()
        await asyncio.sleep(3600)  # cut short only by a second cancellation


def test_stop_while_a_changeover_waits_for_old_workers_returns(tmp_path):
    sink = _Sink()

    def graph(version: int) -> Graph[Resource]:
        g = GraphBuilder("swap")
        g.add(_SlowCleanup(name="slow", version=version))
        return g.build()

    async def scenario() -> None:
        _SlowCleanup.started = []
        _SlowCleanup.cleaning = asyncio.Event()
        engine = _engine(tmp_path, sink)
        front = _Queue()
        front.q.put_nowait(graph(1))
        task = asyncio.create_task(engine.run(front))
        await until(lambda: sink.of(Checked), "the first check")
        front.q.put_nowait(graph(2))  # the changeover stops the old worker...
        await _SlowCleanup.cleaning.wait()  # ...whose cleanup now holds it up
        engine.stop("test")
        async with asyncio.timeout(10):
            await task

    run_async(scenario())
    assert _SlowCleanup.started == [1], "a worker was started after the stop"
    assert not sink.of(GraphSwapped)
    assert [s.interrupted for s in sink.of(Stopping)] == [True]


class _SlowApply(Resource):
    """An apply that is under way when the stop comes (not a registered kind)."""

    kind: ClassVar[str] = "test-slow-apply"
    applying: ClassVar[asyncio.Event | None] = None
    finish: ClassVar[asyncio.Event | None] = None

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self.done = False

    async def check(self) -> Plan:
        return CONVERGED if self.done else Plan((Change("state", "old", "new"),))

    async def apply(self, plan: Plan) -> None:
        assert self.applying is not None and self.finish is not None
        self.applying.set()
        await self.finish.wait()
        self.done = True


def test_a_graceful_stop_lets_a_running_apply_finish_and_reports_it(tmp_path, caplog):
    sink = _Sink()
    after = tmp_path / "after"
    g = GraphBuilder("stop")
    slow = g.add(_SlowApply(name="slow"))
    g.edge(slow, g.add(File(name="after", path=str(after), content="x")))

    async def scenario() -> None:
        _SlowApply.applying, _SlowApply.finish = asyncio.Event(), asyncio.Event()
        engine = _engine(tmp_path, sink)  # forever mode: Settled would be reported
        front = _Queue()
        front.q.put_nowait(g.build())
        task = asyncio.create_task(engine.run(front))
        await _SlowApply.applying.wait()
        engine.stop("interrupted by SIGINT")
        await until(lambda: sink.of(Stopping), "the stop")
        _SlowApply.finish.set()  # the apply is allowed to finish: run() waits for it
        async with asyncio.timeout(10):
            await task

    run_async(scenario())
    (done,) = [e for e in sink.of(Checked) if e.vertex == "Test-slow-apply[slow]"]
    assert done.applied  # counted, although it finished after the stop
    assert "waiting for 1 running resource to finish" in caplog.text
    assert not any(e.vertex == "File[after]" for e in sink.of(Checked)), "a check started"
    assert not after.exists()
    assert not sink.of(Settled), "claimed convergence on the way out"
    (fin,) = sink.of(Finished)
    assert {s.vertex: s.status for s in fin.states} == {
        "Test-slow-apply[slow]": "ok",
        "File[after]": "pending",
    }


class _EchoingApply(Resource):
    """Writes a real file it watches, then holds its apply until released.

    The write's own inotify event reaches the watch while the apply is still
    under way: the echo that made every file applied during a graceful stop
    "pending" (issue 8 review, finding 5).
    """

    kind: ClassVar[str] = "test-echoing-apply"
    path: str = ""
    applying: ClassVar[asyncio.Event | None] = None
    finish: ClassVar[asyncio.Event | None] = None

    async def watch(self, ctx: Context) -> None:
        sub = ctx.inotify.subscribe(self.path, ctx.event)
        try:
            ctx.ready()
            await asyncio.Event().wait()
        finally:
            ctx.inotify.unsubscribe(sub)

    async def check(self) -> Plan:
        p = Path(self.path)
        have = p.read_text() if p.exists() else None
        return CONVERGED if have == "wanted" else Plan((Change("content", have, "wanted"),))

    async def apply(self, plan: Plan) -> None:
        assert self.applying is not None and self.finish is not None
        Path(self.path).write_text("wanted")
        self.applying.set()
        await self.finish.wait()


@pytest.mark.parametrize("moved", [False, True], ids=["own-echo", "changed-meanwhile"])
def test_an_apply_finishing_during_a_stop_is_not_pending_because_of_its_own_echo(tmp_path, moved):
    sink = _Sink()
    target = tmp_path / "target"
    g = GraphBuilder("echo")
    g.add(_EchoingApply(name="echo", path=str(target)))

    async def scenario() -> None:
        _EchoingApply.applying, _EchoingApply.finish = asyncio.Event(), asyncio.Event()
        engine = _engine(tmp_path, sink, converged_timeout=600)
        front = _Queue()
        front.q.put_nowait(g.build())
        task = asyncio.create_task(engine.run(front))
        await _EchoingApply.applying.wait()
        if moved:  # someone else changes the file while the apply runs
            target.write_text("somebody else's")
        (w,) = engine.workers.values()
        await until(lambda: w.dirty, "the watch event of the write")
        engine.stop("interrupted by SIGINT")
        await until(lambda: sink.of(Stopping), "the stop")
        _EchoingApply.finish.set()
        async with asyncio.timeout(10):
            await task

    run_async(scenario())
    (done,) = sink.of(Checked)
    assert done.applied
    (fin,) = sink.of(Finished)
    assert [(s.vertex, s.status) for s in fin.states] == [
        ("Test-echoing-apply[echo]", "pending" if moved else "ok")
    ]
    assert target.read_text() == ("somebody else's" if moved else "wanted")  # never applied again


def test_a_stop_before_the_first_graph_is_in_ends_the_run(tmp_path: Path) -> None:
    """A signal while the first graph is still awaited (a slow frontend, a remote
    run's hosts being set up) stops the engine; it used to wait for a graph that,
    arriving while stopping, was never started: the agent hung (issue 11 review)."""
    sink = _Sink()
    engine = _engine(tmp_path, sink)
    frontend = _Queue()  # never yields

    async def main() -> None:
        run = asyncio.create_task(engine.run(frontend))
        await until(lambda: engine._stop is not None, "the engine to start")
        engine.stop("interrupted by SIGINT")
        await run

    run_async(main())
    assert [s.reason for s in sink.of(Stopping)] == ["interrupted by SIGINT"]
    assert sink.of(Finished)


def test_a_stop_before_run_is_not_lost(tmp_path: Path) -> None:
    """stop() before run() began (a signal right after the engine was made): run
    stops at once instead of ignoring it."""
    sink = _Sink()
    engine = _engine(tmp_path, sink)
    engine.stop("interrupted by SIGTERM")
    frontend = _Queue()
    frontend.q.put_nowait(GraphBuilder("g").build())
    run_async(engine.run(frontend))
    assert [s.reason for s in sink.of(Stopping)] == ["interrupted by SIGTERM"]
