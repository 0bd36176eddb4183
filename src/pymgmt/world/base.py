"""The World: everything outside this host that the engine may talk to.

The engine and resources reach other hosts only through this one small
interface: a key/value space with prefix watches and leases, shaped after
etcd's model so that the etcd-backed implementation (a later issue) is a
drop-in. Exported resources and per-host converged state are conventions on
top of the key space (see `keys`), not extra methods, so every World
implementation gets them for free.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import PymgmtError


class WorldError(PymgmtError):
    """The cluster could not be reached, served or joined; the message says why.

    Every subclass is a user-facing condition (a busy port, a taken
    hostname, unreachable endpoints), worded for the operator, not a bug.
    """


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A put or delete under a watched prefix, in revision order."""

    type: Literal["put", "delete"]
    key: str
    value: bytes
    revision: int


class World(Protocol):
    """What the engine needs from the cluster."""

    hostname: str

    async def put(self, key: str, value: bytes, *, lease: bool = False) -> int:
        """Store `value`; with ``lease`` it vanishes when this host goes away.

        Returns the store's revision after the write.
        """
        ...

    async def delete(self, key: str) -> int: ...

    async def commit(
        self, puts: Mapping[str, bytes], deletes: Iterable[str] = (), *, lease: bool = False
    ) -> int:
        """Write `puts` and delete `deletes` together, as one revision of the store.

        A watcher sees the whole batch at one revision, so a host publishing
        a set of keys costs every watcher one change (one graph swap), not
        one per key, and the store one commit (one fsync) instead of many.
        `lease` applies to every put. A batch larger than the store allows
        in one transaction (etcd: 128 operations by default) is written in
        several, in order; each is atomic. A key may not be both put and
        deleted (ValueError). Returns the revision after the last write.
        """
        ...

    async def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        """All keys under `prefix` and the revision they were read at."""
        ...

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Every change under `prefix` after `start_revision`, never skipping one."""
        ...

    async def close(self) -> None: ...


#: a host name as it may appear in a key: what DNS and /etc/hostname allow
HOSTNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


def valid_hostname(name: str) -> bool:
    """Whether `name` can name a host of a cluster (keys, logs, vertex names).

    A name read from the cluster that fails this is another host's junk or
    forgery: it is ignored, never printed raw.
    """
    return HOSTNAME_RE.fullmatch(name) is not None


class keys:
    """The key schema, one place for every host to agree on.

    Each family is a prefix constant (to list or watch all hosts' entries)
    plus a function for one host's key under it, so a watcher and a writer
    can never disagree on the spelling.
    """

    ROOT = "/_pymgmt/"
    #: every host's exported resources: EXPORTED + "<host>/<kind>/<name>"
    EXPORTED = ROOT + "exported/"
    #: one leased key per live host: HOSTS + "<host>"
    HOSTS = ROOT + "hosts/"
    #: one leased key per host saying whether it is converged: CONVERGED + "<host>"
    CONVERGED = ROOT + "converged/"
    # -- automatic clustering (issue 10); values are described in world/autocluster.py
    #: the number of etcd members the cluster wants: decimal ASCII, as mgmt's
    #: ``etcdctl put /_mgmt/idealClusterSize 3`` (here under /_pymgmt/)
    IDEAL_SIZE = ROOT + "idealClusterSize"
    #: one leased key per host offering to run an etcd member: VOLUNTEERS + "<host>"
    VOLUNTEERS = ROOT + "volunteers/"
    #: one key per host the leader nominated to be a member: NOMINATED + "<host>"
    NOMINATED = ROOT + "nominated/"
    #: the elected leader (the one host that nominates): created on its lease if absent
    LEADER = ROOT + "leader"
    #: the kv resource's keys (mgmt's /_mgmt/strings/): KV + "<key>", shared by all hosts
    KV = ROOT + "kv/"

    @staticmethod
    def exported(hostname: str, kind: str, name: str) -> str:
        return f"{keys.EXPORTED}{hostname}/{kind}/{name}"

    @staticmethod
    def host(hostname: str) -> str:
        return f"{keys.HOSTS}{hostname}"

    @staticmethod
    def converged(hostname: str) -> str:
        return f"{keys.CONVERGED}{hostname}"

    @staticmethod
    def volunteer(hostname: str) -> str:
        return f"{keys.VOLUNTEERS}{hostname}"

    @staticmethod
    def nominated(hostname: str) -> str:
        return f"{keys.NOMINATED}{hostname}"

    @staticmethod
    def kv(key: str) -> str:
        """The cluster key of a kv resource's `key` (which `kv_key_problem` accepted)."""
        return f"{keys.KV}{key}"


#: most bytes a kv key may have (etcd allows more; a key is a name, not data)
KV_KEY_MAX = 1024
#: bytes of a kv value: etcd refuses a request over 1.5 MiB by default (key and framing too)
KV_VALUE_MAX = 1 << 20


def kv_key_problem(key: str) -> str | None:
    """Why `key` cannot name a kv resource's key, or None.

    A user key lives under `keys.KV` and must stay a name there: path-like
    segments (``a/b``) are allowed, but no empty, ``.`` or ``..`` segment
    and no leading or trailing ``/``, so nothing reading the key space as
    paths can be walked out of the prefix, and no control character, so a
    key printed in a log or by etcdctl is the key that is stored.
    """
    if not key:
        return "must not be empty"
    if len(key.encode("utf-8", "surrogateescape")) > KV_KEY_MAX:
        return f"is longer than {KV_KEY_MAX} bytes"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "must not contain control characters (newline, tab, NUL...)"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return (
            f"must be a name or a/b/c path with no empty, '.' or '..' part "
            f"(nor a leading or trailing '/'), got {key!r}"
        )
    return None
