"""Changes of this process's mount table, from /proc/self/mountinfo, without polling on a timer.

The kernel signals a change of a mount namespace's table (a mount, an
unmount, a remount) to every open mountinfo file of that namespace as an
*exceptional condition*: poll(2) reports POLLPRI | POLLERR on it, once per
change (reading the file is not needed; the poll itself consumes the
event). The same poll always reports POLLIN too, because the file can
always be read.

So ``loop.add_reader(fd, ...)`` is wrong here: asyncio watches readers for
POLLIN only, which is permanently true for this fd, and the callback would
spin. asyncio has no "add_exceptional". Instead the mountinfo fd goes into
an epoll set of its own registered for EPOLLPRI only (EPOLLERR is always
reported), and that epoll's fd, which is readable exactly when one of its
fds has a registered event pending, is what the loop watches with
``add_reader``. The callback drains the inner epoll with a zero timeout
and reports one change. No thread, no timer, and nothing to wake on close.

The watch is of the namespace the agent runs in: /proc/self, not /proc/1.
"""

from __future__ import annotations

import asyncio
import os
import select
from collections.abc import Callable

#: this process's mount table (its mount namespace's)
MOUNTINFO = "/proc/self/mountinfo"


def watch_mount_table(callback: Callable[[], None], path: str = MOUNTINFO) -> Callable[[], None]:
    """Call `callback` after each change of the mount table; returns what stops the watch.

    Must be called in the event loop's thread. Changes made before this
    returns are not reported (the file remembers the table as it was opened).
    """
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        ep = select.epoll(1)
    except BaseException:
        os.close(fd)
        raise
    try:
        ep.register(fd, select.EPOLLPRI)

        def changed() -> None:
            ep.poll(0)  # consume what is pending (the check of readiness may have already)
            callback()

        loop.add_reader(ep.fileno(), changed)
    except BaseException:
        ep.close()
        os.close(fd)
        raise

    def stop() -> None:
        loop.remove_reader(ep.fileno())
        ep.close()
        os.close(fd)

    return stop
