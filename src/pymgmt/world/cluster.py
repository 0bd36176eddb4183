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
a client of an existing cluster, and may be nominated to serve a member of
it: world/autocluster.py (issue 10) starts and stops the server while the
agent runs.

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

from .base import World, keys, valid_hostname

if TYPE_CHECKING:
    import asyncio
    from typing import Self

    from ..graph.model import Graph
    from ..report.events import Event
    from ..service import ServiceFn
    from .autocluster import AutoCluster, Plan, ServerSlot
    from .etcd.server import EtcdConfig
    from .etcd.tls import TlsFiles

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
#: how many etcd members a new cluster wants (mgmt's default)
DEFAULT_IDEAL_SIZE = 5


class ClusterError(Exception):
    """The cluster cannot be brought up (a port in use, a hostname taken, seeds
    unreachable): the agent exits 1 with this message, having changed nothing."""


class ClusterLost(ClusterError):
    """The running agent lost its cluster for good (its etcd server crashed and
    could not be restarted, or its hostname was taken while its lease was lost):
    the engine was stopped, the agent exits 1. A cluster that does not answer
    (a partition) is waited out instead, however long it lasts."""


def _seeds(args: Any) -> tuple[str, ...]:
    """--seeds; for an agent started by --remote, its SSH tunnel's socket (--tunnel)."""
    tunnel = getattr(args, "tunnel", None)
    return (f"unix:{tunnel}",) if tunnel else tuple(args.seeds or ())


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
    #: --ideal-cluster-size; None: not given (a new cluster gets DEFAULT_IDEAL_SIZE)
    ideal_cluster_size: int | None = None
    #: the TLS files (--tls-* or --pki); None: plain text (a warning says so once)
    tls: TlsFiles | None = None
    #: this agent reaches the cluster through an SSH tunnel (``--remote``): it
    #: keeps to its seeds, its only way in, where a client would follow the
    #: members' client URLs as the membership changes
    tunnelled: bool = False

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
        tls: TlsFiles | None = None
        if getattr(args, "pki", None) or getattr(args, "tls_ca", None):
            from .etcd.tls import TlsFiles  # only then (issue 13: a local run's start-up)

            if getattr(args, "pki", None):
                tls = TlsFiles.from_pki(Path(args.pki), hostname)
            else:
                tls = TlsFiles(Path(args.tls_ca), Path(args.tls_cert), Path(args.tls_key))
        return cls(
            hostname=hostname,
            seeds=_seeds(args),
            no_server=bool(args.no_server),
            client_urls=tuple(args.client_urls or DEFAULT_CLIENT_URLS),
            server_urls=tuple(args.server_urls or DEFAULT_SERVER_URLS),
            advertise_client_urls=args.advertise_client_urls,
            advertise_server_urls=args.advertise_server_urls,
            requested=bool(getattr(args, "cluster_flags", False)),
            timers=FAST_TIMERS if fast == "1" else DEFAULT_TIMERS,
            lease_ttl=ttl,
            ideal_cluster_size=getattr(args, "ideal_cluster_size", None),
            tls=tls,
        )


def needs_cluster(graph: Graph[Any], options: ClusterOptions) -> bool:
    """The etcd World is needed: the graph exports or collects, or a flag asks for it."""
    return bool(graph.exported or graph.export_only or graph.collect or options.requested)


# -- running services in order ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(
    fn: ServiceFn[T], *, name: str, on_failure: Callable[[Exception], None] | None = None
) -> AsyncIterator[T]:
    """Run the service `fn` for the duration of the block, then stop it and wait.

    Nesting these blocks (or entering them on one AsyncExitStack) stops the
    services in the reverse order of their start, which a single task group
    cannot promise: there, a cancel reaches every task at once, and the etcd
    server could go away while the client is still revoking its lease.

    A service failing once started is handed to `on_failure` (say, to stop
    the engine gracefully: an apply under way must not be cut in half), and
    the block goes on until its owner leaves it. Without `on_failure` the
    block is cancelled, as in a task group, and the error propagates.
    """
    import asyncio

    from ..service import start

    task: asyncio.Task[Any] | None = None

    async def run(status: Any) -> None:
        nonlocal task
        task = asyncio.current_task()
        try:
            await fn(status)
        except Exception as e:
            if on_failure is None or not status.is_started:
                raise
            log.error("%s failed: %s", name, e)
            on_failure(e)

    failed: Exception | None = None
    async with asyncio.TaskGroup() as tg:
        try:
            value = await start(tg, run, name=name)
        except Exception as e:
            # raised as itself below, not inside the task group's ExceptionGroup:
            # open_world turns a WorldError into a ClusterError (exit 1, a message)
            failed = e
        else:
            try:
                yield value
            finally:
                if task is not None:
                    task.cancel()
    if failed is not None:
        raise failed


@dataclass(frozen=True)
class Joined:
    """What `open_world` brought up: the World, and this agent's part in the clustering."""

    world: World
    #: run beside the engine (`AutoCluster.run`), then `leave` on a clean stop
    auto: AutoCluster


