"""At most `Services.attempts` vertices are between a check and the end of its apply.

A first apply of 100k files started every check at once, and every plan
waited for the durable batches together: the memory stayed with the
process (issue 13). The engine now lets a bounded number through; the rest
wait their turn, and the graph still converges, every file written.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from helpers import EventLog, run_async

from pymgmt import File, GraphBuilder
from pymgmt.engine.engine import Engine
from pymgmt.frontends.api import _Static
from pymgmt.report.events import Applying, Checked, Event
from pymgmt.world.local import LocalWorld


def test_a_first_apply_runs_at_most_the_bound_of_checks_and_applies_at_once(
    tmp_path: Path,
) -> None:
    g = GraphBuilder("bounded")
    for i in range(40):
        g.add(File(name=f"f{i}", path=str(tmp_path / f"f{i}"), content=f"{i}\n"))
    graph = g.build()
    sink = EventLog()
    most = [0, 0]  # in flight, applying: the highest seen

    async def scenario() -> None:
        engine = Engine(
            world=LocalWorld("t"), reporter=sink, state_dir=tmp_path / "state", converged_timeout=0
        )
        engine.services.attempts = asyncio.Semaphore(3)
        applying: set[str] = set()

        class Watch:
            def emit(self, event: Event) -> None:
                sink.emit(event)
                if isinstance(event, Applying):
                    applying.add(event.vertex)
                elif isinstance(event, Checked):
                    applying.discard(event.vertex)
                most[0] = max(most[0], engine.in_flight.count)
                most[1] = max(most[1], len(applying))

        engine.reporter = Watch()
        await engine.run(_Static(graph))

    run_async(scenario())
    assert most == [3, 3]  # the bound was reached, never passed
    assert sum(isinstance(e, Checked) and e.applied for e in sink.events) == 40
    assert all((tmp_path / f"f{i}").read_text() == f"{i}\n" for i in range(40))
