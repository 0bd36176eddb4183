"""CollectingFrontend over a real LocalWorld: merged graphs, refusals, no idle swaps."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import run_async, until
from worlds import HostView

from pymgmt.engine.engine import Engine
from pymgmt.errors import InputError
from pymgmt.frontends.collect import CollectingFrontend
from pymgmt.graph.model import Collect, Graph
from pymgmt.report.events import Checked, CollectChanged, CollectRefused, Event, Failed
from pymgmt.resources.base import Resource
from pymgmt.resources.exec import Exec
from pymgmt.resources.file import File
from pymgmt.world.base import WatchEvent
from pymgmt.world.local import LocalWorld
from pymgmt.world.resworld import ResWorld

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "world"))


class _Counting(HostView):
    """A host's view that counts the watches it was asked for."""

    watches = 0

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        self.watches += 1
        return super().watch_prefix(prefix, start_revision)


class _Queue:
    """The inner frontend: yields what the test feeds it."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[Graph[Resource] | InputError] = asyncio.Queue()

    async def graphs(self, ctx: Any) -> AsyncIterator[Graph[Resource] | InputError]:
        while True:
            yield await self.q.get()


class _Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


def _graph(pattern: Path | None, *files: File) -> Graph[Resource]:
    g: Graph[Resource] = Graph(name="g", source="test")
    for f in files:
        g.add(f)
    if pattern is not None:
        g.collect.append(Collect(kind="file", pattern=str(pattern) + "/", owners=("www",)))
    return g


def _names(g: Graph[Resource] | InputError) -> list[str]:
    assert isinstance(g, Graph)
    return sorted(str(r) for r in g.vertices.values())


class _Run:
    """The frontend, consumed by a task; what it yielded is kept."""

    def __init__(self, frontend: CollectingFrontend[Any]) -> None:
        self.frontend = frontend
        self.got: list[Graph[Resource] | InputError] = []

    async def follow(self) -> None:
        async for g in self.frontend.graphs(None):
            self.got.append(g)


def test_no_collect_means_no_subscription() -> None:
    async def main() -> None:
        store = LocalWorld("store")
        view = _Counting(store, "a")
        inner, sink = _Queue(), _Sink()
        run = _Run(CollectingFrontend(inner, ResWorld(view), sink.emit))
        g = _graph(None, File(name="l", path="/tmp/l"))
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(run.follow())
            await inner.q.put(g)
            await until(lambda: run.got, "the graph")
            bad = InputError("broken")
            await inner.q.put(bad)
            await until(lambda: len(run.got) == 2, "the error")
            task.cancel()
        assert _names(run.got[0]) == ["File[l]"]
        assert run.got[1] is bad  # passed through as it is
        assert view.watches == 0 and sink.events == []

    run_async(main())


def test_two_hosts_merged_refused_and_no_idle_yield(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalWorld("store")
        b, c = ResWorld(HostView(store, "b")), ResWorld(HostView(store, "c"))
        await b.export(
            [File(name="f1", path="/x/f1", content="b1\n"), File(name="t", path="/y/taken")]
        )
        await c.export(
            [
                File(name="f1", path="/z/f1", content="c1\n"),  # b < c: b wins
                File(name="evil", path="/q/evil", mode="4755"),
                File(name="own", path="/q/own", owner="root"),
            ]
        )
        inner, sink = _Queue(), _Sink()
        run = _Run(CollectingFrontend(inner, ResWorld(HostView(store, "a")), sink.emit))
        pattern = tmp_path / "A"
        local = _graph(pattern, File(name="taken", path=f"{pattern}/taken", content="local\n"))
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(run.follow())
            await inner.q.put(local)
            await until(lambda: run.got, "the first merged graph")
            assert _names(run.got[0]) == ["File[f1@b]", "File[taken]"]
            assert list(local.vertices) == [("file", "taken")]  # the inner graph is untouched
            merged = run.got[0]
            assert isinstance(merged, Graph) and merged.collect == local.collect
            assert merged.vertices[("file", "f1@b")].path == f"{pattern}/f1"  # type: ignore[attr-defined]
            refused = {(r.host, r.name): r.reason for r in sink.of(CollectRefused)}
            assert set(refused) == {("b", "t"), ("c", "f1"), ("c", "evil"), ("c", "own")}
            assert "already managed by the local File[taken]" in refused[("b", "t")]
            assert "host b's File[f1]" in refused[("c", "f1")]
            assert "setuid" in refused[("c", "evil")]
            assert "owner 'root' is not allowed" in refused[("c", "own")]
            assert sink.of(CollectChanged) == [CollectChanged(["File[f1@b]"], [], 0, [])]

            # c changes only what stays refused: a snapshot, but nothing to swap or say
            n_events = len(sink.events)
            await c.export(
                [
                    File(name="f1", path="/z/f1", content="c2\n"),
                    File(name="evil", path="/q/evil", mode="4755"),
                    File(name="own", path="/q/own", owner="root"),
                ]
            )
            await b.export(
                [File(name="f1", path="/x/f1", content="b2\n"), File(name="t", path="/y/taken")]
            )
            await until(lambda: len(run.got) == 2, "b's change")
            g2 = run.got[1]
            assert isinstance(g2, Graph)
            assert g2.vertices[("file", "f1@b")].content == "b2\n"  # type: ignore[attr-defined]
            assert sink.events[n_events:] == [CollectChanged([], [], 0, ["File[f1@b]"])]

            # b withdraws f1: c's f1 is no longer beaten and comes in
            await b.export([File(name="t", path="/y/taken")])
            await until(lambda: len(run.got) == 3, "b's withdrawal")
            assert _names(run.got[2]) == ["File[f1@c]", "File[taken]"]
            assert sink.events[-1] == CollectChanged(["File[f1@c]"], ["File[f1@b]"], 0, [])

            # a new inner graph is always yielded, merged again
            await inner.q.put(_graph(pattern, File(name="other", path="/tmp/other")))
            await until(lambda: len(run.got) == 4, "the new inner graph")
            assert _names(run.got[3]) == ["File[f1@c]", "File[other]", "File[t@b]"]
            task.cancel()

    run_async(main())


def test_churn_yields_far_fewer_graphs_than_changes_and_the_last_is_complete(
    tmp_path: Path,
) -> None:
    """Thirty hosts joining one after the other: a handful of swaps, all thirty files."""

    async def main() -> None:
        store = LocalWorld("store")
        inner, sink = _Queue(), _Sink()
        run = _Run(CollectingFrontend(inner, ResWorld(HostView(store, "a")), sink.emit))
        pattern = tmp_path / "A"
        n = 30
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(run.follow())
            await inner.q.put(_graph(pattern, File(name="own", path=f"{pattern}/own")))
            await until(lambda: run.got, "the first graph")
            for i in range(n):
                host = ResWorld(HostView(store, f"h{i:02}"))
                await host.export([File(name=f"f{i}", path=f"/x/f{i}", content=f"{i}\n")])
                await asyncio.sleep(0.01)  # each host its own burst
            await until(lambda: len(_names(run.got[-1])) == n + 1, "every host's file")
            task.cancel()
        assert len(run.got) <= 1 + n // 3, len(run.got)  # not one graph per host
        assert _names(run.got[-1]) == sorted(
            ["File[own]", *(f"File[f{i}@h{i:02}]" for i in range(n))]
        )
        added = [name for e in sink.of(CollectChanged) for name in e.added]
        assert sorted(added) == sorted(f"File[f{i}@h{i:02}]" for i in range(n))
        # an export that did not change is not confined again: the same vertex object
        first = next(g for g in run.got if ("file", "f0@h00") in g.vertices)  # type: ignore[union-attr]
        last = run.got[-1]
        assert first is not last and isinstance(first, Graph) and isinstance(last, Graph)
        assert first.vertices[("file", "f0@h00")] is last.vertices[("file", "f0@h00")]

    run_async(main())


@pytest.mark.parametrize("dangling", [False, True])
def test_symlink_at_a_collected_target_is_not_followed(tmp_path: Path, dangling: bool) -> None:
    """End to end: the real engine applies the merged graph; a planted symlink stays a dead end.

    Dangling, the link would make a follower create the file outside.
    """

    async def main() -> None:
        pattern = tmp_path / "A"
        pattern.mkdir()
        outside = tmp_path / "outside"
        outside.mkdir()
        victim = outside / "victim"
        if not dangling:
            victim.write_text("precious\n")
        os.symlink(victim, pattern / "f3b")  # planted by someone who can write in A
        store = LocalWorld("store")
        await ResWorld(HostView(store, "b")).export(
            [
                File(name="f3b", path="/x/y/f3b", content="pwned\n"),
                File(name="ok", path="/x/y/ok", content="fine\n"),
                Exec(name="not-collected", cmd="touch " + str(outside / "exec-ran")),
            ]
        )
        inner, sink = _Queue(), _Sink()
        frontend = CollectingFrontend(inner, ResWorld(HostView(store, "a")), sink.emit)
        await inner.q.put(_graph(pattern))
        engine = Engine(
            world=HostView(store, "a"),  # type: ignore[arg-type]
            reporter=sink,
            state_dir=tmp_path / "state",
            converged_timeout=0,
        )
        await engine.run(frontend)  # type: ignore[arg-type]
        failed = sink.of(Failed)
        assert [f.vertex for f in failed] == ["File[f3b@b]"]
        assert "symlink" in failed[0].error
        if dangling:
            assert not victim.exists()
        else:
            assert victim.read_text() == "precious\n"
        assert os.path.islink(pattern / "f3b")
        assert (pattern / "ok").read_text() == "fine\n"
        assert any(
            isinstance(e, Checked) and e.vertex == "File[ok@b]" and e.applied for e in sink.events
        )
        assert not (outside / "exec-ran").exists()

    run_async(main())


def test_refusals_and_changes_read_well_in_console_and_json() -> None:
    import io
    import json

    from pymgmt.report.console import ConsoleReporter, JsonReporter

    out, js = io.StringIO(), io.StringIO()
    console, machine = ConsoleReporter(out, quiet=True), JsonReporter(js)
    refused = CollectRefused("b", "file", "x", "its path '/x/../../etc/passwd' leaves /tmp/mgmtA/")
    changed = CollectChanged(["File[f1@b]"], ["File[f0@b]"], 3, ["File[f2@c]"])
    for ev in (refused, changed):
        console.emit(ev)
        machine.emit(ev)
    # a refusal is said even when quiet; the rest is not
    assert out.getvalue().split(" ", 1)[1] == (
        "WARNING refused host b's File[x]: its path '/x/../../etc/passwd' leaves /tmp/mgmtA/\n"
    )
    loud = io.StringIO()
    ConsoleReporter(loud).emit(changed)
    first, *lines = loud.getvalue().splitlines()  # one dated line, the names under it
    assert [first.split(" ", 1)[1], *lines] == [
        "INFO  Collected: 1 added, 1 changed, 1 removed, 3 kept",
        "  added: File[f1@b]",
        "  changed: File[f2@c]",
        "  removed: File[f0@b]",
    ]
    docs = [json.loads(line) for line in js.getvalue().splitlines()]
    assert docs[0]["event"] == "collect_refused" and docs[0]["host"] == "b"
    assert docs[1]["event"] == "collect_changed" and docs[1]["added"] == ["File[f1@b]"]


def test_a_graph_that_stops_collecting_unsubscribes(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalWorld("store")
        b = ResWorld(HostView(store, "b"))
        await b.export([File(name="f", path="/x/f")])
        view = _Counting(store, "a")
        inner, sink = _Queue(), _Sink()
        run = _Run(CollectingFrontend(inner, ResWorld(view), sink.emit))
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(run.follow())
            await inner.q.put(_graph(tmp_path, File(name="l", path="/tmp/l")))
            await until(lambda: run.got, "the first graph")
            assert _names(run.got[0]) == ["File[f@b]", "File[l]"]
            await inner.q.put(_graph(None, File(name="l", path="/tmp/l")))
            await until(lambda: len(run.got) == 2, "the graph without collect")
            assert _names(run.got[1]) == ["File[l]"]
            assert sink.events[-1] == CollectChanged([], ["File[f@b]"], 0, [])
            await b.export([File(name="f", path="/x/f"), File(name="g", path="/x/g")])
            await inner.q.put(_graph(None, File(name="m", path="/tmp/m")))
            await until(lambda: len(run.got) == 3, "the next inner graph")
            assert _names(run.got[2]) == ["File[m]"]  # b's new export brought no graph
            task.cancel()
        assert view.watches == 1

    run_async(main())


def test_a_graph_that_collects_nothing_yet_is_the_inner_object(tmp_path: Path) -> None:
    """The engine knows the graph it compiled at start by identity (no second compile)."""

    async def main() -> None:
        store = LocalWorld("store")
        inner, sink = _Queue(), _Sink()
        run = _Run(CollectingFrontend(inner, ResWorld(HostView(store, "a")), sink.emit))
        g = _graph(tmp_path, File(name="l", path=str(tmp_path / "l")))
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(run.follow())
            await inner.q.put(g)
            await until(lambda: run.got, "the graph")
            task.cancel()
        assert run.got[0] is g

    run_async(main())
