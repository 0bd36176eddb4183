"""The state directory's default place and its lock, with nothing but `os` and `fcntl`.

`pymgmt.statedir` says what the lock is for and why it is taken this way
(on the directory itself, and on the ``lock`` file older agents lock).
These few lines live apart so that the one-shot fast path
(`pymgmt.oneshot`), which runs before the rest of pymgmt is imported,
takes exactly the lock every other run takes.
"""

from __future__ import annotations

import fcntl
import os

LOCK_NAME = "lock"
#: the state directory of an agent run as root without --prefix
ROOT_PREFIX = "/var/lib/pymgmt"


def default_prefix() -> str:
    """The state directory without ``--prefix``: root's in /var/lib, a user's in its cache."""
    if os.geteuid() == 0:
        return ROOT_PREFIX
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(cache, "pymgmt")


def lock_at(dir_fd: int) -> list[int]:
    """Lock the state directory open as `dir_fd` (any fd of it) and write this PID.

    Returns the descriptors that hold the locks: closing them all releases
    it (and so does the process's end, even by kill -9). Raises
    BlockingIOError when another process holds the lock, OSError when the
    lock file cannot be made.
    """
    fds: list[int] = []
    try:
        # an O_PATH fd cannot be flocked: the directory itself, opened to read
        fds.append(os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd))
        fcntl.flock(fds[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        fds.append(os.open(LOCK_NAME, flags, 0o644, dir_fd=fds[0]))
        fcntl.flock(fds[1], fcntl.LOCK_EX | fcntl.LOCK_NB)  # what older agents lock
        # Over the old PID, then cut to length: truncating to 0 frees the block
        # the last run's sync wrote, and waits 2-4 ms for it (issue 13).
        pid = f"{os.getpid()}\n".encode()
        os.pwrite(fds[1], pid, 0)
        os.ftruncate(fds[1], len(pid))
    except BaseException:
        release(fds)
        raise
    return fds


def release(fds: list[int]) -> None:
    """Close the lock's descriptors: the flocks go with the last of them."""
    for fd in fds:
        os.close(fd)
    fds.clear()
