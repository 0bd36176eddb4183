"""timer: ticks notify downstream; a refresh resets the interval."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from helpers import run_async

from pymgmt.frontends.api import GraphBuilder
from pymgmt.frontends.api import run_async as run_graph
from pymgmt.resources.exec import Exec
from pymgmt.resources.file import File
from pymgmt.resources.timer import Timer


def _lines(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


async def _until(pred, what: str, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - polling the filesystem, the thing under test
            await asyncio.sleep(0.02)


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_each_tick_refreshes_the_command_downstream(tmp_path):
    log = tmp_path / "ticks"
    g = GraphBuilder("timer")
    t = g.add(Timer(name="t", interval=1))
    g.edge(t, g.add(Exec(name="e", cmd=f"echo tick >> {log}", shell="/bin/sh")), notify=True)

    async def scenario() -> None:
        # Ticks keep the graph busy, so it is stopped from outside after 3 ticks.
        task = asyncio.create_task(run_graph(g, converged_timeout=30, state_dir=tmp_path / "s"))
        await _until(lambda: _lines(log) >= 4, "a run at start and three ticks")
        await _stop(task)

    run_async(scenario(), timeout=30)


def _times(path: Path) -> list[float]:
    return [float(t) for t in path.read_text().split()] if path.exists() else []


def test_a_refresh_resets_the_timer(tmp_path):
    # Read from timestamps the commands wrote, as lower bounds a loaded
    # machine cannot break: a tick comes at least `interval` after the last
    # reset, and the reset happened after the test wrote the drift. Without
    # the reset the next tick would come half an interval after the drift.
    conf, log = tmp_path / "conf", tmp_path / "ticks"
    interval = 2
    g = GraphBuilder("reset")
    f = g.add(File(name=str(conf), content="wanted\n"))
    t = g.add(Timer(name="t", interval=interval))
    e = g.add(Exec(name="e", cmd=f"date +%s.%N >> {log}", shell="/bin/sh"))
    g.edge(f, t, notify=True)  # every repair of conf resets the timer
    g.edge(t, e, notify=True)

    async def scenario() -> None:
        task = asyncio.create_task(run_graph(g, converged_timeout=30, state_dir=tmp_path / "s"))
        await _until(lambda: len(_times(log)) >= 2, "the run at start and a first tick")
        await asyncio.sleep(interval / 2)  # the experiment's input: drift mid-interval
        drifted = time.time()
        conf.write_text("drift\n")
        await _until(lambda: len(_times(log)) >= 3, "the next tick")
        await _stop(task)
        tick, next_tick = _times(log)[1:3]
        assert next_tick - tick >= interval
        assert next_tick - drifted >= interval, "the refresh did not reset the timer"

    run_async(scenario(), timeout=30)
