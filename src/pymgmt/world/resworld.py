"""Exported resources over any World: publish this host's, follow the others'.

Each exported resource is one key, ``keys.exported(host, kind, name)``,
written with the host's lease (so the exports of a host that goes away
vanish with it) and holding `codec.encode`'s bytes.

`ResWorld.export` publishes a whole set at once and writes only what
changed since its last publish: a resource that did not change causes no
write, hence no watch event and no work on any other host. What left the set
is deleted. The changes go out in one `World.commit` (one revision): every
collecting host sees a publish as one change and swaps once for it.

`ResWorld.collect` follows the other hosts' exports of some kinds: one full
`Snapshot` first (read, then watched from the revision read, so no change
falls in between), then a new snapshot after each change. Changes that come
in a burst are folded into one snapshot: the watch is drained of what is
already there and waited on for a few milliseconds more (`QUIET`).

Each snapshot costs the collecting host a graph swap (merge, compile,
changeover, each over every collected resource), so under sustained
churn (fifty hosts starting one after the other) snapshots are rate-limited
like a leaky bucket: the first change after a quiet spell of `MIN_INTERVAL`
goes out within `QUIET`, which is what the exchange latency needs; a change
that comes sooner after the last snapshot is held, with everything that
follows it, until `MIN_INTERVAL` has passed since that snapshot. A host
thus swaps at most about once per `MIN_INTERVAL` however fast the others
change, and never holds a change longer than that.

Every entry of a snapshot is either a decoded resource or the
`DecodeError` that refused it, so the refusal can be reported; a key that
does not follow the schema is refused the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass
from typing import TypeVar

from ..resources.base import Resource
from .base import WatchEvent, World, WorldError, keys, valid_hostname
from .codec import DecodeError, decode, encode, quote

log = logging.getLogger("pymgmt.world.resworld")

#: every host's exports live under this prefix (keys.exported builds the keys)
PREFIX = keys.ROOT + "exported/"
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: how long a burst may go quiet before its snapshot is yielded (seconds)
QUIET = 0.005
#: the longest a snapshot waits for a burst to end (seconds): a host that
#: publishes without pause still has its changes seen this often
BURST_MAX = 0.05
#: under sustained churn, at most one snapshot per this many seconds (see
#: `ResWorld.collect`; bench/RESULTS.md has the measurements behind it)
MIN_INTERVAL = 0.15


@dataclass(frozen=True, slots=True)
class Export:
    """One other host's export: where it was found and what it decoded to."""

    key: str
    host: str
    kind: str
    name: str
    #: the resource, or why it was refused
    result: Resource | DecodeError

    @property
    def resource(self) -> Resource | None:
        return self.result if isinstance(self.result, Resource) else None

    @property
    def error(self) -> DecodeError | None:
        return self.result if isinstance(self.result, DecodeError) else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every other host's current exports of the kinds asked for, by key."""

    exports: tuple[Export, ...]
    #: the store revision this view is complete up to
    revision: int


def parse_key(key: str) -> tuple[str, str, str] | None:
    """(host, kind, name) of an export key, or None if it is not one we accept."""
    if not key.startswith(PREFIX):
        return None
    parts = key[len(PREFIX) :].split("/", 2)
    if len(parts) != 3:
        return None
    host, kind, name = parts
    # fullmatch: with match, '$' also matches before a final newline
    if not valid_hostname(host) or not _KIND_RE.fullmatch(kind) or not name or "\0" in name:
        return None
    return host, kind, name


class ResWorld:
    """Typed export/collect on top of a `World` (LocalWorld, the etcd one...)."""

    def __init__(self, world: World) -> None:
        """Raises WorldError for a hostname other hosts would refuse in a key
        (`parse_key`): its exports would be published and never collected."""
        if not valid_hostname(world.hostname):
            raise WorldError(
                f"the hostname {quote(world.hostname)} cannot be used in a cluster: "
                "letters, digits, '.', '_' and '-' only, starting with a letter or "
                "digit, at most 253 characters"
            )
        self.world = world
        self.hostname = world.hostname
        #: what the store holds for us, as far as we know (key -> bytes)
        self._published: dict[str, bytes] | None = None
        self._lock = asyncio.Lock()

    # -- export -------------------------------------------------------------------

    async def export(self, resources: Iterable[Resource]) -> bool:
        """Publish exactly `resources` for this host; True if anything was written.

        The first call reads what the store already holds for this host (a
        previous run's keys, not yet expired) and rewrites every key, so each
        is bound to this run's lease; later calls write only the difference.
        """
        want = {keys.exported(self.hostname, r.kind, r.name): encode(r) for r in resources}
        async with self._lock:
            if self._published is None:
                found, _ = await self.world.get_prefix(self._own_prefix())
                stale = sorted(kv.key for kv in found if kv.key not in want)
                if want or stale:
                    await self.world.commit(want, stale, lease=True)
                self._published = dict(want)
                return bool(want or stale)
            published = self._published
            puts = {k: v for k, v in want.items() if published.get(k) != v}
            gone = [k for k in published if k not in want]
            if not puts and not gone:
                return False
            await self.world.commit(puts, gone, lease=True)
            for key in gone:
                del published[key]
            published.update(puts)
            return True

    def _own_prefix(self) -> str:
        return f"{PREFIX}{self.hostname}/"

    # -- collect ------------------------------------------------------------------

    def forget(self) -> None:
        """The store lost this host's keys (a new lease): the next export rewrites all."""
        self._published = None

    # -- collect ------------------------------------------------------------------

    async def collect(self, kinds: Collection[str]) -> AsyncIterator[Snapshot]:
        """Other hosts' exports of `kinds`: a full snapshot, then one per change.

        The watch runs in a task of its own for as long as this generator
        lives (the World's iterator is only ever advanced by that one task);
        its events wait in a queue, which is what lets a burst be drained.
        """
        view = _View(self.hostname, frozenset(kinds))
        found, revision = await self.world.get_prefix(PREFIX)
        for kv in found:
            view.put(kv.key, kv.value)
        queue: asyncio.Queue[tuple[int, WatchEvent | Ended]] = asyncio.Queue()
        async with pumping(self.world.watch_prefix(PREFIX, revision), queue, 0):
            yield view.snapshot(revision)
            last_out = time.monotonic()
            while True:
                ev = _event(await queue.get())
                changed, revision = view.apply(ev), ev.revision
                now = time.monotonic()
                if now - last_out >= MIN_INTERVAL:
                    # After a quiet spell: out as soon as this burst goes quiet.
                    deadline, gap = now + BURST_MAX, QUIET
                else:
                    # Churn: hold everything until MIN_INTERVAL after the last one.
                    deadline, gap = last_out + MIN_INTERVAL, MIN_INTERVAL
                while True:
                    try:
                        item = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        wait = min(gap, deadline - time.monotonic())
                        if wait <= 0:
                            break
                        try:
                            async with asyncio.timeout(wait):
                                item = await queue.get()
                        except TimeoutError:
                            break
                    ev = _event(item)
                    changed = view.apply(ev) or changed
                    revision = ev.revision
                if changed:
                    yield view.snapshot(revision)
                    last_out = time.monotonic()


