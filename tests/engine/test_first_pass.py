"""The engine's first pass: many files' first checks in one task (engine/firstpass.py).

A converged file gets no task of its own until its watch fires; one that
differs, fails or waits for a parent is checked again by its own task, as
before. Real files, real inotify, the leak check of `run_async`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from helpers import EventLog, run_async, until

from pymgmt import File, GraphBuilder
from pymgmt.engine.engine import Engine
from pymgmt.graph.model import Graph
from pymgmt.report.events import Checked, Failed, Finished, Settled
from pymgmt.resources.base import Resource
from pymgmt.world.local import LocalWorld

N = 60


class _Queue:
    """A frontend the test feeds graphs to, one at a time."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[Graph[Resource]] = asyncio.Queue()

    async def graphs(self, hub: object) -> AsyncIterator[Graph[Resource]]:
        while True:
            yield await self.q.get()


def _tree(root: Path, n: int = N) -> list[Path]:
    """`n` files already as wanted, in two directories."""
    files = [root / f"d{i % 2}" / f"f{i}" for i in range(n)]
    for p in files:
        p.parent.mkdir(exist_ok=True)
        p.write_text(f"{p.name}\n")
        p.chmod(0o644)
    return files


def _graph(files: list[Path], name: str = "pass", dirs: Sequence[Path] = ()) -> Graph[Resource]:
    g = GraphBuilder(name)
    for d in dirs:
        g.add(File(name=f"{d}/", path=f"{d}/"))
    for p in files:
        g.add(File(name=str(p), path=str(p), content=f"{p.name}\n", mode="0644"))
    return g.build()


async def _settled(
    tmp_path: Path, sink: EventLog, graph: Graph[Resource]
) -> tuple[Engine, _Queue, asyncio.Task[None]]:
    """An engine running `graph` (fed through a queue, for more), once it has settled."""
    engine = Engine(world=LocalWorld("t"), reporter=sink, state_dir=tmp_path / "state")
    front = _Queue()
    run = asyncio.create_task(engine.run(front))
    front.q.put_nowait(graph)
    await until(lambda: any(isinstance(e, Settled) for e in sink.events), "settled")
    return engine, front, run


def _v(p: Path | str) -> str:
    """The vertex name of the file resource named `p`."""
    return f"File[{p}]"


def _checked(sink: EventLog, p: Path) -> list[Checked]:
    return [e for e in sink.events if isinstance(e, Checked) and e.vertex == _v(p)]


def test_converged_files_are_checked_without_a_task_each_and_drift_is_still_repaired(
    tmp_path: Path,
) -> None:
    files = _tree(tmp_path)
    sink = EventLog()

    async def scenario() -> None:
        engine, _front, run = await _settled(tmp_path, sink, _graph(files))
        # one task for the run, its hub, its stream: none per file
        assert len(asyncio.all_tasks()) < 10
        assert all(w.checks == 1 and w.task is None for w in engine.workers.values())
        # its watch was armed before its check: a change now is seen and repaired
        victim = files[7]
        victim.unlink()
        await until(lambda: victim.exists() and victim.read_text() == "f7\n", "the repair")
        await until(lambda: sink.applied(_v(victim)) == 1, "the repair's report")
        (repair,) = [e for e in _checked(sink, victim) if e.applied]
        assert (repair.reason, repair.applied, repair.drift) == ("event", True, True)
        # a woken file has its task now; the others still have none
        assert engine.workers[("file", str(victim))].task is not None
        assert sum(w.task is None for w in engine.workers.values()) == N - 1
        engine.stop("test")
        await run

    run_async(scenario())
    first = [e for e in sink.events if isinstance(e, Checked) and e.reason == "start"]
    assert len(first) == N and {e.vertex for e in first} == {_v(p) for p in files}
    assert not any(e.changes or e.applied for e in first)


