"""`Settled` names what failed, in graph order, from counts kept as workers change.

The engine no longer walks every worker each time the graph comes to rest
(O(N) a repair, issue 13): each worker moves itself between the failed /
would-change / unfinished sets of `Standing`. These timelines check that
what `Settled` says still follows the graph: failures named in the graph's
order, a vertex a failure blocks does not keep the graph from settling, a
replaced or removed worker is forgotten, and a fixed one is no longer named.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from helpers import EventLog, run_async, until

from pymgmt import File, GraphBuilder
from pymgmt.engine.engine import Engine
from pymgmt.report.events import Settled
from pymgmt.resources.exec import Exec
from pymgmt.resources.noop import Noop
from pymgmt.world.local import LocalWorld


class _Queue:
    def __init__(self) -> None:
        self.q: asyncio.Queue[Any] = asyncio.Queue()

    async def graphs(self, ctx: Any) -> AsyncIterator[Any]:
        while True:
            yield await self.q.get()


def _graph(tmp_path: Path, broken: list[str], fixed: tuple[str, ...] = ()) -> Any:
    """A file beside each command (`broken` fail); a noop waits on the last command."""
    g = GraphBuilder("standing")
    last = None
    for i, name in enumerate([*broken, *fixed]):
        g.add(File(name=f"f{i}", path=str(tmp_path / f"f{i}"), content=f"{i}\n"))
        last = g.add(Exec(name=name, cmd="true" if name in fixed else "false"))
    after = g.add(Noop(name="after"))
    assert last is not None
    g.edge(last, after)
    return g.build()


def test_settled_names_failures_in_graph_order_and_forgets_replaced_workers(
    tmp_path: Path,
) -> None:
    sink = EventLog()
    said: list[Settled] = []

    def settled() -> list[Settled]:
        return [e for e in sink.events if isinstance(e, Settled)]

    async def scenario() -> None:
        engine = Engine(world=LocalWorld("t"), reporter=sink, state_dir=tmp_path / "state")
        front = _Queue()
        task = asyncio.create_task(engine.run(front))
        # graph order, not name order; "after" is blocked by "a" and waits
        front.q.put_nowait(_graph(tmp_path, ["z", "b", "a"]))
        await until(lambda: len(settled()) >= 1, "settled")
        said.append(settled()[-1])
        # "z" removed, "a" replaced by a command that works: "after" runs now
        front.q.put_nowait(_graph(tmp_path, ["b"], fixed=("a",)))
        await until(lambda: len(settled()) >= 2, "settled after the changeover")
        said.append(settled()[-1])
        states = {s.vertex: s.status for s in engine.final_states()}
        assert states["Noop[after]"] == "ok"
        engine.stop("test")
        await task

    run_async(scenario())
    first, second = said
    assert (first.vertices, first.failed) == (7, ["Exec[z]", "Exec[b]", "Exec[a]"])
    assert (second.vertices, second.failed) == (5, ["Exec[b]"])
    assert second.would_change == []
    assert all((tmp_path / f"f{i}").read_text() == f"{i}\n" for i in range(3))