@dataclass(frozen=True, slots=True)
class Ended:
    """A pumped iterator is over: it ended (`error` None) or raised `error`."""

    error: Exception | None = None


T = TypeVar("T")


@contextlib.asynccontextmanager
async def pumping(
    it: AsyncIterator[T], queue: asyncio.Queue[tuple[int, T | Ended]], tag: int
) -> AsyncIterator[None]:
    """Iterate `it` in one task of its own for the life of the block, into `queue`.

    Each item arrives as ``(tag, item)``, and last ``(tag, Ended(error))``.
    Leaving the block cancels the task and waits for it; `it` is closed in
    that same task, so a generator's cleanup runs where it ran. This is how
    two streams are followed at once (frontends/collect.py) and how a watch
    is drained of a burst, without advancing an iterator from several tasks.
    """

    async def pump() -> None:
        try:
            async for item in it:
                await queue.put((tag, item))
            end = Ended()
        except Exception as e:  # handed to the reader, who raises it
            end = Ended(e)
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
        await queue.put((tag, end))

    task = asyncio.create_task(pump(), name=f"pump {tag}")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait({task})


def _event(item: tuple[int, WatchEvent | Ended]) -> WatchEvent:
    """The watch event in a queue item; the watch ending or failing is raised."""
    got = item[1]
    if isinstance(got, Ended):
        raise got.error or ConnectionError("the World's watch of exported resources ended")
    return got


class _View:
    """The collecting side's copy of the exports it cares about, decoded once each."""

    def __init__(self, me: str, kinds: frozenset[str]) -> None:
        self.me = me
        self.kinds = kinds
        self.raw: dict[str, bytes] = {}
        self.decoded: dict[str, Export] = {}

    def apply(self, ev: WatchEvent) -> bool:
        """Take one watch event in; True if the view changed."""
        if ev.type == "delete":
            gone = self.raw.pop(ev.key, None) is not None
            self.decoded.pop(ev.key, None)
            return gone
        return self.put(ev.key, ev.value)

    def put(self, key: str, value: bytes) -> bool:
        if not self._relevant(key) or self.raw.get(key) == value:
            return False
        self.raw[key] = value
        self.decoded[key] = _decode(key, value, self.kinds)
        return True

    def _relevant(self, key: str) -> bool:
        """Other hosts' keys of the kinds asked for, and every key we cannot parse."""
        parsed = parse_key(key)
        if parsed is None:
            # not ours to judge silently: refused, so someone hears of it
            return not key.startswith(f"{PREFIX}{self.me}/")
        host, kind, _ = parsed
        return host != self.me and kind in self.kinds

    def snapshot(self, revision: int) -> Snapshot:
        return Snapshot(tuple(self.decoded[k] for k in sorted(self.decoded)), revision)


def _decode(key: str, value: bytes, kinds: frozenset[str]) -> Export:
    parsed = parse_key(key)
    if parsed is None:
        rest = key[len(PREFIX) :] if key.startswith(PREFIX) else key
        host = rest.split("/", 1)[0]
        err = DecodeError(f"the key {quote(key)} is not an export key")
        return Export(key, host, "", rest, err)
    host, kind, name = parsed
    try:
        res = decode(value, kinds)
    except DecodeError as e:
        return Export(key, host, kind, name, e)
    if (res.kind, res.name) != (kind, name):
        err = DecodeError(f"the key names {kind}/{quote(name)} but the export is {res}")
        return Export(key, host, kind, name, err)
    return Export(key, host, kind, name, res)
