"""A vertex whose failing apply wakes its own watch does not fail in a tight loop.

Found with cron: systemd signals the start job it refused, which woke the
timer's watch, which tried again at once, a hundred times a second. The
engine now pauses before checking a vertex that failed twice or more in a
row (0.1 s, doubling, at most 5 s); the first event after a failure is still
acted on at once, and a success ends the streak.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import ClassVar

from pymgmt.engine.worker import COOL_FIRST, COOL_MAX
from pymgmt.errors import ResourceError
from pymgmt.frontends.api import GraphBuilder, run_async
from pymgmt.resources.base import CONVERGED, Change, Plan, Resource, param


class SelfWaking(Resource, kind="test-self-waking"):
    """Fails its first `failures` applies, each failure waking its own watch first."""

    tries: ClassVar[list[float]] = []
    failures: int = param(1000, doc="applies that fail before one succeeds")

    async def check(self) -> Plan:
        if len(SelfWaking.tries) > self.failures:
            return CONVERGED
        return Plan((Change("state", "broken", "fixed"),))

    async def apply(self, plan: Plan) -> None:
        SelfWaking.tries.append(time.monotonic())
        if len(SelfWaking.tries) <= self.failures:
            self.ctx.event()  # what the failed attempt did is seen by the watch
            raise ResourceError("the system refused")


def _pause(streak: int) -> float:
    return 0.0 if streak < 2 else min(COOL_FIRST * 2 ** (streak - 2), COOL_MAX)


async def _run_until(g: GraphBuilder, tmp_path: Path, tries: int) -> None:
    """Run the graph as an agent until `tries` applies happened (30 s deadline), then stop."""
    task = asyncio.create_task(run_async(g, converged_timeout=3600, state_dir=tmp_path))
    try:
        async with asyncio.timeout(30):
            while len(SelfWaking.tries) < tries:
                assert not task.done(), task
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_failures_in_a_row_are_retried_after_growing_pauses(tmp_path):
    SelfWaking.tries.clear()
    g = GraphBuilder("cooling")
    g.add(SelfWaking(name="w"))
    asyncio.run(_run_until(g, tmp_path, 6))
    gaps = [b - a for a, b in itertools.pairwise(SelfWaking.tries[:6])]
    # the gap after failure k (1-based) is at least the pause of a streak of k
    for k, gap in enumerate(gaps, start=1):
        assert gap >= _pause(k), (k, gaps)
    assert sum(gaps) >= sum(_pause(k) for k in range(1, 6))  # 1.5 s, not a tight loop


def test_a_success_ends_the_streak(tmp_path):
    """After three failures and a success, the vertex converges: nothing keeps it cooling."""
    SelfWaking.tries.clear()
    g = GraphBuilder("cooled")
    g.add(SelfWaking(name="w", failures=3))

    async def go() -> int:
        async with asyncio.timeout(30):
            result = await run_async(g, converged_timeout=0, state_dir=tmp_path)
        return result.exit_code

    code = asyncio.run(go())
    assert len(SelfWaking.tries) == 4  # three failed applies, then the one that worked
    assert code in (2, 4), code
