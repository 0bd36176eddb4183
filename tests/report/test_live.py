"""The live state (report/live.py) follows a real engine: states, counters, refreshes.

The engine runs in-process on real files and the real durable refresh
store; the live state is fed exactly as ``pymgmt run`` feeds it (a reporter
and an observer), and every step waits on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from helpers import run_async, until

from pymgmt import File, GraphBuilder
from pymgmt.engine.engine import Engine
from pymgmt.engine.refresh import RefreshStore
from pymgmt.graph.model import Graph
from pymgmt.redaction import register
from pymgmt.report.console import Fanout
from pymgmt.report.events import ChangeInfo, Checked, Event
from pymgmt.report.live import LiveState
from pymgmt.resources.base import Resource
from pymgmt.world.local import LocalWorld


class _Once:
    def __init__(self, graph: Graph[Resource]) -> None:
        self.graph = graph

    async def graphs(self, ctx: Any) -> Any:
        yield self.graph
        await asyncio.Event().wait()


class _Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


def _engine(tmp_path: Path, live: LiveState) -> Engine:
    engine = Engine(
        world=LocalWorld("test"),
        reporter=Fanout(live, _Sink()),
        state_dir=tmp_path / "state",
        observers=[live.observer()],
    )
    live.refresh_source = engine.refresh
    return engine


def test_a_vertex_goes_from_pending_to_converged_and_counts_a_drift_repair(tmp_path):
    target = tmp_path / "f"
    g = GraphBuilder("live")
    f = g.add(File(name="f", path=str(target), content="hello\n"))
    d = g.add(File(name="d", path=f"{tmp_path}/d/"))
    g.edge(d, f)
    live = LiveState(hostname="test")

    async def scenario() -> list[dict[str, object]]:
        engine = _engine(tmp_path, live)
        task = asyncio.create_task(engine.run(_Once(g.build())))
        await until(lambda: live.converged(), "both vertices converged")
        q = live.subscribe()
        fv = live.vertices["File[f]"]
        assert (fv.applies, fv.drift_repairs, fv.status) == (1, 0, "converged")
        assert fv.last_change is not None and fv.last_check is not None
        assert "hello" in fv.last_diff
        target.write_text("drifted\n")
        await until(lambda: fv.drift_repairs == 1, "the drift repaired")
        seen: list[dict[str, object]] = []
        while not q.empty():
            seen.append(q.get_nowait())
        live.unsubscribe(q)
        engine.stop("test")
        await task
        return seen

    seen = run_async(scenario())
    assert target.read_text() == "hello\n"
    states = [e["vertex"]["status"] for e in seen if e["event"] == "vertex"]  # type: ignore[index]
    assert "converged" in states
    snap = live.snapshot()
    assert snap["edges"] == [{"from": "File[d]", "to": "File[f]", "notify": False, "auto": False}]
    by_name = {v["name"]: v for v in snap["vertices"]}  # type: ignore[attr-defined,index]
    assert by_name["File[f]"]["params"]["path"] == str(target)
    assert by_name["File[f]"]["applies"] == 2
    agent = snap["agent"]
    assert agent["graph"] == "live" and agent["stopping"] is True  # type: ignore[index]


def test_pending_refreshes_come_from_the_durable_store(tmp_path):
    """A refresh a previous agent left on disk is counted for its receiver."""
    g = GraphBuilder("refresh")
    a = g.add(File(name="a", path=str(tmp_path / "a"), content="a"))
    b = g.add(File(name="b", path=str(tmp_path / "b"), content="b"))
    g.edge(a, b, notify=True)
    graph = g.build()

    async def leave_marker() -> None:
        await RefreshStore(str(tmp_path / "refresh")).add(b.key, a.key, str(a))

    run_async(leave_marker())
    live = LiveState()
    live.refresh_source = RefreshStore(str(tmp_path / "refresh"))
    live.graph_swapped(graph)
    assert live.vertices["File[b]"].pending_refreshes == 1
    assert live.vertices["File[a]"].pending_refreshes == 0
    assert live.counts() == {"pending": 2, "applying": 0, "converged": 0, "failed": 0}


def test_a_secret_value_in_params_is_redacted(tmp_path):
    secret = "live-test-s3cret-9f2c"
    register(secret)
    g = GraphBuilder("secret")
    g.add(File(name="s", path=str(tmp_path / "s"), content=f"token={secret}\n"))
    live = LiveState()
    live.graph_swapped(g.build())
    shown = live.vertex("File[s]")
    assert shown is not None
    assert secret not in str(shown)
    assert "<redacted>" in str(shown["params"])


def test_a_subscriber_that_falls_behind_is_told_to_resync(tmp_path):
    g = GraphBuilder("many")
    g.add(File(name="x", path=str(tmp_path / "x"), content="x"))
    live = LiveState()
    live.graph_swapped(g.build())

    async def scenario() -> list[dict[str, object]]:
        q = live.subscribe()
        for _ in range(3000):
            live.graph_swapped(g.build())
        out = []
        while not q.empty():
            out.append(q.get_nowait())
        return out

    items = run_async(scenario())
    assert items[0] == {"event": "resync"}
    assert len(items) < 3000


def _two_files(tmp_path: Path, b_content: str) -> Graph[Resource]:
    g = GraphBuilder("swap")
    g.add(File(name="a", path=str(tmp_path / "a"), content="a"))
    g.add(File(name="b", path=str(tmp_path / "b"), content=b_content))
    return g.build()


def _checked(vertex: str, *, drift: bool = False) -> Checked:
    change = [ChangeInfo("content", "old", "new", "")]
    return Checked(vertex, "event", change, applied=True, noop=False, drift=drift, seconds=0.0)


def test_a_changeover_keeps_what_was_kept_and_resets_what_was_replaced(tmp_path):
    """Every graph is built anew: kept means "wants the same", as for the engine."""
    live = LiveState()
    live.graph_swapped(_two_files(tmp_path, "b"))
    live.emit(_checked("File[a]", drift=True))
    live.emit(_checked("File[b]", drift=True))
    live.graph_swapped(_two_files(tmp_path, "b"))  # the same graph, saved again
    assert [v.status for v in live.vertices.values()] == ["converged", "converged"]
    live.graph_swapped(_two_files(tmp_path, "b2"))  # File[b] replaced
    a, b = live.vertices["File[a]"], live.vertices["File[b]"]
    assert (a.status, a.drift_repairs) == ("converged", 1)
    assert (b.status, b.drift_repairs) == ("pending", 1)  # its history stays
    assert live.vertex("File[b]")["params"]["content"] == "b2"  # type: ignore[index]
    g = GraphBuilder("swap")
    g.add(File(name="a", path=str(tmp_path / "a"), content="a"))
    live.graph_swapped(g.build())  # File[b] removed
    assert list(live.vertices) == ["File[a]"]
    live.emit(_checked("File[b]"))  # a late event of a removed vertex changes nothing
    assert list(live.vertices) == ["File[a]"]
