"""Scheduling semantics of the engine, in-process, with a probe resource kind.

The probe records when each check starts and ends, so order and overlap are
proven from the record rather than from wall-clock thresholds.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pymgmt.frontends.api import GraphBuilder, run_async
from pymgmt.report.events import Checked, Failed
from pymgmt.resources.base import CONVERGED, Change, Context, Plan, Resource, param


class Probe(Resource, kind="test-probe"):
    """Converges after one apply; `fail` makes check raise; `work` is check duration."""

    work: float = param(0.0, doc="seconds each check takes")
    fail: bool = param(False, doc="raise from check")
    record: ClassVar[list[tuple[str, str]]] = []
    contexts: ClassVar[dict[str, Context]] = {}
    checking: ClassVar[asyncio.Event | None] = None

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self.applied = False
        Probe.contexts[self.name] = ctx

    async def check(self) -> Plan:
        Probe.record.append(("start", self.name))
        if Probe.checking is not None:
            Probe.checking.set()
        await asyncio.sleep(self.work)
        Probe.record.append(("end", self.name))
        if self.fail:
            raise RuntimeError(f"{self.name} is broken")
        return CONVERGED if self.applied else Plan((Change("state", "old", "new"),))

    async def apply(self, plan: Plan) -> None:
        self.applied = True


def _reset() -> None:
    Probe.checking = None
    Probe.record.clear()
    Probe.contexts.clear()


def _index(event: str, name: str) -> int:
    return Probe.record.index((event, name))


def test_children_start_only_after_all_parents_ended(tmp_path):
    _reset()
    g = GraphBuilder("diamond")
    a, b, c, d = (g.add(Probe(name=n, work=0.02)) for n in "abcd")
    g.edge(a, b)
    g.edge(a, c)
    g.edge(b, d)
    g.edge(c, d)
    result = asyncio.run(run_async(g, converged_timeout=0, state_dir=tmp_path))
    assert result.exit_code == 2
    assert _index("end", "a") < _index("start", "b")
    assert _index("end", "a") < _index("start", "c")
    assert max(_index("end", "b"), _index("end", "c")) < _index("start", "d")
    # b and c are independent: each started before the other ended.
    assert _index("start", "c") < _index("end", "b")
    assert _index("start", "b") < _index("end", "c")


def test_failure_blocks_only_descendants(tmp_path):
    _reset()
    g = GraphBuilder("fail")
    bad = g.add(Probe(name="bad", fail=True))
    child = g.add(Probe(name="child"))
    grandchild = g.add(Probe(name="grandchild"))
    g.add(Probe(name="other"))
    g.edge(bad, child)
    g.edge(child, grandchild)
    result = asyncio.run(run_async(g, converged_timeout=0, state_dir=tmp_path))
    assert result.exit_code == 4 | 2  # "other" changed, "bad" failed
    outcome = {st.vertex: result.recap.outcome(st) for st in result.recap.final}
    assert outcome == {
        "Test-probe[bad]": "failed",
        "Test-probe[child]": "skipped",
        "Test-probe[grandchild]": "skipped",
        "Test-probe[other]": "changed",
    }
    assert ("start", "child") not in Probe.record
    assert any(isinstance(e, Failed) and "bad is broken" in e.error for e in result.events)


def test_a_burst_of_events_collapses_into_one_more_check(tmp_path):
    _reset()

    async def scenario() -> list[Checked]:
        g = GraphBuilder("burst")
        g.add(Probe(name="p", work=0.05))
        Probe.checking = asyncio.Event()
        task = asyncio.create_task(run_async(g, converged_timeout=0.3, state_dir=tmp_path))
        async with asyncio.timeout(10):
            await Probe.checking.wait()  # the first check is running
        for _ in range(1000):
            Probe.contexts["p"].event()
        result = await task
        return [e for e in result.events if isinstance(e, Checked)]

    checks = asyncio.run(scenario())
    # the initial check, then exactly one for the whole burst
    assert [c.reason for c in checks] == ["start", "event"]
