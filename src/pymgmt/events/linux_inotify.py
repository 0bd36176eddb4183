"""The kernel's inotify, with nothing between: three libc calls and a record parser.

Why not a library: asyncinotify 4.4 looked libc up with
``ctypes.util.find_library("c")``, which runs ``/sbin/ldconfig -p`` as a
child process on every start (30-45 ms, 10-20 % of a one-shot run, issue
13). libc is already loaded into every CPython process, so ``CDLL(None)``
(``dlopen(NULL)``) finds ``inotify_init1``, ``inotify_add_watch`` and
``inotify_rm_watch`` without searching for anything. Reading is plain
``os.read`` on a non-blocking descriptor: whoever owns an event loop adds
`Inotify.fd` as a reader (``loop.add_reader``) and calls `Inotify.read`
when it is readable; tests and benchmarks may `wait` instead.

Each record is ``struct inotify_event``: ``int wd; uint32_t mask, cookie,
len; char name[len]`` (the name NUL-padded), several to one read.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
from typing import NamedTuple

# The mask bits of <sys/inotify.h> (the kernel ABI: they never change).
ACCESS = 0x00000001
MODIFY = 0x00000002
ATTRIB = 0x00000004
CLOSE_WRITE = 0x00000008
CLOSE_NOWRITE = 0x00000010
OPEN = 0x00000020
MOVED_FROM = 0x00000040
MOVED_TO = 0x00000080
CREATE = 0x00000100
DELETE = 0x00000200
DELETE_SELF = 0x00000400
MOVE_SELF = 0x00000800
#: the kernel's queue overflowed: events were lost (wd is -1)
Q_OVERFLOW = 0x00004000
#: the watch is gone (removed, or its directory deleted)
IGNORED = 0x00008000
#: only watch the path if it is a directory
ONLYDIR = 0x01000000

_HEADER = struct.Struct("iIII")
#: room for many records per read: a record is 16 bytes and its padded name
_READ_SIZE = 64 * 1024


class InotifyEvent(NamedTuple):
    """One record: the watch it came from, what happened, and the name in the directory.

    `name` is empty for an event on the watched path itself (and for a queue
    overflow, whose `wd` is -1).
    """

    wd: int
    mask: int
    cookie: int
    name: str


def _libc() -> ctypes.CDLL:
    """The C library this process already runs on (no search, no child process)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_init1.restype = ctypes.c_int
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_add_watch.restype = ctypes.c_int
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.inotify_rm_watch.restype = ctypes.c_int
    return libc


_LIBC: ctypes.CDLL | None = None


def _calls() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = _libc()
    return _LIBC


def _raise_errno(path: str | None = None) -> None:
    err = ctypes.get_errno()
    # OSError(errno, ...) is the matching subclass: FileNotFoundError, PermissionError...
    raise OSError(err, os.strerror(err), *((path,) if path is not None else ()))


class Inotify:
    """One inotify instance: a non-blocking, close-on-exec descriptor and its watches."""

    def __init__(self) -> None:
        fd = _calls().inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            _raise_errno()
        self.fd: int = fd

    def add_watch(self, path: str | os.PathLike[str], mask: int) -> int:
        """Watch `path` for the events in `mask`; the watch descriptor (one per inode).

        OSError as the kernel says: FileNotFoundError, NotADirectoryError
        (with ONLYDIR), PermissionError, ENOSPC when the watch limit is reached.
        """
        wd: int = _calls().inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            _raise_errno(os.fspath(path))
        return wd

    def rm_watch(self, wd: int) -> None:
        """Stop a watch (the kernel then queues an IGNORED event for it)."""
        if _calls().inotify_rm_watch(self.fd, wd) < 0:
            _raise_errno()

    def read(self) -> list[InotifyEvent]:
        """Every event queued now (empty if none): never blocks."""
        events: list[InotifyEvent] = []
        while True:
            try:
                buf = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events
            events += parse(buf)

    def wait(self, timeout: float) -> list[InotifyEvent]:
        """The events queued within `timeout` seconds (empty: none came)."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            return []
        return self.read()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse(buf: bytes) -> list[InotifyEvent]:
    """The records of one read (the kernel never splits a record between reads)."""
    out: list[InotifyEvent] = []
    off = 0
    end = len(buf)
    size = _HEADER.size
    while off + size <= end:
        wd, mask, cookie, length = _HEADER.unpack_from(buf, off)
        off += size
        name = os.fsdecode(buf[off : off + length].rstrip(b"\0")) if length else ""
        off += length
        out.append(InotifyEvent(wd, mask, cookie, name))
    return out