def server_config(options: ClusterOptions, state_dir: Path) -> EtcdConfig:
    """This host's etcd member, as the flags say (joining members get their cluster later)."""
    from .etcd.server import EtcdConfig

    heartbeat, election = options.timers
    return EtcdConfig(
        name=options.hostname,
        data_dir=state_dir / "etcd",
        listen_client_urls=options.client_urls,
        listen_peer_urls=options.server_urls,
        advertise_client_urls=options.advertise_client_urls or (),
        advertise_peer_urls=options.advertise_server_urls or (),
        heartbeat_ms=heartbeat,
        election_ms=election,
        tls=options.tls,
    )


async def open_world(
    stack: contextlib.AsyncExitStack,
    options: ClusterOptions,
    state_dir: Path,
    on_failure: Callable[[Exception], None] | None = None,
) -> Joined:
    """Bring up the etcd World on `stack`: this host's etcd (if it serves), then the client.

    How it joins is `autocluster.plan_start`'s decision: serve a new
    cluster, restart its member on its data, or be a client of the seeds
    (or of the remembered endpoints). Closing `stack` stops them in the
    reverse order. Raises ClusterError (nothing changed on the system) when
    the cluster cannot be served or reached; the message names the port,
    the hostname or the seeds. Once up, a server or client that fails for
    good is handed to `on_failure`.
    """
    from .autocluster import AutoCluster, ServerSlot, plan_start
    from .base import WorldError
    from .etcd.client import EtcdWorld

    try:
        config = server_config(options, state_dir)
        plan = await plan_start(options, state_dir, config)
        slot = ServerSlot(on_failure)
        stack.push_async_callback(slot.close)
        if plan.serve:
            plan, endpoints = await _serve(slot, config, plan, state_dir)
        else:
            endpoints = list(plan.endpoints)
        client = EtcdWorld(
            options.hostname,
            endpoints,
            lease_ttl=options.lease_ttl,
            owner=owner_token(state_dir),
            tls=options.tls,
        )
        joined = serving(client.run, name="etcd client", on_failure=on_failure)
        world: World = await stack.enter_async_context(joined)
    except WorldError as e:
        raise ClusterError(str(e)) from None
    return Joined(world, AutoCluster(options, state_dir, client, slot, config, plan))


async def _serve(
    slot: ServerSlot, config: EtcdConfig, plan: Plan, state_dir: Path
) -> tuple[Plan, list[str]]:
    """Start this host's etcd as `plan` says; the plan that holds, and the endpoints.

    A member restarting on its data (after a crash) may be removed by the
    leader while its etcd starts: the member list said it was still there
    when the plan was made, but its lease had run out. Its etcd then exits
    at once, "removed". That is the case `plan_start` handles when it sees
    the removal first: wipe the data and join again as a client (the leader
    nominates the host anew). Any other failure to start is the caller's.
    """
    from .autocluster import Plan, wipe_data
    from .base import WorldError
    from .etcd.client import grpc_target
    from .etcd.server import EtcdRemoved

    try:
        endpoints = await slot.start(config)
    except EtcdRemoved:
        if not plan.endpoints:
            raise
        log.info("cluster: this host's etcd member was removed as it restarted; joining again")
        wipe_data(state_dir)
        return Plan(serve=False, endpoints=plan.endpoints), list(plan.endpoints)
    # the other members too: if this one was removed while away, its etcd exits
    fallbacks = endpoints + [u for u in plan.endpoints if u not in endpoints]
    with contextlib.suppress(WorldError):  # several endpoints must be IP addresses
        grpc_target(fallbacks)
        endpoints = fallbacks
    return plan, endpoints


def owner_token(state_dir: Path) -> str:
    """This agent's identity across restarts, kept in its state directory.

    After a ``kill -9`` this host's key outlives it for the lease's TTL (and
    an embedded etcd restores leases when it restarts): with the same token
    the restarted agent takes its own name back instead of being refused as
    a second live host of that name.
    """
    import secrets

    path = state_dir / "cluster-owner"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        token = secrets.token_hex(16)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    with os.fdopen(fd) as f:
        return f.read().strip()


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


def _some(names: list[str], shown: int = 10) -> str:
    """The first `shown` names, then how many more: a big cluster is one line."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


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
        # A key that names no valid host is junk or forgery: never printed raw
        now = {h for h in state if valid_hostname(h)}
        joined, left = sorted(now - known), sorted(known - now)
        known.clear()
        known.update(now)
        members = f"{len(now)} host{'' if len(now) == 1 else 's'}: {_some(sorted(now))}"
        for host in joined:
            log.info("cluster: host %s %s (%s)", host, "is up" if first else "joined", members)
            emit(HostJoined(host))
        for host in left:
            log.info("cluster: host %s left (%s)", host, members or "none")
            emit(HostLeft(host))
        first = False

    await mirror_prefix(world, keys.HOSTS, changed)


__all__ = [
    "ClusterError",
    "ClusterLost",
    "ClusterOptions",
    "Joined",
    "mirror_prefix",
    "needs_cluster",
    "open_world",
    "server_config",
    "serving",
    "watch_hosts",
]
