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
from pymgmt.world.etcd.client import _close_client


async def _raw_put(url: str, key: bytes, value: bytes) -> None:
    """A write by some other client, bypassing the World."""
    import aetcd

    host, port = url.removeprefix("http://").rsplit(":", 1)
    client = aetcd.Client(host=host, port=int(port))
    await client.connect()
    try:
        await client.put(key, value)
    finally:
        await _close_client(client, [])


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


def test_a_lost_lease_does_not_take_back_a_name_another_host_took(etcd_node: EtcdProcess) -> None:
    """Cut off past its TTL, a host's name is free; once another live host holds
    it, the first must not re-put its host key (two live hosts, one name), nor
    its exports over the other's."""
    import json

    import aetcd
    import pytest
    from etcdutil import eventually

    from pymgmt.world.base import keys
    from pymgmt.world.etcd.client import HostnameTaken

    async def main() -> None:
        url = etcd_node.client_url
        host, port = url.removeprefix("http://").rsplit(":", 1)
        raw = aetcd.Client(host=host, port=int(port))
        await raw.connect()
        try:
            with pytest.raises(HostnameTaken):
                async with world_on([url], "h", lease_ttl=1, owner="a") as a:
                    await a.put("/exp/h/x", b"a's", lease=True)
                    await raw.revoke_lease(a._lease_id)  # as if it expired in a partition
                    # another agent named h comes up meanwhile (its own lease)
                    other = await raw.lease(30)
                    info = json.dumps({"owner": "b", "pid": 0, "info": {}}).encode()
                    await raw.put(keys.host("h").encode(), info, lease=other)
                    await raw.put(b"/exp/h/x", b"b's", lease=other)
                    await eventually(lambda: a.lease_regrants >= 1, "a's lease re-granted")
                    # a's next keep-alive finds the name taken and ends its run
                    async with asyncio.timeout(15.0):
                        await asyncio.Event().wait()
            got = await raw.get(keys.host("h").encode())
            assert got is not None and json.loads(got.value)["owner"] == "b"
            got = await raw.get(b"/exp/h/x")
            assert got is not None and got.value == b"b's"
            await raw.revoke_lease(other.id)
        finally:
            await _close_client(raw, [])

    run_async(main())
