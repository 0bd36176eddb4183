"""A grouped vertex runs as one: one check/apply for all its members."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pymgmt.frontends.api import GraphBuilder, run_async
from pymgmt.metaparams import MetaParams
from pymgmt.report.events import Checked
from pymgmt.resources.base import CONVERGED, Change, Plan, Resource
from pymgmt.resources.file import File


class Batch(Resource, kind="test-batch"):
    """Groupable: applying a group is one 'transaction' over every member."""

    transactions: ClassVar[list[list[str]]] = []

    def can_group(self, other: Resource) -> bool:
        return isinstance(other, Batch)

    async def init(self, ctx) -> None:
        await super().init(ctx)
        self.done = False

    async def check(self) -> Plan:
        return CONVERGED if self.done else Plan((Change("installed", False, True),))

    async def apply(self, plan: Plan) -> None:
        Batch.transactions.append(sorted([self.name, *(m.name for m in self.members)]))
        self.done = True


def test_like_resources_are_grouped_and_applied_in_one_transaction(tmp_path):
    Batch.transactions.clear()
    g = GraphBuilder("group")
    for n in ("cowsay", "powertop", "sl"):
        g.add(Batch(name=n))
    g.add(Batch(name="alone", meta=MetaParams(autogroup=False)))
    result = asyncio.run(run_async(g, converged_timeout=0, state_dir=tmp_path))
    assert sorted(Batch.transactions) == [["alone"], ["cowsay", "powertop", "sl"]]
    names = {e.vertex for e in result.events if isinstance(e, Checked)}
    assert names == {"Test-batch[autogroup:(cowsay,powertop,sl)]", "Test-batch[alone]"}


def test_dependent_like_resources_are_not_grouped(tmp_path):
    Batch.transactions.clear()
    g = GraphBuilder("chain")
    a, b = g.add(Batch(name="a")), g.add(Batch(name="b"))
    f = g.add(File(name=str(tmp_path / "between"), content="x\n"))
    g.edge(a, f)
    g.edge(f, b)
    asyncio.run(run_async(g, converged_timeout=0, state_dir=tmp_path / "s"))
    assert Batch.transactions == [["a"], ["b"]]
