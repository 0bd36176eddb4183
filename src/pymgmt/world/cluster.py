"""Single host or cluster: which World an agent runs with, and bringing it up.

A graph that neither exports (``@@``) nor collects, run with no cluster
flag, runs exactly as before issue 9: a `LocalWorld`, no etcd, and neither
aetcd nor grpc is imported (they cost ~80 ms of start-up, components.md §9).
Anything else brings up the etcd World, each part a service with a
lifecycle (`service.start`), stopped in the reverse order of its start:

    embedded etcd server   unless --seeds (or --no-server): data under <state>/etcd
      etcd client World    session lease; this host's key under keys.HOSTS
        host watcher       a log line and a HostJoined/HostLeft event per change
        (the engine runs here, with the World)

so that on the way out the engine stops first, then the client revokes its
lease (this host's exports, converged state and host key vanish from every
other host at once), then the server stops. With ``--seeds`` the agent is
a client of an existing cluster; joining it as an etcd server member is
issue 10.

This module is imported by the CLI for every run, so it imports nothing
heavy at the top: the etcd parts are imported only when a cluster is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .base import World, keys

if TYPE_CHECKING:
    import asyncio
    from typing import Self

    from ..graph.model import Graph
    from ..report.events import Event
    from ..service import ServiceFn

log = logging.getLogger("pymgmt.cluster")

T = TypeVar("T")

#: mgmt's defaults for the embedded etcd server (cli/main.py shows them in --help)
DEFAULT_CLIENT_URLS = ("http://127.0.0.1:2379",)
DEFAULT_SERVER_URLS = ("http://127.0.0.1:2380",)
#: etcd's own raft timers (ms), and the fast ones tests and benchmarks use
#: (components.md §1: a fresh single node is healthy in ~0.1 s with them)
DEFAULT_TIMERS = (100, 1000)
FAST_TIMERS = (10, 100)
#: seconds a host's exports outlive it after a crash (a clean exit revokes at once)
DEFAULT_LEASE_TTL = 10


class ClusterError(Exception):
    """The cluster cannot be brought up (a port in use, a hostname taken, seeds
    unreachable): the agent exits 1 with this message, having changed nothing."""


@dataclass(frozen=True)
class ClusterOptions:
    """Everything the cluster flags and environment say, checked."""

    hostname: str
    #: client URLs of an existing cluster to join; empty: serve our own etcd
    seeds: tuple[str, ...] = ()
    no_server: bool = False
    client_urls: tuple[str, ...] = DEFAULT_CLIENT_URLS
    server_urls: tuple[str, ...] = DEFAULT_SERVER_URLS
    advertise_client_urls: tuple[str, ...] | None = None
    advertise_server_urls: tuple[str, ...] | None = None
    #: a cluster flag was given: bring up the etcd World even for a local graph
    requested: bool = False
    #: etcd's heartbeat interval and election timeout, in milliseconds
    timers: tuple[int, int] = DEFAULT_TIMERS
    lease_ttl: int = DEFAULT_LEASE_TTL

    @property
    def serves(self) -> bool:
        """This agent runs the embedded etcd server."""
        return not self.seeds and not self.no_server

    @classmethod
    def from_args(cls, args: Any, hostname: str, env: Mapping[str, str] = os.environ) -> Self:
        """From the parsed `run` flags (cli/main.py) and the environment.

        ``PYMGMT_ETCD_FAST=1`` gives etcd the fast raft timers (tests,
        benchmarks); ``PYMGMT_LEASE_TTL=N`` the lease's TTL in whole seconds.
        Raises ClusterError naming the variable when one is malformed.
        """
        fast = env.get("PYMGMT_ETCD_FAST", "")
        if fast not in ("", "0", "1"):
            raise ClusterError(f"PYMGMT_ETCD_FAST: expected 0 or 1, got {fast!r}")
        ttl_text = env.get("PYMGMT_LEASE_TTL", "")
        ttl = DEFAULT_LEASE_TTL
        if ttl_text:
            try:
                ttl = int(ttl_text)
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= 3600:
                raise ClusterError(
                    f"PYMGMT_LEASE_TTL: expected whole seconds from 1 to 3600, got {ttl_text!r}"
                )
        return cls(
            hostname=hostname,
            seeds=tuple(args.seeds or ()),
            no_server=bool(args.no_server),
            client_urls=tuple(args.client_urls or DEFAULT_CLIENT_URLS),
            server_urls=tuple(args.server_urls or DEFAULT_SERVER_URLS),
            advertise_client_urls=args.advertise_client_urls,
            advertise_server_urls=args.advertise_server_urls,
            requested=bool(getattr(args, "cluster_flags", False)),
            timers=FAST_TIMERS if fast == "1" else DEFAULT_TIMERS,
            lease_ttl=ttl,
        )


def needs_cluster(graph: Graph[Any], options: ClusterOptions) -> bool:
    """The etcd World is needed: the graph exports or collects, or a flag asks for it."""
    return bool(graph.exported or graph.collect or options.requested)


# -- running services in order ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(fn: ServiceFn[T], *, name: str) -> AsyncIterator[T]:
    """Run the service `fn` for the duration of the block, then stop it and wait.

    Nesting these blocks (or entering them on one AsyncExitStack) stops the
    services in the reverse order of their start, which a single task group
    cannot promise: there, a cancel reaches every task at once, and the etcd
    server could go away while the client is still revoking its lease.
    A service failing while the block runs cancels the block, as in a task
    group, and its error propagates.
    """
    import asyncio

    from ..service import start

    task: asyncio.Task[Any] | None = None

    async def run(status: Any) -> None:
        nonlocal task
        task = asyncio.current_task()
        await fn(status)

    async with asyncio.TaskGroup() as tg:
        value = await start(tg, run, name=name)
        try:
            yield value
        finally:
            if task is not None:
                task.cancel()


async def open_world(
    stack: contextlib.AsyncExitStack, options: ClusterOptions, state_dir: Path
) -> World:
    """Bring up the etcd World on `stack`: the server (unless a client), then the client.

    Closing `stack` stops them in the reverse order. Raises ClusterError
    (nothing changed on the system) when the cluster cannot be reached or
    served; what failed names the port, host or seeds.
    """
    from .etcd.client import EtcdWorld  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from .etcd.server import EtcdServer  # type: ignore[import-untyped,import-not-found,unused-ignore]

    if options.serves:
        heartbeat, election = options.timers
        server = EtcdServer(
            name=options.hostname,
            data_dir=state_dir / "etcd",
            client_urls=list(options.client_urls),
            peer_urls=list(options.server_urls),
            advertise_client_urls=list(options.advertise_client_urls or options.client_urls),
            advertise_peer_urls=list(options.advertise_server_urls or options.server_urls),
            heartbeat_ms=heartbeat,
            election_ms=election,
        )
        endpoints: list[str] = list(
            await stack.enter_async_context(serving(server.run, name="etcd server"))
        )
    else:
        endpoints = list(options.seeds)
    client = EtcdWorld(endpoints, hostname=options.hostname, lease_ttl=options.lease_ttl)
    world: World = await stack.enter_async_context(serving(client.run, name="etcd client"))
    return world


# -- following a prefix, and the hosts of the cluster ----------------------------------------


async def mirror_prefix(
    world: World, prefix: str, on_change: Callable[[dict[str, bytes]], None]
) -> None:
    """Keep a copy of every key under `prefix` (names without the prefix) up to date.

    `on_change` is called with the whole copy after the first read and
    after every change; it must not keep the dict (it changes in place).
    Runs until cancelled. The World's watch never skips an event, so the
    copy equals the store as of the last event delivered.
    """
    kvs, revision = await world.get_prefix(prefix)
    state = {kv.key[len(prefix) :]: kv.value for kv in kvs}
    on_change(state)
    async for ev in world.watch_prefix(prefix, revision):
        name = ev.key[len(prefix) :]
        if ev.type == "put":
            state[name] = ev.value
        else:
            state.pop(name, None)
        on_change(state)


async def watch_hosts(world: World, emit: Callable[[Event], None]) -> None:
    """Log a line and emit HostJoined/HostLeft for each host joining or leaving.

    The hosts present at start are reported as joined (this one too), so a
    reader of the JSON stream sees the whole membership. Runs until cancelled.
    """
    from ..report.events import HostJoined, HostLeft

    known: set[str] = set()
    first = True

    def changed(state: dict[str, bytes]) -> None:
        nonlocal first
        now = {h for h in state if h and "/" not in h}
        joined, left = sorted(now - known), sorted(known - now)
        known.clear()
        known.update(now)
        members = ", ".join(sorted(now)) or "none"
        for host in joined:
            if first:
                log.info("cluster: host %s is up (%d hosts: %s)", host, len(now), members)
            else:
                log.info("cluster: host %s joined (%d hosts: %s)", host, len(now), members)
            emit(HostJoined(host))
        for host in left:
            log.info("cluster: host %s left (%d hosts: %s)", host, len(now), members)
            emit(HostLeft(host))
        first = False

    await mirror_prefix(world, keys.HOSTS, changed)


__all__ = [
    "ClusterError",
    "ClusterOptions",
    "mirror_prefix",
    "needs_cluster",
    "open_world",
    "serving",
    "watch_hosts",
]
