"""Counting semaphores shared by the whole graph (the ``sema`` metaparam).

A resource holding ``["a", "b:2"]`` runs check/apply only while it holds
one slot of each. Every resource acquires its semaphores in one global
order (sorted by id), so no two resources can each hold what the other
waits for: with the DAG's own order always respected, some resource can
always make progress, and no graph can deadlock (mgmt's argument).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from ..metaparams import parse_sema


class Semaphores:
    def __init__(self) -> None:
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._sizes: dict[str, int] = {}

    def declare(self, specs: Iterable[str]) -> list[str]:
        """Register ids with their sizes; returns the ids in acquisition order.

        The first size declared for an id wins for the life of the engine;
        validation rejects graphs that disagree, so this only matters across
        graph changeovers.
        """
        ids: set[str] = set()
        for spec in specs:
            sid, size = parse_sema(spec)
            if sid not in self._sems:
                self._sems[sid] = asyncio.Semaphore(size)
                self._sizes[sid] = size
            ids.add(sid)
        return sorted(ids)

    @contextlib.asynccontextmanager
    async def hold(self, ids: list[str]) -> AsyncIterator[None]:
        """Hold one slot of each semaphore in `ids` (already in global order)."""
        async with contextlib.AsyncExitStack() as stack:
            for sid in ids:
                await stack.enter_async_context(self._sems[sid])
            yield
