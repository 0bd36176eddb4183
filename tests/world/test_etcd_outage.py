"""EtcdWorld waits out a cluster that stops answering: calls, watches and the lease.

The only member is frozen with SIGSTOP: its sockets stay open and nothing
answers, as across a network partition (tests/cluster/test_partition.py
cuts a real link). The World runs with a short RPC timeout, lease TTL and
report interval, so the outage lasts many RPC timeouts and longer than the
lease, as a 30 s partition would for an agent with the default settings,
without the test waiting 30 s. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcdutil import EtcdProcess, world_on
from helpers import run_async, until, wait_for

from pymgmt.world.base import keys
from pymgmt.world.etcd.client import WorldClosed

#: the World's settings for these tests: short, so the outage can be short too
FAST = {"lease_ttl": 1, "rpc_timeout": 0.3, "report_every": 1.0}


@contextlib.contextmanager
def frozen(member: EtcdProcess) -> Iterator[None]:
    """The member stopped (SIGSTOP) for the block, and always continued after it.

    The block begins once every thread of the member is stopped: a stop
    reaches one thread, which stops the others, and meanwhile another may
    still answer a request sent at once (a CI run saw a put answered).
    """
    os.kill(member.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: all_stopped(member.pid), 10, f"etcd {member.name} to stop")
        yield
    finally:
        os.kill(member.pid, signal.SIGCONT)


def all_stopped(pid: int) -> bool:
    """Every thread of `pid` is stopped (state T in /proc)."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            stat = (task / "stat").read_text()
            states.append(stat.rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state == "T" for state in states)


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def outage_seconds(caplog: pytest.LogCaptureFixture) -> int:
    """The longest outage the World has reported so far ("unreachable for N s")."""
    found = [
        int(m.split("unreachable for ", 1)[1].split(" ", 1)[0])
        for m in said(caplog, "has been unreachable for")
    ]
    return max(found, default=0)


def test_a_put_and_a_watch_wait_out_a_member_that_stopped_answering(
    etcd_node: EtcdProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        exported = keys.exported("h1", "file", "f1")
        async with world_on([etcd_node.client_url], "h1", **FAST) as w:
            await w.put(exported, b"x", lease=True)
            _, revision = await w.get_prefix("/t/")
            watch = w.watch_prefix("/t/", revision)
            first = asyncio.ensure_future(anext(watch))
            with frozen(etcd_node):
                put = asyncio.ensure_future(w.put("/t/during", b"1"))
                # Longer than the lease (1 s) and many RPC timeouts (0.3 s): the
                # old World gave up such a call (WorldUnavailable) and the agent
                # stopped, "cluster lost".
                await until(lambda: outage_seconds(caplog) >= 2, "a 2 s outage")
                assert not put.done() and not first.done()
            async with asyncio.timeout(15):
                revision = await put
                ev = await first
            # a retried put may be written twice (the first try was only slow): the
            # watch sees the first
            assert (ev.type, ev.key, ev.value) == ("put", "/t/during", b"1")
            assert ev.revision <= revision
            # the lease expired while the member was frozen: re-granted, key put back
            await until(lambda: w.lease_regrants >= 1, "the lease re-granted")
            await until(lambda: not w._republish_due, "the leased keys put back")
            kvs, _ = await w.get_prefix(keys.EXPORTED)
            assert [kv.key for kv in kvs] == [exported]
            hosts, _ = await w.get_prefix(keys.HOSTS)
            assert [kv.key for kv in hosts] == [keys.host("h1")]
            await watch.aclose()
        # a few lines for the whole outage: one when it began, one when it ended
        assert len(said(caplog, "does not answer")) == 1, caplog.text
        assert len(said(caplog, "answers again")) == 1, caplog.text

    with caplog.at_level(logging.INFO, logger="pymgmt.world.etcd"):
        run_async(main(), timeout=60)


def test_closing_the_world_ends_a_call_that_waits_for_the_cluster(
    etcd_node: EtcdProcess,
) -> None:
    async def main() -> None:
        async with world_on([etcd_node.client_url], "h1", **FAST) as w:
            with frozen(etcd_node):
                # the keep-alive failed: the member is stopped before the put begins
                await until(lambda: w._outage.since is not None, "the outage noticed")
                put = asyncio.ensure_future(w.put("/t/during", b"1"))
                await asyncio.sleep(0)  # the put is under way
                await w.close()  # the lease cannot be revoked: that is bounded too
                with pytest.raises(WorldClosed):
                    await put

    run_async(main(), timeout=60)
