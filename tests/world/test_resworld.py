"""ResWorld over a real LocalWorld: minimal writes, deletions, snapshots of others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from helpers import run_async, until
from worlds import HostView

from pymgmt.resources.exec import Exec
from pymgmt.resources.file import File
from pymgmt.world.base import WatchEvent, keys
from pymgmt.world.codec import DecodeError, encode
from pymgmt.world.local import LocalWorld
from pymgmt.world.resworld import PREFIX, QUIET, ResWorld, Snapshot


def _f(name: str, content: str = "x\n") -> File:
    return File(name=name, path=f"/srv/{name}", content=content)


class _Events:
    """Every watch event under the exports prefix, counted as they come."""

    def __init__(self) -> None:
        self.seen: list[WatchEvent] = []

    async def follow(self, it: AsyncIterator[WatchEvent]) -> None:
        async for ev in it:
            self.seen.append(ev)


class _Snapshots:
    def __init__(self) -> None:
        self.seen: list[Snapshot] = []

    async def follow(self, it: AsyncIterator[Snapshot]) -> None:
        async for snap in it:
            self.seen.append(snap)

    @property
    def last(self) -> dict[str, object]:
        return {f"{e.host}:{e.kind}:{e.name}": e.result for e in self.seen[-1].exports}


def test_export_writes_only_what_changed_and_deletes_what_left() -> None:
    async def main() -> None:
        world = LocalWorld("a")
        res = ResWorld(world)
        events = _Events()
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(events.follow(world.watch_prefix(PREFIX, 0)))
            assert await res.export([_f("f1"), _f("f2")])
            await until(lambda: len(events.seen) == 2, "the two first puts")
            # the same set again: no write, so no event anywhere
            assert not await res.export([_f("f2"), _f("f1")])
            # one changed, one left: one put, one delete
            assert await res.export([_f("f1", "new\n")])
            await until(lambda: len(events.seen) == 4, "one put and one delete")
            assert not await res.export([_f("f1", "new\n")])
            # a barrier: an unrelated write is seen next, so nothing came in between
            await world.put(keys.exported("z", "file", "barrier"), b"{}")
            await until(lambda: len(events.seen) == 5, "the barrier")
            watcher.cancel()
        kinds_seen = [(e.type, e.key) for e in events.seen]
        assert kinds_seen == [
            ("put", keys.exported("a", "file", "f1")),
            ("put", keys.exported("a", "file", "f2")),
            ("delete", keys.exported("a", "file", "f2")),
            ("put", keys.exported("a", "file", "f1")),
            ("put", keys.exported("z", "file", "barrier")),
        ]
        # each publish is one commit: one revision for the whole set
        revisions = [e.revision for e in events.seen]
        assert revisions[0] == revisions[1] < revisions[2] == revisions[3] < revisions[4]
        kvs, _ = await world.get_prefix(f"{PREFIX}a/")
        assert [(kv.key, kv.value) for kv in kvs] == [
            (keys.exported("a", "file", "f1"), encode(_f("f1", "new\n")))
        ]

    run_async(main())


def test_first_export_replaces_a_previous_runs_keys() -> None:
    """Keys a previous run left (its lease not yet expired) are rewritten or deleted."""

    async def main() -> None:
        world = LocalWorld("a")
        await world.put(keys.exported("a", "file", "old"), encode(_f("old")))
        await world.put(keys.exported("a", "file", "f1"), encode(_f("f1")))
        await world.put(keys.exported("b", "file", "theirs"), encode(_f("theirs")))
        assert await ResWorld(world).export([_f("f1")])
        kvs, _ = await world.get_prefix(PREFIX)
        assert [kv.key for kv in kvs] == [
            keys.exported("a", "file", "f1"),
            keys.exported("b", "file", "theirs"),
        ]

    run_async(main())


def test_collect_sees_other_hosts_only_of_the_kinds_asked() -> None:
    async def main() -> None:
        store = LocalWorld("store")
        a, b, c = (ResWorld(HostView(store, h)) for h in ("a", "b", "c"))
        await a.export([_f("mine")])
        await b.export([_f("fb"), Exec(name="eb", cmd="true")])
        snaps = _Snapshots()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(snaps.follow(a.collect({"file"})))
            await until(lambda: snaps.seen, "the first snapshot")
            assert list(snaps.last) == ["b:file:fb"]
            await c.export([_f("fc")])
            await until(lambda: "c:file:fc" in snaps.last, "c's export")
            assert list(snaps.last) == ["b:file:fb", "c:file:fc"]
            await b.export([Exec(name="eb", cmd="true")])
            await until(lambda: "b:file:fb" not in snaps.last, "b's file withdrawn")
            # a's own exports and b's exec never show up
            n = len(snaps.seen)
            await a.export([_f("mine", "changed\n"), _f("mine2")])
            await b.export([Exec(name="eb", cmd="false")])
            await c.export([_f("fc"), _f("fc2")])
            await until(lambda: "c:file:fc2" in snaps.last, "c's second export")
            assert len(snaps.seen) == n + 1  # the other writes changed nothing collected
            assert list(snaps.last) == ["c:file:fc", "c:file:fc2"]
            resource = snaps.last["c:file:fc2"]
            assert isinstance(resource, File) and resource.same_as(_f("fc2"))
            task.cancel()

    run_async(main())


def test_a_burst_of_exports_comes_as_few_snapshots() -> None:
    async def main() -> None:
        store = LocalWorld("store")
        a, b = ResWorld(HostView(store, "a")), ResWorld(HostView(store, "b"))
        snaps = _Snapshots()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(snaps.follow(a.collect({"file"})))
            await until(lambda: snaps.seen, "the first snapshot")
            await b.export([_f(f"f{i}") for i in range(200)])
            await until(lambda: len(snaps.last) == 200, "all 200 exports")
            task.cancel()
        # one publish of 200 keys is one revision: the first snapshot, then one
        assert len(snaps.seen) == 2, len(snaps.seen)

    run_async(main())


def test_sustained_churn_is_rate_limited() -> None:
    """Hosts publishing one after the other, each its own burst: few snapshots, none lost."""

    async def main() -> None:
        store = LocalWorld("store")
        a = ResWorld(HostView(store, "a"))
        others = [ResWorld(HostView(store, f"h{i:02}")) for i in range(40)]
        snaps = _Snapshots()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(snaps.follow(a.collect({"file"})))
            await until(lambda: snaps.seen, "the first snapshot")
            for r in others:
                await r.export([_f(f"f-{r.hostname}")])
                await asyncio.sleep(2 * QUIET)  # apart: a burst each, not one burst
            await until(lambda: len(snaps.last) == 40, "every host's export")
            task.cancel()
        # without the rate limit: about one snapshot per host (40)
        assert len(snaps.seen) <= 1 + 40 // 3, len(snaps.seen)
        revisions = [s.revision for s in snaps.seen]
        assert revisions == sorted(set(revisions))

    run_async(main())


def test_a_publish_is_one_revision_on_the_local_world() -> None:
    """LocalWorld.commit: puts and deletes at one revision, leased puts vanish on close."""

    async def main() -> None:
        world = LocalWorld("a")
        await world.put("/t/old", b"0")
        events = _Events()
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(events.follow(world.watch_prefix("/t/", 1)))
            rev = await world.commit({"/t/a": b"1", "/t/b": b"2"}, ["/t/old"], lease=True)
            await until(lambda: len(events.seen) == 3, "the commit's three events")
            assert {e.revision for e in events.seen} == {rev}
            assert [(e.type, e.key) for e in events.seen] == [
                ("delete", "/t/old"),
                ("put", "/t/a"),
                ("put", "/t/b"),
            ]
            assert await world.commit({}) == rev  # nothing to write: no new revision
            watcher.cancel()
        with pytest.raises(ValueError, match="put and deleted"):
            await world.commit({"/t/a": b"x"}, ["/t/a"])
        await world.close()
        kvs, _ = await world.get_prefix("/t/")
        assert kvs == []

    run_async(main())


def test_bad_exports_and_bad_keys_are_refused_in_the_snapshot() -> None:
    async def main() -> None:
        store = LocalWorld("store")
        a = ResWorld(HostView(store, "a"))
        await store.put(keys.exported("b", "file", "junk"), b"{not json")
        await store.put(keys.exported("b", "file", "other"), encode(_f("liar")))
        await store.put(f"{PREFIX}b", b"x")
        await store.put(f"{PREFIX}bad host/file/x", encode(_f("x")))
        await store.put(keys.exported("a", "file", "own-junk"), b"junk")  # ours: ignored
        snaps = _Snapshots()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(snaps.follow(a.collect({"file"})))
            await until(lambda: snaps.seen, "the first snapshot")
            task.cancel()
        found = {e.key: e.result for e in snaps.seen[0].exports}
        assert set(found) == {
            keys.exported("b", "file", "junk"),
            keys.exported("b", "file", "other"),
            f"{PREFIX}b",
            f"{PREFIX}bad host/file/x",
        }
        reasons = {k: v.reason for k, v in found.items() if isinstance(v, DecodeError)}
        assert len(reasons) == 4
        assert "not valid JSON" in reasons[keys.exported("b", "file", "junk")]
        assert "the key names file/'other'" in reasons[keys.exported("b", "file", "other")]
        assert "is not an export key" in reasons[f"{PREFIX}b"]

    run_async(main())
