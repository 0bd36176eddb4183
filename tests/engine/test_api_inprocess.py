"""The engine in-process, through the Python API, with the leak check.

`run_async` (tests/helpers.py) runs each scenario in a fresh event loop and
fails if any task is still pending afterwards; the autouse fixture checks
fds, inotify watches, threads and child processes.
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import EventLog, GraphQueue, pid_alive, run_async, until

from pymgmt import Exec, File, GraphBuilder
from pymgmt.engine.engine import Engine
from pymgmt.errors import InputError, InputErrors
from pymgmt.frontends import api
from pymgmt.graph.model import Graph
from pymgmt.report.events import Checked, Failed, GraphSwapped
from pymgmt.resources.base import CONVERGED, Change, Context, Plan, Resource
from pymgmt.world.local import LocalWorld


def _engine(tmp_path: Path, sink: EventLog, **kw: Any) -> Engine:
    return Engine(world=LocalWorld("test"), reporter=sink, state_dir=tmp_path / "state", **kw)


def test_api_run_applies_then_a_second_run_finds_nothing_to_do(tmp_path):
    target = tmp_path / "f"

    def build() -> GraphBuilder:
        g = GraphBuilder("api")
        f = g.add(File(name="f", path=str(target), content="hello\n", mode="0600"))
        d = g.add(File(name="d", path=f"{tmp_path}/d/"))
        g.edge(d, f)
        return g

    first = run_async(api.run_async(build(), converged_timeout=0, state_dir=tmp_path / "s"))
    assert first.exit_code == 2
    assert target.read_text() == "hello\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "d").is_dir()

    second = run_async(api.run_async(build(), converged_timeout=0, state_dir=tmp_path / "s"))
    assert second.exit_code == 0
    assert [e.changes for e in second.events if isinstance(e, Checked)] == [[], []]


def test_builder_rejects_an_invalid_graph_before_anything_runs(tmp_path):
    g = GraphBuilder("bad")
    a = g.add(File(name="rel", path="relative/path", content="x"))
    b = g.add(File(name="ok", path=str(tmp_path / "ok"), content="x"))
    g.edge(a, b)
    g.edge(b, a)
    with pytest.raises(InputErrors) as info:
        run_async(api.run_async(g, converged_timeout=0, state_dir=tmp_path / "s"))
    text = str(info.value)
    assert "absolute path" in text
    assert not (tmp_path / "ok").exists()


def test_cancelling_a_run_kills_its_running_command(tmp_path):
    pidfile = tmp_path / "pid"
    g = GraphBuilder("cancel")
    cmd = f"echo $$ > {shlex.quote(str(pidfile))}; exec sleep 60"
    g.add(Exec(name="slow", shell="/bin/sh", cmd=cmd))

    async def scenario() -> int:
        task = asyncio.create_task(api.run_async(g, converged_timeout=0, state_dir=tmp_path / "s"))
        await until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the command")
        pid = int(pidfile.read_text())
        assert pid_alive(pid)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    pid = run_async(scenario())
    assert not pid_alive(pid), "a cancelled run must not leave its command running"


def test_stopping_the_engine_ends_every_task_and_watch(tmp_path):
    sink = EventLog()
    g = GraphBuilder("stop")
    g.add(File(name="f", path=str(tmp_path / "f"), content="x"))
    g.add(Exec(name="w", cmd="true", watchcmd="sleep 60"))

    async def scenario() -> None:
        engine = _engine(tmp_path, sink)
        front = GraphQueue()
        front.q.put_nowait(g.build())
        task = asyncio.create_task(engine.run(front))
        await until(lambda: len(sink.checks("File[f]")) >= 1 and sink.checks("Exec[w]"), "checks")
        assert engine.hub.watch_count >= 1
        engine.stop("test")
        await task
        assert engine.hub.watch_count == 0

    run_async(scenario())
    assert (tmp_path / "f").read_text() == "x"


async def _barrier(engine: Engine, sink: EventLog, sentinel: Path) -> None:
    """Return once every inotify event from before the call has been handled.

    ``converger.busy == 0`` is no barrier: the echo of a vertex's own first
    write may still be on its way and cause one more check (the test was
    flaky, issue 8). Inotify events reach the engine in order, so once the
    sentinel's disturbance is repaired every earlier event was dispatched
    (its worker woken, so busy); then idle means handled.
    """
    n = len(sink.checks("File[sentinel]"))
    sentinel.write_text("disturbed")
    await until(
        lambda: any(e.applied for e in sink.checks("File[sentinel]")[n:]), "sentinel repair"
    )
    await until(lambda: engine.converger.busy == 0, "idle after the barrier")


def test_changeover_keeps_the_worker_of_an_unchanged_vertex(tmp_path):
    sink = EventLog()

    sentinel = tmp_path / "sentinel"

    def graph(change: str, extra: bool) -> Graph[Resource]:
        g = GraphBuilder("live")
        g.add(File(name="sentinel", path=str(sentinel), content="sentinel"))
        g.add(File(name="keep", path=str(tmp_path / "keep"), content="keep"))
        g.add(File(name="change", path=str(tmp_path / "change"), content=change))
        if extra:
            g.add(File(name="add", path=str(tmp_path / "add"), content="add"))
        else:
            g.add(File(name="remove", path=str(tmp_path / "remove"), content="remove"))
        return g.build()

    async def scenario() -> None:
        engine = _engine(tmp_path, sink)
        front = GraphQueue()
        task = asyncio.create_task(engine.run(front))
        front.q.put_nowait(graph("one", extra=False))
        await until(lambda: len(engine.workers) == 4, "start")
        await until(lambda: all(w.checks for w in engine.workers.values()), "first checks")
        await _barrier(engine, sink, sentinel)
        keep = engine.workers[("file", "keep")]
        keep_checks = keep.checks
        removed = engine.workers[("file", "remove")]

        front.q.put_nowait(graph("two", extra=True))
        await until(lambda: any(isinstance(e, GraphSwapped) for e in sink.events), "swap")
        await until(lambda: (tmp_path / "add").exists(), "the added file")
        await until(lambda: (tmp_path / "change").read_text() == "two", "the changed file")
        await until(lambda: engine.converger.busy == 0, "idle")
        assert engine.workers[("file", "keep")] is keep
        assert keep.checks == keep_checks
        assert removed.task is not None and removed.task.done()
        assert ("file", "remove") not in engine.workers
        engine.stop("test")
        await task

    run_async(scenario())
    (swap,) = [e for e in sink.events if isinstance(e, GraphSwapped)]
    assert (swap.kept, swap.replaced, swap.added, swap.removed) == (
        2,
        ["File[change]"],
        ["File[add]"],
        ["File[remove]"],
    )


def test_an_invalid_first_graph_raises_and_leaves_nothing_running(tmp_path):
    sink = EventLog()

    async def scenario() -> None:
        engine = _engine(tmp_path, sink, converged_timeout=0)
        front = GraphQueue()
        front.q.put_nowait(InputError("broken on purpose"))
        with pytest.raises(InputError, match="broken on purpose"):
            await engine.run(front)

    run_async(scenario())
    assert not any(isinstance(e, Checked) for e in sink.events)


# -- failures in init and watch ------------------------------------------------------


class _BrokenInit(Resource):
    """Not registered as a kind (tests must not add to the global registry)."""

    kind: ClassVar[str] = "test-broken-init"

    async def init(self, ctx: Context) -> None:
        raise RuntimeError("cannot initialise")

    async def check(self) -> Plan:
        raise AssertionError("never checked")

    async def apply(self, plan: Plan) -> None:
        raise AssertionError("never applied")


class _DyingWatch(Resource):
    """Its watch dies (for good) while its first check is still running."""

    kind: ClassVar[str] = "test-dying-watch"
    gate: ClassVar[asyncio.Event | None] = None

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self.done = False
        self.checking = asyncio.Event()

    async def watch(self, ctx: Context) -> None:
        ctx.ready()
        await self.checking.wait()
        raise RuntimeError("the watch died")

    async def check(self) -> Plan:
        self.checking.set()
        await asyncio.sleep(0.05)  # the watch dies meanwhile
        return CONVERGED if self.done else Plan((Change("state", "old", "new"),))

    async def apply(self, plan: Plan) -> None:
        self.done = True


def test_a_failed_init_fails_its_vertex_and_skips_descendants(tmp_path):
    g = GraphBuilder("init")
    broken = g.add(_BrokenInit(name="b"))
    child = g.add(File(name="c", path=str(tmp_path / "c"), content="x"))
    g.add(File(name="other", path=str(tmp_path / "other"), content="x"))
    g.edge(broken, child)
    result = run_async(api.run_async(g, converged_timeout=0, state_dir=tmp_path / "s"))
    assert result.exit_code == 6
    outcome = {st.vertex: result.recap.outcome(st) for st in result.recap.final}
    assert outcome["File[c]"] == "skipped"
    assert outcome["File[other]"] == "changed"
    (fail,) = [e for e in result.events if isinstance(e, Failed)]
    # An unexpected exception is a bug, and says so (with its traceback).
    assert fail.phase == "init" and fail.kind == "internal"
    assert fail.error.startswith("internal error (a pymgmt bug, please report it)")
    assert fail.error.endswith("RuntimeError: cannot initialise")
    assert fail.traceback and 'raise RuntimeError("cannot initialise")' in fail.traceback
    assert not (tmp_path / "c").exists()


def test_a_watch_that_died_for_good_leaves_its_vertex_failed(tmp_path):
    # Regression: the check that finished after the watch died reset the
    # vertex to OK, so the recap said "changed" and the exit code had no
    # failure bit, although the vertex would never react to drift again.
    g = GraphBuilder("watch")
    g.add(_DyingWatch(name="w"))
    result = run_async(api.run_async(g, converged_timeout=0, state_dir=tmp_path / "s"))
    assert any(isinstance(e, Failed) and e.phase == "watch" for e in result.events)
    outcome = {st.vertex: result.recap.outcome(st) for st in result.recap.final}
    assert outcome["Test-dying-watch[w]"] == "failed"
    assert result.exit_code & 4
