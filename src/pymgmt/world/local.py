"""The single-host World: an in-process key space with etcd's semantics.

Revisions increase by one per write; watches replay from a start revision
so a watcher that re-subscribes after reading never misses a change, as with
etcd. Leases are trivially kept for the life of the process: `close` deletes
the leased keys (with delete events), as revoking an etcd lease does.

Given the agent's state directory, the keys that hold no lease outlive the
process as they do in etcd (a ``kv`` resource of a one-shot run is converged
on the next run, and survives a restart): after every write that touches
one, all of them are written to ``<state dir>/world-keys.json`` before the
write returns, through `fsutil.atomic_write_at` (a temporary file mode 0600
from its first byte, fsync, rename, fsync of the directory), so a kill -9 at
any moment leaves the previous file or the new one, never half of one.
Leased keys (exports, converged state) stay in memory: an etcd lease dies
with the process too.

The file is read back at start under `statedir.read_own`'s rules (never
through a symlink; this user's alone; at most `STORE_MAX` bytes) and is
untrusted input: a file that is refused, corrupt or of another shape is
ignored with a warning, and the next write replaces it. A value that was
a secret when written (`redaction.is_secret`) is marked so in the file and
registered as secret again when read: the next run redacts it too, even if
nothing sends it to this run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import fsutil, redaction, statedir
from .base import KV, WatchEvent, WorldError

log = logging.getLogger("pymgmt.world")

#: the file in the state directory
STORE_NAME = "world-keys.json"
#: bumped when the layout changes: a file of another format is ignored
STORE_FORMAT = 1
#: the largest file written or read (a kv value is at most 1 MiB; 64 of them, base64)
STORE_MAX = 96 << 20


class LocalWorld:
    def __init__(self, hostname: str, state_dir: Path | None = None) -> None:
        self.hostname = hostname
        self._data: dict[str, KV] = {}
        self._log: list[WatchEvent] = []
        self._revision = 0
        self._changed = asyncio.Condition()
        self._leased: set[str] = set()
        #: where the unleased keys are kept (None: in memory only)
        self._state_dir = state_dir
        #: writes that store the file take turns: each is staged from the last
        self._turns = asyncio.Lock()

    async def load(self) -> None:
        """Read the unleased keys a previous run left; a file not to trust is ignored aloud."""
        if self._state_dir is None:
            return
        try:
            stored = await asyncio.to_thread(_read_stored, self._state_dir)
        except statedir.StateFileRefused as e:
            log.warning("the stored keys are not read (%s): they start empty", e)
            return
        except ValueError as e:
            where = self._state_dir / STORE_NAME
            log.warning("the stored keys in %s are ignored (%s): they start empty", where, e)
            return
        if stored is None:
            return
        revision, found = stored
        self._revision = max(self._revision, revision)
        for key, (value, secret) in found.items():
            if secret:
                redaction.register(value.decode("utf-8", "surrogateescape"))
            self._data[key] = KV(key, value, revision)

    async def _record(self, *events: WatchEvent) -> int:
        async with self._changed:
            self._log.extend(events)
            self._changed.notify_all()
        return events[-1].revision

    async def put(self, key: str, value: bytes, *, lease: bool = False) -> int:
        return await self._write({key: value}, (), lease)

    async def delete(self, key: str) -> int:
        return await self._write({}, (key,), False)

    async def commit(
        self, puts: Mapping[str, bytes], deletes: Iterable[str] = (), *, lease: bool = False
    ) -> int:
        """All of `puts` and `deletes` at one new revision (no size limit here)."""
        gone = list(dict.fromkeys(deletes))
        if both := puts.keys() & set(gone):
            raise ValueError(f"put and deleted in one commit: {sorted(both)}")  # as etcd
        if not puts and not gone:
            return self._revision
        return await self._write(puts, gone, lease)

    async def _write(self, puts: Mapping[str, bytes], gone: Iterable[str], lease: bool) -> int:
        """One new revision: stored (if it touches an unleased key), then seen by watchers.

        Without a state directory nothing waits. With one, writes take turns,
        and each is on disk before memory (and any watcher) sees it: a write
        the disk refused changed nothing. A cancelled caller does not cut a
        write in half: the turn runs to its end, then the cancellation is
        raised.
        """
        if self._state_dir is None:
            return await self._commit_memory(puts, gone, lease)
        turn = asyncio.ensure_future(self._stored_turn(dict(puts), list(gone), lease))
        try:
            return await asyncio.shield(turn)
        except asyncio.CancelledError:
            await asyncio.wait({turn})
            raise

    async def _stored_turn(self, puts: dict[str, bytes], gone: list[str], lease: bool) -> int:
        async with self._turns:
            assert self._state_dir is not None
            kept = self._kept_after(puts, gone, lease)
            if kept is not None:
                where = self._state_dir / STORE_NAME
                try:
                    await asyncio.to_thread(_store, self._state_dir, self._revision + 1, kept)
                except (OSError, fsutil.UnsafePathError) as e:
                    raise WorldError(f"cannot store the keys in {where}: {e}") from None
            return await self._commit_memory(puts, gone, lease)

    def _kept_after(
        self, puts: Mapping[str, bytes], gone: Iterable[str], lease: bool
    ) -> dict[str, bytes] | None:
        """The unleased keys as this write leaves them; None: it touches none of them."""
        kept = {k: kv.value for k, kv in self._data.items() if k not in self._leased}
        touched = False
        for key in gone:
            touched |= kept.pop(key, None) is not None
        for key, value in puts.items():
            if lease:  # a key that becomes leased leaves the file
                touched |= kept.pop(key, None) is not None
            else:
                kept[key] = value
                touched = True
        return kept if touched else None

    async def _commit_memory(
        self, puts: Mapping[str, bytes], gone: Iterable[str], lease: bool
    ) -> int:
        self._revision += 1
        rev = self._revision
        events: list[WatchEvent] = []
        for key in gone:
            self._data.pop(key, None)
            self._leased.discard(key)
            events.append(WatchEvent("delete", key, b"", rev))
        for key, value in puts.items():
            self._data[key] = KV(key, value, rev)
            if lease:
                self._leased.add(key)
            else:
                self._leased.discard(key)
            events.append(WatchEvent("put", key, value, rev))
        return await self._record(*events)

    async def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        found = [kv for k, kv in sorted(self._data.items()) if k.startswith(prefix)]
        return found, self._revision

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        seen = 0
        while True:
            async with self._changed:
                while len(self._log) <= seen:
                    await self._changed.wait()
                fresh = self._log[seen:]
                seen = len(self._log)
            for ev in fresh:
                if ev.revision > start_revision and ev.key.startswith(prefix):
                    yield ev

    async def close(self) -> None:
        """This host goes away: its leased keys vanish, as on etcd."""
        for key in sorted(self._leased):
            await self.delete(key)


def _encode(revision: int, kept: Mapping[str, bytes]) -> bytes:
    """The file's bytes: JSON of base64 values, each marked if it was a secret."""
    out: dict[str, Any] = {}
    for key, value in sorted(kept.items()):
        text = value.decode("utf-8", "surrogateescape")
        out[key] = {
            "value": base64.b64encode(value).decode("ascii"),
            "secret": redaction.is_secret(text),
        }
    doc = {"format": STORE_FORMAT, "revision": revision, "keys": out}
    return json.dumps(doc, separators=(",", ":")).encode()


