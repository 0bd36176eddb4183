"""The mount table's change signal, from a real mount namespace of the test's own.

The watch is opened on the holder process's /proc/PID/mountinfo (its
namespace's table), so the test mounts nothing on the host.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_async, wait_for

from pymgmt.events.mountinfo import watch_mount_table


@pytest.fixture
def holder() -> Iterator[int]:
    """The pid of a process alone in a new (private) mount namespace."""
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "sleep", "infinity"]
    )
    try:
        own = Path("/proc/self/ns/mnt").readlink()
        wait_for(
            lambda: (
                Path(f"/proc/{proc.pid}/ns/mnt").readlink() != own
                and Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep"
            ),
            what="the holder in its own namespace",
        )
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_each_mount_and_umount_is_one_event_and_an_idle_table_none(tmp_path, holder):
    point = tmp_path / "p"
    point.mkdir()
    inside = ["nsenter", "--target", str(holder), "--mount", "--"]

    async def scenario() -> list[int]:
        seen: list[int] = []
        changed = asyncio.Event()

        def event() -> None:
            seen.append(1)
            changed.set()

        stop = watch_mount_table(event, f"/proc/{holder}/mountinfo")
        try:
            counts = []
            for argv in (["mount", "-t", "tmpfs", "t", str(point)], ["umount", str(point)]):
                changed.clear()
                await asyncio.to_thread(subprocess.run, [*inside, *argv], check=True)
                await changed.wait()
                # A watch that took the always-true POLLIN for a change would be
                # called again on every loop iteration: give it many.
                for _ in range(200):
                    await asyncio.sleep(0)
                counts.append(len(seen))
            return counts
        finally:
            stop()

    assert run_async(scenario()) == [1, 2]
