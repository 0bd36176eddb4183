"""Crash-proof refresh notifications.

mgmt's article promises that undelivered notifications survive a crash or a
graph stop; mgmt itself keeps them in memory only. Here a pending refresh is
a marker file per receiving vertex in ``<state>/refresh/``, written durably
(temp file, fsync, rename, directory fsync) *before* the sending vertex is
marked converged, and removed only after the receiver's refresh succeeded.
A ``kill -9`` between the two leaves the marker, and the next agent that runs
a graph with that vertex delivers the refresh once.
"""

from __future__ import annotations

import hashlib
import json
import os

from ..fsutil import atomic_write, remove_durably
from ..graph.model import Key


class RefreshStore:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._made = False
        self._existing: set[str] | None = None  # marker names, listed once

    def _path(self, key: Key) -> str:
        # The name only needs to be unique; the marker's content says who it is for.
        kind, name = key
        digest = hashlib.sha256(f"{kind}\0{name}".encode()).hexdigest()[:24]
        return os.path.join(self.directory, f"{kind}-{digest}")

    def pending(self, key: Key) -> bool:
        """Whether a refresh waits for `key` (one directory listing per engine)."""
        if self._existing is None:
            try:
                self._existing = set(os.listdir(self.directory))
            except FileNotFoundError:
                self._existing = set()
        return os.path.basename(self._path(key)) in self._existing

    def add(self, key: Key, source: str) -> None:
        """Persist a pending refresh for `key` (idempotent)."""
        path = self._path(key)
        if os.path.exists(path):
            return
        if not self._made:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._made = True
        body = json.dumps({"kind": key[0], "name": key[1], "from": source}) + "\n"
        atomic_write(path, body.encode(), 0o600, None, None)
        if self._existing is not None:
            self._existing.add(os.path.basename(path))

    def clear(self, key: Key) -> None:
        path = self._path(key)
        if os.path.exists(path):
            remove_durably(path)
        if self._existing is not None:
            self._existing.discard(os.path.basename(path))
