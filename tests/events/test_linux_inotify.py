"""pymgmt's own inotify binding, against the real kernel (issue 13).

It replaced asyncinotify, whose start-up ran ``/sbin/ldconfig -p`` as a
child process (through ``ctypes.util.find_library``) on every run.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pymgmt.events import linux_inotify as kernel
from pymgmt.events.inotify import InotifyHub
from pymgmt.events.linux_inotify import Inotify, InotifyEvent, parse

DEADLINE = 10.0


def _until(ino: Inotify, want: int) -> list[InotifyEvent]:
    """Events until one has a bit of `want` (or the deadline)."""
    seen: list[InotifyEvent] = []
    while not any(e.mask & want for e in seen):
        got = ino.wait(DEADLINE)
        assert got, f"no event with {want:#x} within {DEADLINE} s: {seen}"
        seen += got
    return seen


def test_events_name_the_file_and_what_happened(tmp_path: Path) -> None:
    with Inotify() as ino:
        wd = ino.add_watch(tmp_path, kernel.CREATE | kernel.CLOSE_WRITE | kernel.DELETE)
        (tmp_path / "f é").write_text("x")
        events = _until(ino, kernel.CLOSE_WRITE)
        assert [(e.wd, e.name) for e in events] == [(wd, "f é"), (wd, "f é")]
        assert events[0].mask & kernel.CREATE and events[1].mask & kernel.CLOSE_WRITE
        (tmp_path / "f é").unlink()
        assert _until(ino, kernel.DELETE)[-1] == InotifyEvent(wd, kernel.DELETE, 0, "f é")


def test_nothing_queued_reads_as_no_events_without_blocking(tmp_path: Path) -> None:
    with Inotify() as ino:
        ino.add_watch(tmp_path, kernel.CREATE)
        assert ino.read() == []
        assert ino.wait(0) == []


def test_a_removed_watch_and_a_deleted_directory_say_ignored(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    with Inotify() as ino:
        wa = ino.add_watch(a, kernel.CREATE)
        wb = ino.add_watch(b, kernel.CREATE | kernel.DELETE_SELF)
        ino.rm_watch(wa)
        assert InotifyEvent(wa, kernel.IGNORED, 0, "") in _until(ino, kernel.IGNORED)
        b.rmdir()
        events = _until(ino, kernel.IGNORED)
        assert [e.mask for e in events if e.wd == wb] == [kernel.DELETE_SELF, kernel.IGNORED]
        with pytest.raises(OSError) as gone:
            ino.rm_watch(wb)  # the kernel dropped it already
        assert gone.value.errno == errno.EINVAL


def test_errors_are_the_kernels_as_oserror_subclasses(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with Inotify() as ino:
        with pytest.raises(FileNotFoundError) as missing:
            ino.add_watch(tmp_path / "missing", kernel.CREATE)
        assert missing.value.filename == str(tmp_path / "missing")
        with pytest.raises(NotADirectoryError):
            ino.add_watch(tmp_path / "file", kernel.CREATE | kernel.ONLYDIR)


def test_the_descriptor_is_non_blocking_close_on_exec_and_closed_once(tmp_path: Path) -> None:
    ino = Inotify()
    fd = ino.fd
    assert os.get_blocking(fd) is False
    assert os.get_inheritable(fd) is False
    ino.close()
    ino.close()
    assert ino.fd == -1
    with pytest.raises(OSError):
        os.fstat(fd)


def test_records_are_parsed_whole_with_padded_names() -> None:
    import struct

    name = b"abc".ljust(16, b"\0")
    buf = struct.pack("iIII", 3, kernel.CREATE, 0, 16) + name
    buf += struct.pack("iIII", -1, kernel.Q_OVERFLOW, 0, 0)
    assert parse(buf) == [
        InotifyEvent(3, kernel.CREATE, 0, "abc"),
        InotifyEvent(-1, kernel.Q_OVERFLOW, 0, ""),
    ]


def test_starting_the_hub_looks_nothing_up() -> None:
    # ctypes.util.find_library("c") ran /sbin/ldconfig -p as a child on every
    # start; the binding uses the libc already loaded instead.
    code = (
        "import asyncio, sys\n"
        "from pymgmt.events.inotify import InotifyHub\n"
        "async def main():\n"
        "    hub = InotifyHub()\n"
        "    t = asyncio.create_task(hub.run())\n"
        "    await asyncio.sleep(0)\n"
        "    hub.subscribe(sys.argv[1], lambda: None)\n"
        "    t.cancel()\n"
        "asyncio.run(main())\n"
        "print(sorted({'ctypes.util', 'asyncinotify'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, __file__], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_callback_that_raises_ends_the_hub_with_its_error(tmp_path: Path) -> None:
    hub = InotifyHub()

    def boom() -> None:
        raise ValueError("the callback failed")

    async def main() -> None:
        task = asyncio.create_task(hub.run())
        await asyncio.sleep(0)
        hub.subscribe(str(tmp_path / "f"), boom)
        (tmp_path / "f").write_text("x")
        await asyncio.wait_for(task, DEADLINE)

    with pytest.raises(ValueError, match="the callback failed"):
        asyncio.run(main())
    assert hub.watch_count == 0


def test_drain_dispatches_what_the_kernel_queued_without_a_turn_of_the_loop(
    tmp_path: Path,
) -> None:
    # The engine's stop asks which vertices saw the echo of their own write;
    # events still in the kernel's queue answered "none" for the last ones.
    hub = InotifyHub()
    fired: list[str] = []

    async def main() -> None:
        task = asyncio.create_task(hub.run())
        await asyncio.sleep(0)
        try:
            hub.subscribe(str(tmp_path / "f"), lambda: fired.append("f"))
            (tmp_path / "f").write_text("x")  # queued by the kernel, not read yet
            assert fired == []
            hub.drain()  # no await in between: the loop has not read the fd
            assert fired  # every queued event dispatched
            n = len(fired)
            hub.drain()
            assert len(fired) == n  # nothing queued twice
        finally:
            task.cancel()
            await asyncio.wait([task])

    asyncio.run(main())
