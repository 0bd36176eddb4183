"""A minimal Python drift repairer: the peer the agent is compared with.

Usage: _peer_repairer.py DIR READY_FILE NAME=CONTENT_HEX ...

One blocking inotify watch on DIR (no asyncio, no graph, no reporting); on
any event for a managed name it compares the file with the wanted content
and, if different, writes it back exactly as pymgmt's file resource does
(temporary file, fchmod, write, fsync, rename, directory fsync). Writes
READY_FILE once the watch is established. Runs until SIGTERM.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import sys

from pymgmt.events import linux_inotify as kernel
from pymgmt.events.linux_inotify import Inotify

_EV = struct.Struct("iIII")
MASK = kernel.CREATE | kernel.DELETE | kernel.CLOSE_WRITE | kernel.MOVED_FROM | kernel.MOVED_TO


def atomic_write(path: str, data: bytes, mode: int) -> None:
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".{base}.peer-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def converged(path: str, want: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read() == want
    except FileNotFoundError:
        return False


def main() -> None:
    directory, ready = sys.argv[1], sys.argv[2]
    want: dict[bytes, bytes] = {}
    for spec in sys.argv[3:]:
        name, hexdata = spec.split("=", 1)
        want[name.encode()] = bytes.fromhex(hexdata)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Inotify() as ino:
        ino.add_watch(directory, MASK)
        for name, data in want.items():
            path = os.path.join(directory, name.decode())
            if not converged(path, data):
                atomic_write(path, data, 0o644)
        with open(ready, "w") as f:
            f.write("ready\n")
        poller = select.poll()
        poller.register(ino.fd, select.POLLIN)
        while True:
            poller.poll()
            buf = os.read(ino.fd, 65536)
            names: set[bytes] = set()
            off = 0
            while off < len(buf):
                _wd, _mask, _cookie, length = _EV.unpack_from(buf, off)
                off += _EV.size
                names.add(buf[off : off + length].rstrip(b"\0"))
                off += length
            for name in names & want.keys():
                path = os.path.join(directory, name.decode())
                if not converged(path, want[name]):
                    atomic_write(path, want[name], 0o644)


if __name__ == "__main__":
    main()
