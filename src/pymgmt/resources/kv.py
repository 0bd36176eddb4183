"""kv: a key in the cluster's key space holds a value (mgmt's ``kv`` resource).

The key lives under its own prefix (`keys.KV`, ``/_pymgmt/kv/<key>``), so a
user's key can never overwrite the agent's own bookkeeping (exports, host
and converged keys); `kv_key_problem` refuses keys that would look like a
way out of it. Converged means the stored bytes are exactly ``value``
(UTF-8), or, with ``value`` unset, that the key does not exist (mgmt's
meaning of a nil value: delete it).

The watch is a prefix watch on the one key (`World.watch_prefix` replays
from the revision the key was read at, so no change is ever missed):
another host, or ``etcdctl put``, changing or deleting it is drift, and
it is put back at once. Keys that merely share the prefix (``a`` and
``ab``, ``a/b``) are filtered out.

Without a cluster (no cluster flag, a graph without exports) the World is
the agent's own (`world/local.py`), and the key is kept, like etcd keeps
it, in the agent's state directory (``world-keys.json``, mode 0600,
written durably before the put returns): a second one-shot run of the same
graph is converged, and a restarted agent finds the key. Only this host
sees it then. With ``--seeds`` or an embedded etcd it is the cluster's and
outlives the agent (no lease: mgmt's kv keys are not tied to a host either).

A value received over Send/Recv from a secret output (a password) is
redacted in every plan, event and log, the stored old value included.
Without a cluster it is stored in the root-only state directory, marked
secret, so a later run (even one whose graph no longer sends it) still
redacts it.

Not taken from mgmt, and why:

* ``skiplessthan``/``skipcmpstyle`` (keep a value only if it is larger):
  read-compare-write through this World is not atomic, so two hosts raising
  a counter at once could still lower it (mgmt's implementation has that
  race); done right it needs a compare-and-swap transaction the World
  Protocol does not offer. A graph that needs a monotonic value should say
  so in an issue.
* ``mapped`` (one value per host under the key): nothing in pymgmt reads
  such a per-host pool yet (mgmt's ``kvlookup`` is a language function).
* mgmt's kv sends nothing over Send/Recv, and neither does this one.

mgmt's ``key`` (the key, when it is not the name) is accepted: mgmt's own
examples name a kv ``kv1`` and set ``key: hello``. The param is called
``key_name`` here because ``key`` is the engine's word for a vertex's
(kind, name) identity; ``key:`` in a graph fills it. Two kv resources
holding one key are refused like two files with one path (`manages`),
so two names never fight over it.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import ResourceError
from ..world.base import KV_VALUE_MAX, keys, kv_key_problem
from ..world.local import LocalWorld
from .base import CONVERGED, Change, Context, Plan, Resource, param


class KeyValue(Resource, kind="kv"):
    """A key in the cluster's etcd holds ``value``, or is absent when unset.

    The name is the key (a name or an a/b/c path; ``key`` names another), stored under pymgmt's
    own prefix ``/_pymgmt/kv/``. A change by another host or by ``etcdctl`` is
    seen by a watch and repaired. Without a cluster the key is this host's,
    kept in the agent's state directory across runs.
    """

    example = """\
graph: kv
resources:
  password:
  - name: db
  kv:
  - name: app/greeting
    value: hello from pymgmt
  - name: app/db/password
edges:
- name: share-the-secret
  from: {kind: password, name: db}
  to: {kind: kv, name: app/db/password}
  send: password
  recv: value
"""

    #: a value is data for other hosts, never an argv or a path: any text is fine
    binary_params: ClassVar[frozenset[str]] = frozenset({"value"})

    value: str | None = param(None, doc="the value to store (UTF-8); unset: the key is deleted")
    key_name: str | None = param(
        None, doc="the key, when it is not the resource's name (mgmt's key)", aliases=("key",)
    )

    @property
    def full_key(self) -> str:
        return keys.kv(self.stored_as)

    @property
    def stored_as(self) -> str:
        """The key as the user spelt it: ``key``, or else the name (mgmt's default)."""
        return self.name if self.key_name is None else self.key_name

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if bad := kv_key_problem(self.stored_as):
            out.append(("name" if self.key_name is None else "key_name", bad))
        if bad := _value_problem(self._wanted()):
            out.append(("value", bad))
        return out

    def manages(self) -> list[str]:
        return [self.full_key]

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self._key = self.full_key
        if isinstance(ctx.world, LocalWorld):
            ctx.log.debug(
                "no cluster: %s is kept in this host's state directory, seen by no other host "
                "(start the agent with --seeds or another cluster flag to share it)",
                self._key,
            )

    async def watch(self, ctx: Context) -> None:
        _, revision = await ctx.world.get_prefix(self._key)
        # the watch replays everything after `revision`: ready now misses nothing
        ctx.ready()
        events = ctx.world.watch_prefix(self._key, revision)
        try:
            async for ev in events:
                if ev.key == self._key:
                    ctx.event()
        finally:
            # an etcd watch holds a stream open: close it here, not at GC
            if (aclose := getattr(events, "aclose", None)) is not None:
                await aclose()
        raise ResourceError(f"the watch on {self._key} ended: the cluster connection closed")

    async def _stored(self) -> bytes | None:
        found, _ = await self.ctx.world.get_prefix(self._key)
        return next((kv.value for kv in found if kv.key == self._key), None)

    def _wanted(self) -> bytes | None:
        return None if self.value is None else self.value.encode("utf-8", "surrogateescape")

    async def check(self) -> Plan:
        stored, wanted = await self._stored(), self._wanted()
        if stored == wanted:
            return CONVERGED
        old = None if stored is None else stored.decode("utf-8", "replace")
        return Plan((Change("value", old, self.value),))

    async def apply(self, plan: Plan) -> None:
        wanted = self._wanted()
        if bad := _value_problem(wanted):  # received over Send/Recv, after validation
            raise ResourceError(f"the value {bad}")
        if wanted is None:
            await self.ctx.world.delete(self._key)
        else:
            await self.ctx.world.put(self._key, wanted)


def _value_problem(value: bytes | None) -> str | None:
    """Why etcd would refuse `value` (only when put: said before anything runs)."""
    if value is not None and len(value) > KV_VALUE_MAX:
        return f"is longer than {KV_VALUE_MAX:,} bytes (etcd's request limit), got {len(value):,}"
    return None
