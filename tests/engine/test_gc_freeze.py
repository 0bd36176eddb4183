"""A settled graph is kept out of the garbage collector's passes, and let back in.

At 100k files each full collection walked millions of long-lived objects
while a repair waited (issue 13). Once the graph has settled the engine
freezes what is alive (`gc.freeze`); a changeover and the end of the run
unfreeze it, so that replaced workers and the finished run are collected.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from helpers import EventLog, run_async, until

from pymgmt import File, GraphBuilder
from pymgmt.engine.engine import Engine
from pymgmt.report.events import GraphSwapped, Settled
from pymgmt.world.local import LocalWorld


class _Queue:
    def __init__(self) -> None:
        self.q: asyncio.Queue[Any] = asyncio.Queue()

    async def graphs(self, ctx: Any) -> AsyncIterator[Any]:
        while True:
            yield await self.q.get()


def _graph(tmp_path: Path, content: str) -> Any:
    g = GraphBuilder("freeze")
    g.add(File(name="a", path=str(tmp_path / "a"), content=content))
    g.add(File(name="b", path=str(tmp_path / "b"), content="b\n"))
    return g.build()


def test_the_settled_graph_is_frozen_and_unfrozen_at_a_changeover_and_the_end(
    tmp_path: Path,
) -> None:
    sink = EventLog()
    seen: list[int] = []

    def settled() -> int:
        return sum(isinstance(e, Settled) for e in sink.events)

    async def scenario() -> None:
        engine = Engine(world=LocalWorld("t"), reporter=sink, state_dir=tmp_path / "state")
        front = _Queue()
        task = asyncio.create_task(engine.run(front))
        front.q.put_nowait(_graph(tmp_path, "one\n"))
        await until(lambda: settled() >= 1, "settled")
        seen.append(gc.get_freeze_count())
        n = settled()  # counted before the swap: the new graph may settle at once
        front.q.put_nowait(_graph(tmp_path, "two\n"))
        await until(lambda: any(isinstance(e, GraphSwapped) for e in sink.events), "swap")
        await until(lambda: settled() > n, "settled again")
        seen.append(gc.get_freeze_count())
        engine.stop("test")
        await task

    try:
        run_async(scenario())
        assert seen[0] > 0 and seen[1] > 0, seen
        assert gc.get_freeze_count() == 0  # the finished run is collectable again
        assert (tmp_path / "a").read_text() == "two\n"
    finally:
        gc.unfreeze()
