"""The inotify hub's subscriptions to a directory's contents (`subscribe_dir`), for real.

Each step drains the kernel's queue (`InotifyHub.drain`) before asserting,
so "fired" and "did not fire" are both exact, with no waiting.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from pymgmt.events.inotify import InotifyHub


def _with_hub(body: Callable[[InotifyHub], Awaitable[None]]) -> InotifyHub:
    hub = InotifyHub()

    async def main() -> None:
        task = asyncio.create_task(hub.run())
        await asyncio.sleep(0)
        try:
            await body(hub)
        finally:
            task.cancel()
            await asyncio.wait([task])

    asyncio.run(main())
    return hub


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1

    def fired(self, hub: InotifyHub) -> bool:
        """Whether it fired since the last question (the kernel's queue drained first)."""
        hub.drain()
        fired, self.n = self.n > 0, 0
        return fired


def test_entries_created_written_chmodded_and_removed_in_a_directory_fire(tmp_path: Path) -> None:
    d = tmp_path / "frags"
    d.mkdir()
    (d / "sub").mkdir()
    seen = _Counter()

    async def body(hub: InotifyHub) -> None:
        sub = hub.subscribe_dir(str(d), seen)
        assert not seen.fired(hub)
        (d / "a").write_text("1")
        assert seen.fired(hub)
        (d / "a").write_text("2")
        assert seen.fired(hub)
        os.chmod(d / "a", 0o600)
        assert seen.fired(hub)
        os.rename(d / "a", d / "b")
        assert seen.fired(hub)
        (d / "b").unlink()
        assert seen.fired(hub)
        (d / "sub" / "deep").write_text("x")  # one level only: a tree subscribes each dir
        assert not seen.fired(hub)
        hub.unsubscribe_dir(sub)
        assert hub.watch_count == 0
        (d / "c").write_text("after")
        assert not seen.fired(hub)

    _with_hub(body)


def test_a_missing_directory_is_waited_for_and_then_its_entries_fire(tmp_path: Path) -> None:
    d = tmp_path / "later" / "frags"
    seen = _Counter()

    async def body(hub: InotifyHub) -> None:
        sub = hub.subscribe_dir(str(d), seen)
        d.parent.mkdir()
        d.mkdir()
        assert seen.fired(hub)  # it appeared
        (d / "a").write_text("1")
        assert seen.fired(hub)
        (d / "a").unlink()
        d.rmdir()
        assert seen.fired(hub)  # it went
        d.mkdir()
        assert seen.fired(hub)
        (d / "b").write_text("again")
        assert seen.fired(hub)
        hub.unsubscribe_dir(sub)
        assert hub.watch_count == 0

    _with_hub(body)


def test_a_directory_renamed_over_the_watched_one_is_watched_instead(tmp_path: Path) -> None:
    d, new = tmp_path / "frags", tmp_path / "new"
    d.mkdir()
    new.mkdir()
    seen = _Counter()

    async def body(hub: InotifyHub) -> None:
        old_fd = os.open(d, os.O_RDONLY)  # keeps the old inode alive: no DELETE_SELF yet
        try:
            sub = hub.subscribe_dir(str(d), seen)
            os.rename(new, d)
            assert seen.fired(hub)
            (d / "a").write_text("in the new one")
            assert seen.fired(hub)
            hub.unsubscribe_dir(sub)
        finally:
            os.close(old_fd)
        assert not seen.fired(hub)
        assert hub.watch_count == 0

    _with_hub(body)


def test_a_file_and_its_directory_share_one_watch_and_outlive_each_other(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    whole, one = _Counter(), _Counter()

    async def body(hub: InotifyHub) -> None:
        dsub = hub.subscribe_dir(str(d), whole)
        fsub = hub.subscribe(str(d / "f"), one)
        (d / "f").write_text("x")
        assert whole.fired(hub) and one.fired(hub)
        hub.unsubscribe_dir(dsub)
        (d / "f").write_text("y")
        assert one.fired(hub) and not whole.fired(hub)
        dsub = hub.subscribe_dir(str(d), whole)
        hub.unsubscribe(fsub)
        (d / "g").write_text("z")
        assert whole.fired(hub) and not one.fired(hub)
        hub.unsubscribe_dir(dsub)
        assert hub.watch_count == 0

    _with_hub(body)