def test_a_file_that_differs_or_fails_is_checked_by_its_own_task(tmp_path: Path) -> None:
    files = _tree(tmp_path)
    files[3].write_text("drifted\n")
    files[4].chmod(0o600)
    files[5].unlink()
    files[6].unlink()
    os.symlink(tmp_path / "elsewhere", files[6])  # never followed: the check fails
    sink = EventLog()

    async def scenario() -> None:
        engine, _front, run = await _settled(tmp_path, sink, _graph(files))
        engine.stop("test")
        await run

    run_async(scenario())
    for i in (3, 4, 5):
        first, *echoes = _checked(sink, files[i])  # then maybe its own write's echo
        assert first.applied and first.changes and not any(e.applied for e in echoes), i
        assert files[i].read_text() == files[i].name + "\n"
        assert files[i].stat().st_mode & 0o777 == 0o644
    failed = [e for e in sink.events if isinstance(e, Failed)]
    assert {e.vertex for e in failed} == {_v(files[6])}
    assert files[6].is_symlink()
    ok = [p for i, p in enumerate(files) if i not in (3, 4, 5, 6)]
    for p in ok:
        (only,) = _checked(sink, p)
        assert not only.applied and not only.changes


def test_a_file_under_a_managed_directory_is_checked_after_it(tmp_path: Path) -> None:
    """AutoEdges: directory before files, in the pass as in the tasks."""
    files = _tree(tmp_path)
    dirs = sorted({p.parent for p in files})
    sink = EventLog()

    async def scenario() -> None:
        engine, _front, run = await _settled(tmp_path, sink, _graph(files, dirs=dirs))
        assert all(w.task is None for w in engine.workers.values())
        engine.stop("test")
        await run

    run_async(scenario())
    order = [e.vertex for e in sink.events if isinstance(e, Checked)]
    for p in files:
        assert order.index(_v(f"{p.parent}/")) < order.index(_v(p))


def test_a_changeover_stops_files_that_never_had_a_task(tmp_path: Path) -> None:
    files = _tree(tmp_path)
    sink = EventLog()

    async def scenario() -> None:
        engine, front, run = await _settled(tmp_path, sink, _graph(files))
        assert engine.hub.watch_count == 2
        gone = [engine.workers[("file", str(p))] for p in files if p.parent.name == "d1"]
        kept = [p for p in files if p.parent.name == "d0"]
        front.q.put_nowait(_graph(kept, "two"))
        await until(lambda: all(w.closed for w in gone), "the removed files stopped")
        assert engine.hub.watch_count == 1  # d1's watch went with its last file
        # a removed file is no longer repaired; a kept one still is
        files[1].unlink()
        kept[0].unlink()
        await until(lambda: kept[0].exists(), "the kept file's repair")
        engine.stop("test")
        await run
        assert not files[1].exists()

    run_async(scenario())


def test_a_stop_during_the_first_pass_starts_no_more_checks(tmp_path: Path) -> None:
    files = _tree(tmp_path, 3000)  # several chunks
    sink = EventLog()

    async def scenario() -> None:
        engine = Engine(world=LocalWorld("t"), reporter=sink, state_dir=tmp_path / "state")

        class StopAtFirstCheck:
            def emit(self, event: object) -> None:
                sink.emit(event)
                if isinstance(event, Checked) and not engine.stopping:
                    engine.stop("test")  # the pass is under way: its first chunk reported

        engine.reporter = StopAtFirstCheck()
        front = _Queue()
        front.q.put_nowait(_graph(files))
        await engine.run(front)

    run_async(scenario())
    (finished,) = [e for e in sink.events if isinstance(e, Finished)]
    states = {s.vertex: s.status for s in finished.states}
    checked = {e.vertex for e in sink.events if isinstance(e, Checked)}
    assert {v for v, s in states.items() if s == "ok"} == checked
    assert 0 < len(checked) < len(files)  # the rest never started: pending
    assert set(states.values()) == {"ok", "pending"}
