"""The Engine's seams: declared graphs in, compiled here; observers; converged wait.

Frontends yield declared graphs and the Engine compiles each one
(`compile.accept`) before it is swapped in; observers hear of every graph
swapped in; a converged waiter can replace the local one. In-process, with
the leak check (`run_async`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import run_async, until

from pymgmt import File, GraphBuilder
from pymgmt.engine.converger import Converger
from pymgmt.engine.engine import Engine
from pymgmt.errors import InputError
from pymgmt.frontends.base import FrontendContext
from pymgmt.frontends.compile import accept
from pymgmt.graph.model import Collect, Graph
from pymgmt.report.events import Converged, Event, Failed, GraphRejected, GraphSwapped
from pymgmt.resources.base import Resource
from pymgmt.resources.noop import Noop
from pymgmt.world.local import LocalWorld


class _Events:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class _Queue:
    """A frontend the test feeds declared graphs to; it remembers its context."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[Graph[Resource] | InputError] = asyncio.Queue()
        self.ctx: FrontendContext | None = None

    async def graphs(self, ctx: FrontendContext) -> AsyncIterator[Graph[Resource] | InputError]:
        self.ctx = ctx
        while True:
            yield await self.q.get()


def _engine(tmp_path: Path, sink: _Events, **kw: Any) -> Engine:
    return Engine(world=LocalWorld("test"), reporter=sink, state_dir=tmp_path / "state", **kw)


def _declared(tmp_path: Path, *names: str) -> Graph[Resource]:
    """A directory and files in it (AutoEdges order them), the first file exported."""
    g = GraphBuilder("seams")
    g.add(File(name=f"{tmp_path}/d/"))
    for n in names:
        g.add(File(name=f"{tmp_path}/d/{n}", content=n))
    graph = g.declared()
    graph.exported = {("file", f"{tmp_path}/d/{names[0]}")}
    graph.collect = [Collect("file", "/srv/in/")]
    return graph


class _Observer:
    def __init__(self, fail: bool = False) -> None:
        self.graphs: list[Graph[Resource]] = []
        self.fail = fail

    async def graph_swapped(self, graph: Graph[Resource]) -> None:
        self.graphs.append(graph)
        if self.fail:
            raise RuntimeError("cannot publish")


def test_the_engine_compiles_declared_graphs_and_tells_observers(tmp_path: Path) -> None:
    sink = _Events()
    broken, seen = _Observer(fail=True), _Observer()

    async def scenario() -> tuple[Engine, _Queue]:
        engine = _engine(tmp_path, sink, observers=[broken, seen])
        front = _Queue()
        front.q.put_nowait(_declared(tmp_path, "a"))
        task = asyncio.create_task(engine.run(front))
        await until(lambda: len(seen.graphs) == 1)
        front.q.put_nowait(_declared(tmp_path, "a", "b"))
        await until(lambda: len(seen.graphs) == 2)
        await until((tmp_path / "d" / "b").exists)  # the new graph runs
        engine.stop("test")
        await task
        return engine, front

    engine, front = run_async(scenario())
    assert front.ctx is not None and front.ctx.world is engine.world
    assert front.ctx.inotify is engine.hub
    first, second = seen.graphs
    assert first is not second and second is engine.graph
    # compiled: the automatic edges are there, and what the graph says of the World survived
    assert {e.dst[1] for e in second.edges if e.auto} == {f"{tmp_path}/d/a", f"{tmp_path}/d/b"}
    assert second.exported == {("file", f"{tmp_path}/d/a")}
    assert second.collect == [Collect("file", "/srv/in/")]
    # the broken observer was called each time, and reported, and nothing else broke
    assert len(broken.graphs) == 2
    failures = [e for e in sink.of(Failed) if e.vertex == "observer _Observer"]
    assert len(failures) == 2 and "cannot publish" in failures[0].error
    assert len(sink.of(GraphSwapped)) == 1


