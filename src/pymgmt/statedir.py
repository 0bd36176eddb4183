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
import errno
import itertools
import os
import stat
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


class StateFileRefused(PymgmtError):
    """A file in the state directory that the agent will not read; the message says why."""


def read_own(prefix: Path, name: str, limit: int) -> bytes | None:
    """The bytes of `name` in the state directory, if only this user could have written them.

    None when there is nothing to read (no directory yet, no file). Raises
    `StateFileRefused` for anything else: the directory reached through a
    symlink another user owns, or writable by group or others; the file a
    symlink (never followed: ``O_NOFOLLOW`` in the directory's fd), not a
    regular file, owned by another user, writable by group or others,
    larger than `limit`, or unreadable. What is read is still untrusted
    input for the caller to check.
    """
    try:
        dfd = fsutil.open_dir(os.path.abspath(prefix))
    except FileNotFoundError:
        return None
    except (OSError, fsutil.UnsafePathError) as e:
        raise StateFileRefused(f"{prefix}: {getattr(e, 'strerror', None) or e}") from None
    where = os.path.join(os.path.abspath(prefix), name)
    try:
        if not _writable_by_me_alone(os.fstat(dfd), also_root=True):
            raise StateFileRefused(f"{prefix} is writable by another user")
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd
            )
        except FileNotFoundError:
            return None
        except OSError as e:  # ELOOP: a symlink
            why = "a symlink (never followed)" if e.errno == errno.ELOOP else e.strerror
            raise StateFileRefused(f"{where}: {why}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StateFileRefused(f"{where} is not a regular file")
            if not _writable_by_me_alone(st, also_root=False):
                raise StateFileRefused(f"{where} is another user's, or others may write it")
            if st.st_size > limit:
                raise StateFileRefused(f"{where} is larger than {limit:,} bytes")
            # one bounded read: a file grown since the fstat is not read whole
            data = os.pread(fd, st.st_size + 1, 0)
        finally:
            os.close(fd)
    except OSError as e:
        raise StateFileRefused(f"{where}: {e.strerror or e}") from None
    finally:
        os.close(dfd)
    if len(data) > limit:  # grown since the fstat
        raise StateFileRefused(f"{where} is larger than {limit:,} bytes")
    return data


def _writable_by_me_alone(st: os.stat_result, *, also_root: bool) -> bool:
    """Owned by this user (or root, for a directory) and not writable by group or others."""
    owner_ok = st.st_uid == os.geteuid() or (also_root and st.st_uid == 0)
    return owner_ok and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


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

    It runs on every graph swapped in, on the event loop, so a 10k-file
    graph must not cost a path walk per file (issue 13: 160 ms for each
    live edit). The paths are taken directory by directory: each directory
    is resolved once and listed once (`_RealPaths`), and only a symlink is
    resolved on its own; a file that is not one can only be inside the
    state directory if its directory is, as written or resolved, or is the
    state directory's parent.
    """
    roots = {os.path.abspath(prefix), os.path.realpath(prefix)}
    inside = _Inside(roots)
    managed: list[tuple[tuple[str, str], Any, str]] = []  # key, resource, path as written
    by_dir: dict[str, list[tuple[int, str]]] = {}  # directory -> (index in managed, name)
    for key, res in graph.vertices.items():
        for spelt in res.manages():
            if spelt.startswith("/"):  # else not a path (a package, a unit)
                head, name = _split(spelt)
                by_dir.setdefault(head, []).append((len(managed), name))
                managed.append((key, res, spelt))
    hits: list[int] = []
    real = _RealPaths()
    for head, names in by_dir.items():
        real_head, links = real.directory(head, {name for _, name in names})
        near = inside.near(head) or inside.near(real_head)
        for i, name in names:
            if name in links:
                path = _join(head, name)
                if inside(path) or inside(os.path.realpath(path)):
                    hits.append(i)
            elif near and (inside(_join(head, name)) or inside(_join(real_head, name))):
                hits.append(i)
    out = [_intrusion(graph, *managed[i], prefix) for i in sorted(hits)]
    return out + _purges_around(graph, roots, prefix)


def _purges_around(graph: Graph[Any], roots: set[str], prefix: Path) -> list[InputError]:
    """An input error for each resource purging a directory the state directory is in.

    The purge would remove the agent's lock, secrets and refresh markers as
    entries no resource manages. Compared as written and with symlinks
    resolved, both sides.
    """
    out: list[InputError] = []
    for key, res in graph.vertices.items():
        for spelt in res.purges():
            tops = {spelt, os.path.realpath(spelt)}
            heads = tuple(t.rstrip("/") + "/" for t in tops)
            if any(r in tops or r.startswith(heads) for r in roots):
                out.append(
                    InputError(
                        f"{res} purges {spelt}, which holds the agent's state directory {prefix}",
                        location=graph.locations.get(key),
                        field="purge",
                        hint="the state directory belongs to the agent: purge another"
                        " directory, or give the agent another --prefix",
                    )
                )
    return out


def _intrusion(
    graph: Graph[Any], key: tuple[str, str], res: Any, path: str, prefix: Path
) -> InputError:
    return InputError(
        f"{res} manages {path}, inside the agent's state directory {prefix}",
        location=graph.locations.get(key),
        field="path",
        hint="the state directory belongs to the agent: manage "
        "something else, or give the agent another --prefix",
    )


class _Inside:
    """Whether a normalised absolute path is one of `roots` or below one."""

    def __init__(self, roots: set[str]) -> None:
        self.roots = roots
        self.below = tuple({root.rstrip("/") + "/" for root in roots})
        self.parents = {_split(root)[0] for root in roots}

    def __call__(self, path: str) -> bool:
        return path in self.roots or path.startswith(self.below)

    def near(self, directory: str) -> bool:
        """Whether some name in `directory` could be inside (a name has no ``/``)."""
        return directory in self.parents or self(directory)


def _split(path: str) -> tuple[str, str]:
    """(directory, name) of an absolute path, normalised as `os.path.abspath` does."""
    if "//" in path or "/." in path or (path.endswith("/") and path != "/"):
        path = os.path.abspath(path)  # the common spelling needs no normpath
    head, _, name = path.rpartition("/")
    return head or "/", name


def _join(head: str, name: str) -> str:
    return f"{head}/{name}" if head != "/" else f"/{name}"


class _RealPaths:
    """`os.path.realpath` of many paths, each directory resolved and listed once.

    Fifty files in one directory cost one listing of it (which says which
    of them are symlinks, to resolve in full), not a walk and an lstat
    each; a directory costs an lstat, its parent being resolved already.
    Kept for one call only, so a symlink planted between two graphs is seen.
    """

    #: a listing that has read this many entries per wanted name without
    #: finding them all gives way to an lstat each (a few files in a huge directory)
    LISTING_BUDGET = 8
    #: fewer names than this in one directory: an lstat each costs less than a listing
    LISTED_FROM = 4

    def __init__(self) -> None:
        # directory -> its realpath, the names looked up in it, which of those are symlinks
        self._dirs: dict[str, tuple[str, set[str], set[str]]] = {}
        self._reals: dict[str, str] = {}  # directory -> its realpath

    def directory(self, head: str, names: set[str]) -> tuple[str, set[str]]:
        """realpath(`head`), and which of `names` in it are symlinks."""
        real = self._real_dir(head)
        links = _symlinks(head, names)
        self._dirs[head] = (real, names, links)
        return real, links

    def _real_dir(self, path: str) -> str:
        """realpath(`path`) from its parent's, itself resolved once for all its children."""
        real = self._reals.get(path)
        if real is None:
            parent, name = _split(path)
            if not name or os.path.islink(path):
                real = os.path.realpath(path)
            else:
                real = _join(self._real_dir(parent), name)
            self._reals[path] = real
        return real

    def of(self, path: str) -> str:
        """realpath(`path`) for a normalised absolute path."""
        head, name = _split(path)
        if not name:
            return os.path.realpath(path)
        known = self._dirs.get(head)
        if known is None:
            self.directory(head, {name})
            known = self._dirs[head]
        real, listed, links = known
        if name in links or (name not in listed and os.path.islink(path)):
            return os.path.realpath(path)
        return _join(real, name)


def _symlinks(head: str, names: set[str]) -> set[str]:
    """Which of `names` are symlinks in directory `head` (as `os.path.islink` says).

    One listing of the directory answers for all of them (a name it does
    not hold is no symlink). A listing longer than `LISTING_BUDGET` entries
    per name (a few files in a huge directory) stops there, and so does one
    of a directory that cannot be read but can be searched: each name not
    seen is then asked about with an lstat of its own.
    """
    if len(names) < _RealPaths.LISTED_FROM:
        return {name for name in names if os.path.islink(_join(head, name))}
    budget = _RealPaths.LISTING_BUDGET * len(names)
    try:
        with os.scandir(head) as listing:
            entries = list(itertools.islice(listing, budget))
    except (FileNotFoundError, NotADirectoryError):
        return set()  # nothing can be in it
    except OSError:
        entries = []  # unreadable, but perhaps searchable
    else:
        if len(entries) < budget:  # listed in full
            return {entry.name for entry in entries if entry.is_symlink()} & names
    seen = {entry.name: entry for entry in entries if entry.name in names}
    return {
        name
        for name in names
        if (seen[name].is_symlink() if name in seen else os.path.islink(_join(head, name)))
    }


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
