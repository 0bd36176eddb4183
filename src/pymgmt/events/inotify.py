"""One inotify instance shared by every resource of an agent.

Why a hub: 10k managed files must not cost 10k inotify watches or 10k
reader tasks. Files are watched through their *parent directory* (a watch on
the file itself dies with the file: inotify sends DELETE_SELF and then
nothing for the recreated file), so all files in one directory share one
kernel watch, and events are dispatched by name with a dict lookup.

A directory's *contents* can be watched too (`subscribe_dir`): every entry
created, removed, renamed, written or chmodded in it, and the directory
itself appearing, going or being replaced. That costs one more kernel watch,
on the directory itself, shared with the subscriptions of files in it; a
tree is watched by subscribing each of its directories.

A path whose directories do not exist yet is watched through its nearest
existing ancestor; when the next directory towards it appears, the
subscription moves down, and when a watched directory disappears it moves
back up. Every move also fires the callback, because the path may have
changed in between: spurious events are harmless, missed events are bugs.

The kernel caps the watches of one user (``fs.inotify.max_user_watches``).
Hitting the cap is a `WatchLimitError`, a ResourceError that names the limit
and the sysctl that raises it, never a traceback; a watch silently not made
would be a drift never seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ResourceError
from . import linux_inotify as kernel
from .linux_inotify import Inotify, InotifyEvent

if TYPE_CHECKING:
    from ..service import TaskStatus

log = logging.getLogger("pymgmt.inotify")

_DIR_MASK = (
    kernel.CREATE
    | kernel.DELETE
    | kernel.MODIFY
    | kernel.CLOSE_WRITE
    | kernel.ATTRIB
    | kernel.MOVED_FROM
    | kernel.MOVED_TO
    | kernel.DELETE_SELF
    | kernel.MOVE_SELF
    | kernel.ONLYDIR
)
#: the directory itself is gone: its subscriptions move up a level
_GONE = kernel.DELETE_SELF | kernel.MOVE_SELF | kernel.IGNORED


def _plain(path: str) -> bool:
    """Absolute and normal already: `os.path.abspath` would return it unchanged.

    Most paths are (a file resource's are checked when the graph is read),
    and normalising 100k of them was a tenth of their subscriptions' cost.
    """
    return (
        path.startswith("/")
        and not path.endswith("/")
        and "//" not in path
        and "/./" not in path
        and "/../" not in path
        and not path.endswith(("/.", "/.."))
    )


class WatchLimitError(ResourceError):
    """The kernel refused one more inotify watch: the per-user limit is reached."""

    def __init__(self, path: str, directory: str) -> None:
        sysctl, limit = _binding_limit()
        raise_to = max(limit * 2, 65536) if limit else 524288
        super().__init__(
            f"cannot watch {path}: the inotify watch limit is reached (watching {directory} "
            f"would need one more; {sysctl} = {limit or 'unknown'}, shared by all of this "
            f"user's processes). Raise it: sysctl -w {sysctl}={raise_to} "
            f"(and put it in /etc/sysctl.d/ to keep it across reboots)"
        )
        self.path = path
        self.limit = limit


#: the machine-wide limit, and the one of the current user namespace (Linux >= 5.11)
_LIMITS = (
    ("fs.inotify.max_user_watches", "/proc/sys/fs/inotify/max_user_watches"),
    ("user.max_inotify_watches", "/proc/sys/user/max_inotify_watches"),
)


def _binding_limit() -> tuple[str, int]:
    """(sysctl name, value) of the lowest inotify watch limit that applies here."""
    found: list[tuple[int, str]] = []
    for name, path in _LIMITS:
        try:
            with open(path) as f:
                found.append((int(f.read().strip()), name))
        except (OSError, ValueError):
            continue
    if not found:
        return _LIMITS[0][0], 0
    value, name = min(found)
    return name, value


class Subscription:
    """A wish to hear about changes to one path (slotted: one per managed file)."""

    __slots__ = ("callback", "parts", "path", "watched")

    def __init__(self, path: str, callback: Callable[[], None], parts: tuple[str, ...]) -> None:
        self.path = path
        self.callback = callback
        self.parts = parts
        self.watched: _DirWatch | None = None

    def __repr__(self) -> str:
        return f"Subscription({self.path!r})"


class DirSubscription:
    """A wish to hear about every entry of one directory (`InotifyHub.subscribe_dir`).

    `entry` watches the directory's own name through its parent (it appears,
    goes, is replaced or chmodded); `watched` is the watch on the directory
    itself while it exists, whose every named event is a change of its contents.
    """

    __slots__ = ("callback", "entry", "path", "watched")

    def __init__(self, path: str, callback: Callable[[], None]) -> None:
        self.path = path
        self.callback = callback
        self.entry: Subscription | None = None
        self.watched: _DirWatch | None = None

    def __repr__(self) -> str:
        return f"DirSubscription({self.path!r})"


@dataclass(eq=False)
class _DirWatch:
    dir: str
    wd: int
    by_name: dict[str, set[Subscription]] = field(default_factory=dict)
    #: subscribers to every entry of this directory
    contents: set[DirSubscription] = field(default_factory=set)

    def unused(self) -> bool:
        return not self.by_name and not self.contents


class InotifyHub:
    """Watches paths for the whole agent; start with `run` in a TaskGroup."""

    def __init__(self) -> None:
        self._inotify: Inotify | None = None
        self._dirs: dict[str, _DirWatch] = {}
        self._by_wd: dict[int, _DirWatch] = {}

    async def run(self, task_status: TaskStatus[None] | None = None) -> None:
        """Read and dispatch events until cancelled; closes the fd on exit.

        A service (`pymgmt.service.start`): ready once subscribing works.
        The descriptor is read by the event loop itself (``add_reader``): no
        task wakes up unless the kernel has something to say. A callback's
        exception ends `run` with it, as if it had been raised here.
        """
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()
        with Inotify() as ino:
            self._inotify = ino
            loop.add_reader(ino.fd, self._readable, ino, failed)
            try:
                if task_status is not None:
                    task_status.started()
                await failed  # until cancelled, or a callback raised
            finally:
                loop.remove_reader(ino.fd)
                self._inotify = None
                self._dirs.clear()
                self._by_wd.clear()

    def _readable(self, ino: Inotify, failed: asyncio.Future[None]) -> None:
        try:
            for event in ino.read():
                self._dispatch(event)
        except Exception as e:
            if not failed.done():
                failed.set_exception(e)

    def drain(self) -> None:
        """Dispatch every event the kernel has queued by now, at once.

        The kernel queues an event as the change happens, but the loop reads
        it only at its next turn. A caller that must know, right now, whether
        a watch fired (the engine's stop asking which vertices saw the echo
        of their own write) drains first, or it asks before the answer is in.
        """
        ino = self._inotify
        if ino is not None:
            for event in ino.read():
                self._dispatch(event)

    @property
    def watch_count(self) -> int:
        return len(self._dirs)

    def subscribe(self, path: str, callback: Callable[[], None]) -> Subscription:
        """Call `callback` whenever `path` (a file or a directory) may have changed.

        Raises WatchLimitError when the kernel's inotify watch limit is reached.
        """
        if not _plain(path):
            path = os.path.abspath(path).rstrip("/") or "/"
        parts = tuple(p for p in path.split("/") if p)
        sub = Subscription(path=path, callback=callback, parts=parts)
        self._attach(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._detach(sub)

    def subscribe_dir(self, path: str, callback: Callable[[], None]) -> DirSubscription:
        """Call `callback` whenever an entry of directory `path` may have changed.

        An entry created, removed, renamed, written, closed after writing or
        chmodded is a change; so is the directory itself appearing, going or
        being replaced (a missing directory is waited for, as `subscribe`
        waits for a missing file). Entries of subdirectories are not: a tree
        subscribes each of its directories. Raises WatchLimitError when the
        kernel's inotify watch limit is reached.
        """
        if not _plain(path):
            path = os.path.abspath(path).rstrip("/") or "/"
        dsub = DirSubscription(path, callback)
        dsub.entry = self.subscribe(path, functools.partial(self._dir_entry_changed, dsub))
        try:
            self._watch_contents(dsub)
        except BaseException:
            self.unsubscribe(dsub.entry)
            raise
        return dsub

    def unsubscribe_dir(self, dsub: DirSubscription) -> None:
        if dsub.entry is not None:
            self.unsubscribe(dsub.entry)
            dsub.entry = None
        self._unwatch_contents(dsub)

    # -- internals ------------------------------------------------------------

    def _dir_entry_changed(self, dsub: DirSubscription) -> None:
        """The directory's own name changed in its parent: (re)watch what it now is.

        The path may name another directory now (one renamed over it) while
        the old one's watch has not reported it gone yet (its DELETE_SELF
        comes when its last reference goes): the path is looked up again, and
        a watch of another inode is treated as gone at once.
        """
        if dsub.entry is None:
            return  # unsubscribed meanwhile
        try:
            old = self._dirs.get(dsub.path)
            if old is not None and self._inotify is not None:
                try:
                    wd: int | None = self._inotify.add_watch(dsub.path, _DIR_MASK)
                except (FileNotFoundError, NotADirectoryError, PermissionError):
                    wd = None
                if wd != old.wd:
                    self._gone(old)  # calls back here for `dsub`, which is then watched
            self._watch_contents(dsub)
        except WatchLimitError as e:
            log.error("%s", e)  # as `_reattach`: nothing can watch it now
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            log.error("%s", WatchLimitError(dsub.path, dsub.path))
        dsub.callback()

    def _watch_contents(self, dsub: DirSubscription) -> None:
        """Hang `dsub` on the watch of its directory, if the directory exists."""
        dw = dsub.watched
        if dw is not None and self._dirs.get(dw.dir) is dw:
            return
        dsub.watched = None
        ino = self._inotify
        if ino is None:
            raise RuntimeError("InotifyHub.subscribe_dir before run() started")
        dw = self._dirs.get(dsub.path)
        if dw is None:
            try:
                wd = ino.add_watch(dsub.path, _DIR_MASK)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                return  # `entry` says when it appears
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise WatchLimitError(dsub.path, dsub.path) from None
                raise
            dw = self._by_wd.get(wd)  # the same inode watched under another name
            if dw is None:
                dw = _DirWatch(dir=dsub.path, wd=wd)
                self._dirs[dsub.path] = dw
                self._by_wd[wd] = dw
        dw.contents.add(dsub)
        dsub.watched = dw

    def _unwatch_contents(self, dsub: DirSubscription) -> None:
        dw = dsub.watched
        dsub.watched = None
        if dw is None:
            return
        dw.contents.discard(dsub)
        if dw.unused() and self._dirs.get(dw.dir) is dw:
            self._drop(dw)

    def _attach(self, sub: Subscription) -> None:
        """Hang `sub` on the deepest existing directory on its way."""
        ino = self._inotify
        if ino is None:
            raise RuntimeError("InotifyHub.subscribe before run() started")
        # Try the parent first, then walk up: most paths' parents exist.
        for depth in range(len(sub.parts) - 1, -1, -1):
            d = "/" + "/".join(sub.parts[:depth])
            dw = self._dirs.get(d)
            if dw is None:
                try:
                    watch = ino.add_watch(d, _DIR_MASK)
                except (FileNotFoundError, NotADirectoryError, PermissionError):
                    continue
                except OSError as e:
                    if e.errno == errno.ENOSPC:
                        raise WatchLimitError(sub.path, d) from None
                    raise
                dw = _DirWatch(dir=d, wd=watch)
                self._dirs[d] = dw
                self._by_wd[watch] = dw
            name = sub.parts[depth] if depth < len(sub.parts) else ""
            dw.by_name.setdefault(name, set()).add(sub)
            sub.watched = dw
            return
        raise FileNotFoundError(sub.path)  # not even "/" could be watched

    def _detach(self, sub: Subscription) -> None:
        dw = sub.watched
        sub.watched = None
        if dw is None:
            return
        depth = len([p for p in dw.dir.split("/") if p])
        name = sub.parts[depth] if depth < len(sub.parts) else ""
        subs = dw.by_name.get(name)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del dw.by_name[name]
        if dw.unused():
            self._drop(dw)

    def _drop(self, dw: _DirWatch) -> None:
        self._dirs.pop(dw.dir, None)
        wd = dw.wd
        self._by_wd.pop(wd, None)
        if self._inotify is not None:
            # OSError: the kernel already dropped it (directory deleted)
            with contextlib.suppress(OSError):
                self._inotify.rm_watch(wd)

    def _reattach(self, subs: list[Subscription]) -> None:
        for sub in subs:
            self._detach(sub)
            try:
                self._attach(sub)
            except FileNotFoundError:
                log.warning("cannot watch any directory above %s", sub.path)
            except WatchLimitError as e:
                # Moving down a level failed: nothing can watch this path now.
                log.error("%s", e)
            sub.callback()

    def _gone(self, dw: _DirWatch) -> None:
        """The directory of `dw` went away (or its path is another one now): move everyone up."""
        everyone = [s for subs in dw.by_name.values() for s in subs]
        readers = list(dw.contents)
        self._drop(dw)
        for s in everyone:
            s.watched = None
        self._reattach(everyone)
        for dsub in readers:  # a directory renamed over it, or nothing
            dsub.watched = None
            self._dir_entry_changed(dsub)

    def _dispatch(self, event: InotifyEvent) -> None:
        mask = event.mask
        if mask & kernel.Q_OVERFLOW:
            # The kernel dropped events: everyone may have changed.
            for dw in list(self._dirs.values()):
                for subs in dw.by_name.values():
                    for sub in list(subs):
                        sub.callback()
                for dsub in list(dw.contents):
                    dsub.callback()
            return
        found = self._by_wd.get(event.wd)
        if found is None:
            return  # a watch already dropped (its IGNORED, or events queued before)
        dw = found
        if mask & _GONE:
            self._gone(dw)
            return
        name = event.name
        if not name:
            return  # about the directory itself, not a name in it
        for dsub in list(dw.contents):
            dsub.callback()
        named = dw.by_name.get(name)
        if not named:
            return
        depth = len([p for p in dw.dir.split("/") if p])
        moving: list[Subscription] = []
        for sub in list(named):
            if depth == len(sub.parts) - 1:
                sub.callback()  # an event on the path itself
            else:
                moving.append(sub)  # a directory on the way appeared/changed
        if moving:
            self._reattach(moving)