def _read_stored(state_dir: Path) -> tuple[int, dict[str, tuple[bytes, bool]]] | None:
    """The file's revision and keys (in a thread: up to `STORE_MAX` bytes of JSON); None: none."""
    data = statedir.read_own(state_dir, STORE_NAME, STORE_MAX)
    return None if data is None else _decode(data)


def _decode(data: bytes) -> tuple[int, dict[str, tuple[bytes, bool]]]:
    """The revision and keys of a file; ValueError, saying what is wrong, for any other shape."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
        raise ValueError(f"not format {STORE_FORMAT} of pymgmt's stored keys")
    revision, found = doc.get("revision"), doc.get("keys")
    if type(revision) is not int or revision < 0 or not isinstance(found, dict):
        raise ValueError("no revision or no keys")
    keys: dict[str, tuple[bytes, bool]] = {}
    for key, entry in found.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), str):
            raise ValueError(f"the entry of {key!r} has no value")
        secret = entry.get("secret", False)
        if type(secret) is not bool:
            raise ValueError(f"the entry of {key!r}: 'secret' is not true or false")
        try:
            keys[key] = (base64.b64decode(entry["value"], validate=True), secret)
        except (binascii.Error, ValueError):
            raise ValueError(f"the value of {key!r} is not base64") from None
    return revision, keys


def _store(state_dir: Path, revision: int, kept: Mapping[str, bytes]) -> None:
    """Replace the file in `state_dir` durably (in a thread: it encodes and fsyncs)."""
    data = _encode(revision, kept)
    if len(data) > STORE_MAX:
        raise WorldError(
            f"the keys of this host would take more than {STORE_MAX:,} bytes in "
            f"{state_dir / STORE_NAME}; delete some, or give the agent a cluster (--seeds)"
        )
    with fsutil.opened_dir(os.path.abspath(state_dir)) as dfd:
        fsutil.atomic_write_at(dfd, STORE_NAME, data, 0o600, None, None)
