"""The agent's state directory (``--prefix``), and the lock that makes it one agent's.

The state directory holds what must outlive a run: pending refresh
notifications and generated secrets. Two agents sharing one fight over it
and over the system (issue 8: hundreds of "repairs" a second between them),
so every run first takes an exclusive, non-blocking ``flock`` on the
prefix *directory* and writes its PID to ``<prefix>/lock``; a second agent
is refused at once, naming the holder, before it touches anything.

The lock is on the directory, not on a file in it: a file can be replaced
(an atomic rename) or removed, after which a second agent would lock a
different inode and run beside the first. The ``lock`` file still gets its
own flock too, so an agent of an older version (which locked only the
file) is refused as well. And a graph may not manage anything inside the
state directory at all (`intrusions`): that is an input error.

The prefix is walked like every other path the agent touches as root
(`fsutil.open_dir`): a symlink in it that another user could have made is
refused, and missing directories are created (mode 0700) without following
one. A prefix that a user redirected to another directory would otherwise
have the agent truncate files and plant secrets there.

The kernel drops a flock when its holder exits, even by ``kill -9``, so a
stale lock never blocks the next run. The descriptors are close-on-exec,
so commands the agent starts (and any daemon they leave behind) never hold
the lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from . import fsutil, statelock
from .errors import InputError, PymgmtError
from .graph.model import Graph
from .statelock import LOCK_NAME, ROOT_PREFIX


def default_prefix() -> Path:
    """The state directory without ``--prefix``: root's in /var/lib, a user's in its cache.

    Here, not in the run command, because ``pymgmt status`` needs it too
    and should not import the engine to find the agent.
    """
    return Path(statelock.default_prefix())


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


class StateDirUnsafe(PymgmtError):
    """The path to the state directory leads through a symlink another user controls."""

    def __init__(self, prefix: Path, why: str) -> None:
        super().__init__(f"the state directory {prefix} is not safe to use: {why}")
        self.prefix = prefix


class StateDirLock:
    """An exclusive lock on a state directory, held until `release` (or exit)."""

    def __init__(self, prefix: Path, fds: list[int]) -> None:
        self.prefix = prefix
        self._fds = fds

    def release(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)  # closing the only descriptors drops the flocks

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
    """Create `prefix` if needed (safely) and lock it for this process.

    Raises StateDirBusy, naming the holder's PID, if another process has it,
    StateDirUnsafe if its path leads through a symlink another user owns,
    and OSError if the directory cannot be created or the file opened.
    """
    try:
        pfd = fsutil.open_dir(os.path.abspath(prefix), create=0o700)
    except fsutil.UnsafePathError as e:
        raise StateDirUnsafe(prefix, str(e)) from None
    try:
        fds = statelock.lock_at(pfd)
    except BlockingIOError:
        raise StateDirBusy(prefix, _holder(prefix)) from None
    finally:
        os.close(pfd)
    try:
        _check_subdirs(prefix)
    except BaseException:
        statelock.release(fds)
        raise
    return StateDirLock(Path(os.path.abspath(prefix)), fds)


#: the directories the agent keeps inside the state directory
SUBDIRS = ("state", "refresh")


def _check_subdirs(prefix: Path) -> None:
    """Refuse now, clearly, subdirectories that the safe walk would refuse mid-run.

    The prefix is the agent's; if ``state/`` or ``refresh/`` in it is a
    symlink another user made, every later access would be refused (so
    nothing leaks), but in the middle of a run.
    """
    for sub in SUBDIRS:
        try:
            os.close(fsutil.open_dir(os.path.join(os.path.abspath(prefix), sub)))
        except FileNotFoundError:
            continue  # made (safely) when first needed
        except fsutil.UnsafePathError as e:
            raise StateDirUnsafe(prefix, str(e)) from None


def _holder(prefix: Path) -> int | None:
    """The PID the holder wrote (None if it has not written it yet)."""
    with (
        contextlib.suppress(OSError, ValueError),
        fsutil.opened_dir(os.path.abspath(prefix)) as dfd,
    ):
        fd = os.open(LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
        try:
            return int(fsutil.read_fd(fd).decode().strip())
        finally:
            os.close(fd)
    return None


def intrusions(graph: Graph[Any], prefix: Path) -> list[InputError]:
    """An input error for each resource that would manage a path in the state directory.

    Its files are the agent's own: a graph that rewrote or removed the lock,
    a stored secret or a refresh marker would break the lock (two agents on
    one directory), regenerate secrets or lose notifications. Paths are
    compared both as written and with symlinks resolved.
    """
    roots = {os.path.abspath(prefix), os.path.realpath(prefix)}
    out: list[InputError] = []
    real = _RealPaths()
    for key, res in graph.vertices.items():
        for managed in res.manages():
            if not managed.startswith("/"):
                continue  # not a path (a package, a unit)
            forms = {os.path.abspath(managed), real.of(os.path.abspath(managed))}
            if any(_inside(p, root) for p in forms for root in roots):
                out.append(
                    InputError(
                        f"{res} manages {managed}, inside the agent's state directory {prefix}",
                        location=graph.locations.get(key),
                        field="path",
                        hint="the state directory belongs to the agent: manage "
                        "something else, or give the agent another --prefix",
                    )
                )
    return out


class _RealPaths:
    """`os.path.realpath` of many paths, each directory resolved once.

    Run for every graph swapped in (on a collecting host, once per change
    of any host's exports): fifty files in one directory cost one walk of
    that directory's path and an lstat each, not a walk each. Kept for one
    call only, so a symlink planted between two graphs is seen.
    """

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}

    def of(self, path: str) -> str:
        """realpath(`path`) for a normalised absolute path."""
        head, tail = os.path.split(path)
        if not tail or tail in (".", "..") or os.path.islink(path):
            return os.path.realpath(path)
        real = self._dirs.get(head)
        if real is None:
            real = self._dirs[head] = os.path.realpath(head)
        return os.path.join(real, tail)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


__all__ = [
    "LOCK_NAME",
    "ROOT_PREFIX",
    "StateDirBusy",
    "StateDirLock",
    "StateDirUnsafe",
    "default_prefix",
    "intrusions",
    "lock",
]
