"""Crash-proof refresh notifications, kept per edge.

mgmt's article promises that undelivered notifications survive a crash or a
graph stop; mgmt itself keeps them in memory only, one flag per edge. Here a
pending refresh is a marker file per *edge* (sender, receiver) in
``<state>/refresh/``, written durably (temporary file, fsync, rename,
directory fsync).

The guarantee: **a notification is delivered at least once, never lost**.

* Write-ahead. A sender persists the marker of each of its notify edges
  *before* it applies a plan (when its check found something to change, and
  not in noop). A ``kill -9`` at any moment after the apply began, even
  the instant the change is on disk, leaves the marker, and the next agent
  that runs a graph with the receiver delivers the refresh.
* If the apply then fails (or changed nothing after all), the marker stays
  and the receiver refreshes once more than strictly needed: a spurious
  refresh is the price of never losing one.
* A receiver *snapshots* its pending edges (with their generation) when a
  run starts and, only once that run succeeded, removes exactly those. A
  notification that arrives while the run is going on gets a new
  generation (or a new marker), so it outlives the removal and causes one
  more run (issue 8: the old single marker per receiver was wiped by the run
  that was already under way). A ``kill -9`` after the refresh ran but
  before the removal delivers it again: at least once.

The disk work runs in a thread, so that an fsync on a slow disk does not
stall every other vertex's watch; through ``off_loop``, so that a cancelled
caller still waits for it and a marker's lock covers its write or removal
to the end. Only vertices that have
notify edges, or a pending refresh, ever touch the store, so a graph
without notifications pays nothing per check.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os

from ..fsutil import atomic_write, open_dir, open_node, opened_dir, read_fd, remove_durably
from ..graph.model import Key
from ..resources.base import off_loop

log = logging.getLogger("pymgmt.engine")

#: pending edges of one receiver: marker file name -> generation
Snapshot = dict[str, int]


def _digest(key: Key) -> str:
    kind, name = key
    return hashlib.sha256(f"{kind}\0{name}".encode()).hexdigest()[:24]


class RefreshStore:
    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)  # the safe walk starts at /
        self._made = False
        #: receiver -> its pending edges (read from disk once, on first use)
        self._pending: dict[Key, Snapshot] | None = None
        #: marker names whose file exists durably (changed only under its lock)
        self._on_disk: set[str] = set()
        #: one lock per marker file: its write and its removal never interleave
        self._locks: dict[str, asyncio.Lock] = {}
        self._generation = itertools.count(1)

    def _index(self) -> dict[Key, Snapshot]:
        if self._pending is None:
            self._pending = self._load()
        return self._pending

    def _load(self) -> dict[Key, Snapshot]:
        """The markers a previous agent left (one listing, a few small reads)."""
        out: dict[Key, Snapshot] = {}
        try:
            # walked safely, never through a symlink another user planted
            with opened_dir(self.directory) as dfd:
                names = _list(dfd)
                bodies = {n: _read(dfd, n) for n in names if not n.startswith(".")}
        except FileNotFoundError:
            return out
        for name, raw in bodies.items():  # dot files: temporaries left by a crash mid-write
            try:
                if isinstance(raw, OSError):
                    raise raw
                body = json.loads(raw)
                receiver = (str(body["kind"]), str(body["name"]))
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("ignoring unreadable refresh marker %s: %s", name, e)
                continue
            # Markers of the older per-receiver format load the same way.
            out.setdefault(receiver, {})[name] = 0
            self._on_disk.add(name)
        return out

    def pending(self, receiver: Key) -> bool:
        """Whether a refresh waits for `receiver`."""
        return bool(self._index().get(receiver))

    def snapshot(self, receiver: Key) -> Snapshot:
        """The edges pending for `receiver` now: what a run starting now delivers."""
        edges = self._index().get(receiver)
        return dict(edges) if edges else {}

    async def add(self, receiver: Key, sender: Key, sender_name: str) -> None:
        """Persist a pending refresh on the edge sender -> receiver (durable on return)."""
        name = f"{receiver[0]}-{_digest(receiver)}~{_digest(sender)}"
        # A new generation first: a removal already under way for an older
        # snapshot of this edge now leaves it pending.
        self._index().setdefault(receiver, {})[name] = next(self._generation)
        async with self._lock(name):
            if name in self._on_disk:
                return
            body = json.dumps({"kind": receiver[0], "name": receiver[1], "from": sender_name})
            await off_loop(self._write, name, (body + "\n").encode())
            self._on_disk.add(name)

    async def consume(self, receiver: Key, delivered: Snapshot) -> None:
        """Forget the edges a successful run delivered, unless notified again since."""
        edges = self._index().get(receiver, {})
        for name, generation in delivered.items():
            if edges.get(name) != generation:
                continue  # notified again during the run: one more run will deliver it
            async with self._lock(name):
                if edges.get(name) != generation:
                    continue
                del edges[name]
                if name in self._on_disk:
                    # Forgotten first: cancelled while the thread removes the
                    # file, we must not believe it is still there (the next
                    # `add` would then write nothing, and a kill -9 lose the
                    # refresh). off_loop keeps the lock until the thread is done.
                    self._on_disk.discard(name)
                    await off_loop(remove_durably, os.path.join(self.directory, name))
        if not edges:
            self._index().pop(receiver, None)

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _write(self, name: str, body: bytes) -> None:
        if not self._made:
            os.close(open_dir(self.directory, create=0o700))
            self._made = True
        atomic_write(os.path.join(self.directory, name), body, 0o600, None, None)


def _list(dir_fd: int) -> list[str]:
    rfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return os.listdir(rfd)
    finally:
        os.close(rfd)


def _read(dir_fd: int, name: str) -> bytes | OSError:
    """A marker's bytes (never through a symlink), or why it cannot be read."""
    try:
        fd = open_node(dir_fd, name)
        if fd is None:
            return FileNotFoundError(f"{name} vanished")
        try:
            return read_fd(fd)
        finally:
            os.close(fd)
    except OSError as e:
        return e
