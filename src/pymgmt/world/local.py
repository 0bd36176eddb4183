"""The single-host World: an in-process key space with etcd's semantics.

Revisions increase by one per write; watches replay from a start revision
so a watcher that re-subscribes after reading never misses a change, as with
etcd. Leases are trivially kept for the life of the process: `close` deletes
the leased keys (with delete events), as revoking an etcd lease does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping

from .base import KV, WatchEvent


class LocalWorld:
    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self._data: dict[str, KV] = {}
        self._log: list[WatchEvent] = []
        self._revision = 0
        self._changed = asyncio.Condition()
        self._leased: set[str] = set()

    async def _record(self, *events: WatchEvent) -> int:
        async with self._changed:
            self._log.extend(events)
            self._changed.notify_all()
        return events[-1].revision

    async def put(self, key: str, value: bytes, *, lease: bool = False) -> int:
        self._revision += 1
        self._data[key] = KV(key, value, self._revision)
        if lease:
            self._leased.add(key)
        else:
            self._leased.discard(key)
        return await self._record(WatchEvent("put", key, value, self._revision))

    async def delete(self, key: str) -> int:
        self._revision += 1
        self._data.pop(key, None)
        self._leased.discard(key)
        return await self._record(WatchEvent("delete", key, b"", self._revision))

    async def commit(
        self, puts: Mapping[str, bytes], deletes: Iterable[str] = (), *, lease: bool = False
    ) -> int:
        """All of `puts` and `deletes` at one new revision (no size limit here)."""
        gone = list(dict.fromkeys(deletes))
        if both := puts.keys() & set(gone):
            raise ValueError(f"put and deleted in one commit: {sorted(both)}")  # as etcd
        if not puts and not gone:
            return self._revision
        self._revision += 1
        rev = self._revision
        events: list[WatchEvent] = []
        for key in gone:
            self._data.pop(key, None)
            self._leased.discard(key)
            events.append(WatchEvent("delete", key, b"", rev))
        for key, value in puts.items():
            self._data[key] = KV(key, value, rev)
            if lease:
                self._leased.add(key)
            else:
                self._leased.discard(key)
            events.append(WatchEvent("put", key, value, rev))
        return await self._record(*events)

    async def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        found = [kv for k, kv in sorted(self._data.items()) if k.startswith(prefix)]
        return found, self._revision

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        seen = 0
        while True:
            async with self._changed:
                while len(self._log) <= seen:
                    await self._changed.wait()
                fresh = self._log[seen:]
                seen = len(self._log)
            for ev in fresh:
                if ev.revision > start_revision and ev.key.startswith(prefix):
                    yield ev

    async def close(self) -> None:
        """This host goes away: its leased keys vanish, as on etcd."""
        for key in sorted(self._leased):
            await self.delete(key)
