"""Test helpers for the World: one LocalWorld seen by several "hosts"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping

from pymgmt.world.base import KV, WatchEvent
from pymgmt.world.local import LocalWorld


class HostView:
    """`world` as host `hostname` sees it: the same key space, its own name.

    Several of these over one LocalWorld behave like agents on different
    hosts sharing one etcd cluster (LocalWorld has etcd's semantics).
    """

    def __init__(self, world: LocalWorld, hostname: str) -> None:
        self.world = world
        self.hostname = hostname

    async def put(self, key: str, value: bytes, *, lease: bool = False) -> int:
        return await self.world.put(key, value, lease=lease)

    async def delete(self, key: str) -> int:
        return await self.world.delete(key)

    async def commit(
        self, puts: Mapping[str, bytes], deletes: Iterable[str] = (), *, lease: bool = False
    ) -> int:
        return await self.world.commit(puts, deletes, lease=lease)

    async def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        return await self.world.get_prefix(prefix)

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        return self.world.watch_prefix(prefix, start_revision)

    async def close(self) -> None:
        pass