def test_an_invalid_first_graph_raises_and_a_later_one_is_rejected(tmp_path: Path) -> None:
    """A cycle is only seen when the whole graph is compiled, in the Engine."""

    def cyclic() -> Graph[Resource]:
        g = GraphBuilder("cycle")
        a, b = g.add(Noop(name="a")), g.add(Noop(name="b"))
        g.edge(a, b)
        g.edge(b, a)
        return g.declared()

    async def first_bad() -> None:
        front = _Queue()
        front.q.put_nowait(cyclic())
        await _engine(tmp_path, _Events()).run(front)

    with pytest.raises(InputError, match="the edges form a cycle"):
        run_async(first_bad())

    sink = _Events()

    async def later_bad() -> Engine:
        engine = _engine(tmp_path, sink)
        front = _Queue()
        front.q.put_nowait(_declared(tmp_path, "a"))
        task = asyncio.create_task(engine.run(front))
        await until(lambda: engine.graph is not None)
        running = engine.graph
        front.q.put_nowait(cyclic())
        await until(lambda: sink.of(GraphRejected))
        assert engine.graph is running
        engine.stop("test")
        await task
        return engine

    run_async(later_bad())
    (rejected,) = sink.of(GraphRejected)
    assert "the edges form a cycle: Noop[" in str(rejected.errors[0])


def test_a_graph_the_caller_accepted_is_not_compiled_again(tmp_path: Path) -> None:
    declared = _declared(tmp_path, "a")
    compiled = accept(declared)

    async def scenario() -> tuple[Graph[Resource] | None, Graph[Resource] | None]:
        engine = _engine(tmp_path, _Events(), accepted=compiled)
        front = _Queue()
        front.q.put_nowait(declared)
        task = asyncio.create_task(engine.run(front))
        await until(lambda: engine.graph is not None)
        first = engine.graph
        again = _declared(tmp_path, "a")  # an equal graph, but not the one accepted
        front.q.put_nowait(again)
        await until(lambda: engine.graph is not first)
        second = engine.graph
        engine.stop("test")
        await task
        return first, second

    first, second = run_async(scenario())
    assert first is compiled.graph
    assert second is not None and second is not compiled.graph


def test_a_converged_waiter_replaces_the_local_wait(tmp_path: Path) -> None:
    sink = _Events()
    calls: list[tuple[Converger, float]] = []

    async def wait(converger: Converger, timeout: float) -> None:
        calls.append((converger, timeout))
        await converger.wait_converged(timeout)

    async def scenario() -> Engine:
        engine = _engine(tmp_path, sink, converged_timeout=0, converged_wait=wait)
        front = _Queue()
        front.q.put_nowait(_declared(tmp_path, "a"))
        await engine.run(front)
        return engine

    engine = run_async(scenario())
    assert calls == [(engine.converger, 0)]
    assert len(sink.of(Converged)) == 1


class _Breaking(_Queue):
    """A frontend whose source breaks after the first graph (a World's watch ending)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = asyncio.Event()

    async def graphs(self, ctx: FrontendContext) -> AsyncIterator[Graph[Resource] | InputError]:
        yield await self.q.get()
        await self.broken.wait()
        raise ConnectionError("the collected exports stopped coming")


def test_a_frontend_failing_while_running_stops_gracefully_then_raises(tmp_path: Path) -> None:
    from pymgmt.report.events import Finished, Stopping

    sink = _Events()

    async def scenario() -> None:
        engine = _engine(tmp_path, sink)
        front = _Breaking()
        front.q.put_nowait(_declared(tmp_path, "a"))
        task = asyncio.create_task(engine.run(front))
        await until((tmp_path / "d" / "a").exists)
        front.broken.set()
        with pytest.raises(ConnectionError, match="stopped coming"):
            await task

    run_async(scenario())
    (stopping,) = sink.of(Stopping)
    assert stopping.interrupted and "the graph source failed" in stopping.reason
    (finished,) = sink.of(Finished)
    assert {v.status for v in finished.states} == {"ok"}  # stopped in order, nothing cut
