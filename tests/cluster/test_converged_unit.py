"""Cluster-wide convergence over the in-process World (no etcd: the logic alone).

The real multi-process runs are in test_exchange.py; these pin what each
host publishes and when a waiting host may exit.
"""

from __future__ import annotations

import asyncio
import time

from helpers import run_async

from pymgmt.engine.cluster_converged import ClusterConvergence
from pymgmt.engine.converger import Converger
from pymgmt.world.base import keys
from pymgmt.world.local import LocalWorld

QUIET = 0.02


async def _until(world: LocalWorld, host: str, value: bytes, timeout: float = 10.0) -> None:
    """Wait (on the World's watch, no polling) until `host` has published `value`."""
    key = keys.converged(host)
    async with asyncio.timeout(timeout):
        kvs, rev = await world.get_prefix(key)
        if kvs and kvs[0].value == value:
            return
        async for ev in world.watch_prefix(key, rev):
            if ev.type == "put" and ev.value == value:
                return


def test_a_host_says_true_when_idle_and_false_at_once_on_activity():
    async def main() -> None:
        world = LocalWorld("a")
        conv = Converger()
        cc = ClusterConvergence(world, quiet=QUIET)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(cc.publish(conv))

            await _until(world, "a", b"true")
            conv.activity()
            await _until(world, "a", b"false")
            await _until(world, "a", b"true")
            # a short no-change check (busy without activity) keeps "true"
            _, rev = await world.get_prefix(keys.CONVERGED)
            conv.busy_changed(+1)
            conv.busy_changed(-1)
            await asyncio.sleep(QUIET * 3)  # give a flap the chance to show
            _, rev2 = await world.get_prefix(keys.CONVERGED)
            assert rev2 == rev, "an idle no-change check rewrote the converged key"
            # a check that keeps the host busy longer than QUIET says false
            conv.busy_changed(+1)
            await _until(world, "a", b"false")
            conv.busy_changed(-1)
            await _until(world, "a", b"true")
            task.cancel()

    run_async(main())


def test_the_wait_needs_every_registered_host_true_for_the_timeout():
    async def main() -> None:
        world = LocalWorld("a")
        conv = Converger()
        cc = ClusterConvergence(world, quiet=QUIET)
        timeout = 0.1
        await world.put(keys.host("a"), b"", lease=True)
        await world.put(keys.host("b"), b"", lease=True)  # b never said anything yet
        marks: dict[str, float] = {}
        async with asyncio.TaskGroup() as tg:
            pub = tg.create_task(cc.publish(conv))
            waiter = tg.create_task(cc.wait(conv, timeout))
            await _until(world, "a", b"true")
            await asyncio.sleep(timeout * 2)  # a alone converged: b is not
            assert not waiter.done(), "exited while b had said nothing"
            await world.put(keys.converged("b"), b"false", lease=True)
            await world.put(keys.converged("b"), b"true", lease=True)
            marks["b true"] = time.monotonic()
            await asyncio.sleep(timeout / 2)
            await world.put(keys.converged("b"), b"false", lease=True)  # b works again
            await asyncio.sleep(timeout)
            assert not waiter.done(), "exited while b said false"
            await world.put(keys.converged("b"), b"true", lease=True)
            marks["b true again"] = time.monotonic()
            await waiter
            marks["done"] = time.monotonic()
            pub.cancel()
        assert marks["done"] >= marks["b true again"] + timeout

    run_async(main())


def test_a_host_leaving_no_longer_holds_up_the_wait():
    async def main() -> None:
        world = LocalWorld("a")
        conv = Converger()
        cc = ClusterConvergence(world, quiet=QUIET)
        await world.put(keys.host("a"), b"", lease=True)
        await world.put(keys.host("b"), b"", lease=True)
        await world.put(keys.converged("b"), b"false", lease=True)
        async with asyncio.TaskGroup() as tg:
            pub = tg.create_task(cc.publish(conv))
            waiter = tg.create_task(cc.wait(conv, 0.05))
            await _until(world, "a", b"true")
            assert not waiter.done()
            # b's lease ends: its keys vanish
            await world.delete(keys.converged("b"))
            await world.delete(keys.host("b"))
            await waiter
            pub.cancel()

    run_async(main())


def test_a_junk_key_under_hosts_does_not_hold_up_the_wait():
    """Any etcd client may write under HOSTS: a key naming no valid host is ignored."""

    async def main() -> None:
        world = LocalWorld("a")
        conv = Converger()
        cc = ClusterConvergence(world, quiet=QUIET)
        await world.put(keys.host("a"), b"", lease=True)
        for junk in ("bad\nhost", "-dash", "x" * 300, "sp ace"):
            await world.put(keys.HOSTS + junk, b"", lease=True)
        async with asyncio.TaskGroup() as tg:
            pub = tg.create_task(cc.publish(conv))
            await cc.wait(conv, 0.05)  # returns: the junk is no host
            pub.cancel()

    run_async(main())


def test_hosts_joining_are_logged_without_junk_and_in_one_bounded_line(caplog):
    import logging

    from pymgmt.report.events import HostJoined
    from pymgmt.world.cluster import watch_hosts

    async def main() -> list[object]:
        world = LocalWorld("a")
        events: list[object] = []
        for h in ["a", *(f"h{i:02}" for i in range(30)), "evil\x1b[2J"]:
            await world.put(keys.host(h), b"", lease=True)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(watch_hosts(world, events.append))
            async with asyncio.timeout(10):
                while len(events) < 31:  # noqa: ASYNC110 - the watcher's own pace
                    await asyncio.sleep(0.005)
            task.cancel()
        return events

    with caplog.at_level(logging.INFO, logger="pymgmt"):
        events = run_async(main())
    assert sorted(e.host for e in events if isinstance(e, HostJoined))[0] == "a"
    assert all("\x1b" not in e.host for e in events)  # type: ignore[attr-defined]
    text = caplog.text
    assert "\x1b" not in text and "evil" not in text
    assert "and 21 more" in text  # 31 hosts: ten named, then a count
