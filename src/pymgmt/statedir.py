"""The agent's state directory (``--prefix``), and the lock that makes it one agent's.

The state directory holds what must outlive a run: pending refresh
notifications and generated secrets. Two agents sharing one fight over it
and over the system (issue 8: hundreds of "repairs" a second between them),
so every run first takes an exclusive, non-blocking ``flock`` on
``<prefix>/lock`` and writes its PID there; a second agent is refused at
once, naming the holder, before it touches anything.

The kernel drops a flock when its holder exits, even by ``kill -9``, so a
stale lock file never blocks the next run. The file itself is never
removed: unlinking a lock file lets two agents lock two different inodes.
The descriptor is close-on-exec, so commands the agent starts (and any
daemon they leave behind) never hold the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from .errors import PymgmtError

LOCK_NAME = "lock"


class StateDirBusy(PymgmtError):
    """Another agent holds the state directory's lock."""

    def __init__(self, prefix: Path, pid: int | None) -> None:
        holder = f"PID {pid}" if pid else "another process (its PID is not written yet)"
        super().__init__(
            f"the state directory {prefix} is in use by {holder}: another pymgmt agent "
            "runs on it; stop that one first, or give this one its own --prefix"
        )
        self.prefix = prefix
        self.pid = pid


class StateDirLock:
    """An exclusive lock on a state directory, held until `release` (or exit)."""

    def __init__(self, prefix: Path, fd: int) -> None:
        self.prefix = prefix
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> StateDirLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def lock(prefix: Path) -> StateDirLock:
    """Create `prefix` if needed and lock it for this process.

    Raises StateDirBusy, naming the holder's PID, if another process has it,
    and OSError if the directory cannot be created or the file opened.
    """
    prefix.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = prefix / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StateDirBusy(prefix, _holder(path)) from None
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        os.close(fd)
        raise
    return StateDirLock(prefix, fd)


def _holder(path: Path) -> int | None:
    """The PID the holder wrote (None if it has not written it yet)."""
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip())
    return None


__all__ = ["LOCK_NAME", "StateDirBusy", "StateDirLock", "lock"]
