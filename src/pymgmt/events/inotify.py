"""One inotify instance shared by every resource of an agent.

Why a hub: 10k managed files must not cost 10k inotify watches or 10k
reader tasks. Files are watched through their *parent directory* (a watch on
the file itself dies with the file: inotify sends DELETE_SELF and then
nothing for the recreated file), so all files in one directory share one
kernel watch, and events are dispatched by name with a dict lookup.

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


@dataclass(eq=False)
class _DirWatch:
    dir: str
    wd: int
    by_name: dict[str, set[Subscription]] = field(default_factory=dict)


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

    # -- internals ------------------------------------------------------------

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
        if not dw.by_name:
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

    def _dispatch(self, event: InotifyEvent) -> None:
        mask = event.mask
        if mask & kernel.Q_OVERFLOW:
            # The kernel dropped events: everyone may have changed.
            for dw in list(self._dirs.values()):
                for subs in dw.by_name.values():
                    for sub in list(subs):
                        sub.callback()
            return
        found = self._by_wd.get(event.wd)
        if found is None:
            return  # a watch already dropped (its IGNORED, or events queued before)
        dw = found
        if mask & _GONE:
            # The directory itself went away: move everyone up a level.
            everyone = [s for subs in dw.by_name.values() for s in subs]
            self._drop(dw)
            for s in everyone:
                s.watched = None
            self._reattach(everyone)
            return
        name = event.name
        if not name:
            return  # about the directory itself, not a name in it
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
