"""EtcdWorld against what a hostile or merely large cluster holds (review of issue 9).

Real etcd members; the keys are written with a bare aetcd client, as any
host (or any local user) that can reach etcd's client port could.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from etcdutil import EtcdProcess, world_on
from helpers import run_async

from pymgmt.world.base import WatchEvent


async def _raw_put(url: str, key: bytes, value: bytes) -> None:
    """A write by some other client, bypassing the World."""
    import aetcd

    host, port = url.removeprefix("http://").rsplit(":", 1)
    client = aetcd.Client(host=host, port=int(port))
    await client.connect()
    try:
        await client.put(key, value)
    finally:
        await client.close()


async def _next(it: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    async with asyncio.timeout(15.0):
        while len(out) < n:
            out.append(await anext(it))
    return out


def test_a_key_that_is_not_utf8_is_read_watched_and_deleted(etcd_node: EtcdProcess) -> None:
    """One such key must not break every reader of the prefix (a cluster-wide DoS)."""

    async def main() -> None:
        async with world_on([etcd_node.client_url], "h1") as w:
            _, rev = await w.get_prefix("/t/")
            watch = w.watch_prefix("/t/", rev)
            try:
                await _raw_put(etcd_node.client_url, b"/t/\xff\x1b", b"hostile")
                await w.put("/t/after", b"ok")
                events = await _next(watch, 2)
            finally:
                await watch.aclose()
            assert [(e.type, e.value) for e in events] == [("put", b"hostile"), ("put", b"ok")]
            odd = events[0].key
            assert odd.startswith("/t/") and odd != "/t/after"
            kvs, _ = await w.get_prefix("/t/")
            assert sorted(kv.key for kv in kvs) == sorted([odd, "/t/after"])
            await w.delete(odd)  # the key read is the key deleted
            kvs, _ = await w.get_prefix("/t/")
            assert [kv.key for kv in kvs] == ["/t/after"]

    run_async(main())


def test_get_prefix_reads_more_than_grpcs_default_message_size(etcd_node: EtcdProcess) -> None:
    """Six 1 MiB exports (a collected file may be 1 MiB) are over gRPC's 4 MiB default."""

    async def main() -> None:
        big = b"x" * (1 << 20)
        async with world_on([etcd_node.client_url], "h1") as w:
            for i in range(6):
                await w.put(f"/big/{i}", big)
            kvs, rev = await w.get_prefix("/big/")
            assert [kv.key for kv in kvs] == [f"/big/{i}" for i in range(6)]
            assert all(kv.value == big for kv in kvs)
            assert rev == max(kv.revision for kv in kvs)

    run_async(main())
