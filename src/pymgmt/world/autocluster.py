"""Automatic clustering (issue 10): hosts volunteer, the leader nominates, etcd grows and shrinks.

After mgmt's "elastic etcd" (research/mgmt-reference.md §f), without its
known bugs. Every agent runs one `AutoCluster` beside its engine:

* **Volunteer.** An agent that may serve puts ``volunteers/<me>`` = JSON
  ``{"peer_urls": [...], "client_urls": [...]}`` on its session lease (it
  vanishes when the agent dies: that is how death is noticed). The first
  agent (no ``--seeds``) always may; one with ``--seeds`` only when given
  its own ``--server-urls`` (or ``--advertise-server-urls``): the default
  127.0.0.1:2380 would clash between the hosts of one machine and cannot
  be reached from another. ``--no-server`` never volunteers.
* **Leader.** Voting members campaign for ``leader`` with etcd's election
  recipe (create the key on one's lease if absent; raft orders the
  creations; the key lives until its lease ends, so a dead leader's
  successor takes over within the lease TTL). The leader runs the pure
  `chooser.choose` on every change of the volunteers, nominations or
  ``idealClusterSize`` and on a ~1 s member-list poll, and makes its one
  change: remove a gone member, promote a started learner, nominate a
  volunteer (MemberAdd as a **learner**, then ``nominated/<h>``), or
  remove a member to shrink. etcd's refusals ("unhealthy cluster" for ~5 s
  after a change, "not in sync", "too many learners") are retried with
  back-off, never fatal; each action is bounded in time and re-decided.
* **Nominee.** A volunteer that sees ``nominated/<me>`` and a member with
  its peer URLs in the member list starts its etcd on an empty data dir
  with ``--initial-cluster-state existing`` and the started members as its
  initial cluster, and reports RoleChanged("server").
* **Removed.** A member removed from the cluster (shrink, or removed while
  it was dead or cut off) sees its etcd exit by itself (the supervisor
  reads etcd's log: `EtcdRemoved`) or finds itself missing from the member
  list; it stops its server, wipes its data dir (etcd will not start on
  it again) and stays a client, still volunteering. The engine and the
  graph run on through every role change.
* **Endpoints.** Every agent follows the voting members' client URLs
  (its own first) with `EtcdWorld.set_endpoints`, and remembers them in
  ``<state>/cluster-endpoints`` (written atomically), so a host restarted
  without ``--seeds`` finds the cluster again.
* **Leaving.** A clean stop withdraws the host from the volunteers first
  (so the leader never nominates a host that is going away), then a member
  removes itself from the cluster when other voting members remain (a
  2-member cluster never loses its quorum to a clean stop) and wipes its
  data; the sole member keeps its data and restarts on it.
* **Untrusted values.** Volunteers' and nominations' URLs are used only
  when they are ``http(s)://IP:PORT`` (`members.valid_url`); an
  ``idealClusterSize`` that is not a whole number from 1 is refused with a
  warning (the last good value, or the default, stays); junk is never
  passed to etcd, and nothing etcd answers ends the agent.
* **Start-up** (`plan_start`): with a data dir, the seeds (or the
  remembered endpoints) are asked whether this host is still a member: yes
  (or nobody answers): etcd restarts on its data; no: the data is wiped and
  the host joins as a client. Without a data dir: a client of the seeds or
  of the remembered endpoints; with neither, a new one-member cluster.

Failure modes handled: a member's kill -9 (removed after its lease
expires and `GRACE`, replaced by a volunteer; quorum kept where the
remaining members have it); the leader's death (another member takes the
key when its lease expires); a restart with the same name and state dir
(cleanly or after kill -9, member or client: no stale member entry, no
port left bound); five agents started at once (only the seeded one serves
a new cluster; the others join it, and the leader adds one learner at a
time); a nominee that cannot start its etcd (it withdraws, the leader
removes its learner, it volunteers again after a back-off); a learner
that never starts (removed after `START_TIMEOUT`).

Not handled: losing the quorum (2 of 3 members dead at once, or 1 of 2):
etcd cannot change its membership then, and nothing here can; the
operator restores the dead members or rebuilds the cluster. Two
clusters started apart (two agents without seeds) never merge. A member
that keeps a quorum-critical data dir on a disk that died is not
recovered. A host whose state dir is lost while it is still listed as a
member is seen as gone only when its old lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import chooser
from .base import WorldError, keys, valid_hostname
from .etcd import members as ops
from .etcd.members import Member, same_urls, valid_url
from .etcd.server import EtcdConfig, EtcdRemoved, EtcdServer

if TYPE_CHECKING:
    from ..report.events import Event
    from .cluster import ClusterOptions
    from .etcd.client import EtcdWorld

log = logging.getLogger("pymgmt.cluster")

#: the file in the state dir that remembers the cluster's client URLs
ENDPOINTS_FILE = "cluster-endpoints"
#: seconds between two reads of the member list
POLL = 1.0
#: ... while a change is under way (a learner in the list, or this host nominated):
#: the leader promotes a learner as soon as it started, the nominee finds its learner
FAST_POLL = 0.1
#: seconds a member's host may lack its volunteer key before the leader removes it.
#: The lease TTL is the detection delay already (the key rides on the host's lease);
#: this only absorbs the order in which the leader reads the member list and the
#: volunteers' watch, and a restarted host putting its key back. A host that comes
#: back later than this is handled too: it finds itself removed and joins again.
GRACE = 1.0
#: seconds a host whose learner never started is passed over when nominating
#: (say, a forged or unreachable volunteer), so the others get their turn
PASS_OVER = 60.0
#: seconds a learner may stay unstarted before the leader removes it
START_TIMEOUT = 30.0
#: seconds one membership action may take before it is given up and re-decided
ACTION_TIMEOUT = 15.0
#: seconds a clean stop may spend removing this member from the cluster
LEAVE_TIMEOUT = 15.0
#: seconds a clean stop may spend reading the member list afresh
FRESH_TIMEOUT = 3.0
#: the longest pause between two tries of a membership change etcd refused
RETRY_CAP = 0.5


# -- the state dir ---------------------------------------------------------------------------


def data_dir(state_dir: Path) -> Path:
    return state_dir / "etcd"


def has_data(state_dir: Path) -> bool:
    """etcd keeps its member's data in <data dir>/member."""
    return (data_dir(state_dir) / "member").is_dir()


def wipe_data(state_dir: Path) -> None:
    """Delete the etcd data dir of a removed member (etcd will not start on it again).

    Only a real directory is removed (rmtree does not follow symlinks
    inside it, and a symlink in its place is refused, not followed).
    """
    path = data_dir(state_dir)
    # the state dir is opened once; "etcd" is then looked at and removed relative
    # to it, so a symlink swapped in for either is never followed (rmtree refuses one)
    try:
        parent = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as e:
        raise WorldError(f"cannot open {state_dir}: {e.strerror}") from None
    try:
        try:
            st = os.lstat(path.name, dir_fd=parent)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            raise WorldError(f"{path} is not a directory; not removing it")
        try:
            shutil.rmtree(path.name, dir_fd=parent)
        except OSError as e:
            raise WorldError(f"cannot remove {path}: {e.strerror or e}") from None
    finally:
        os.close(parent)
    log.info("cluster: removed the data of this host's former etcd member (%s)", path)


def read_endpoints(state_dir: Path) -> list[str]:
    """The client URLs remembered from the last run ([] if none or unreadable)."""
    try:
        fd = os.open(state_dir / ENDPOINTS_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        with os.fdopen(fd) as f:
            urls = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(urls, list) or not all(valid_url(u) for u in urls):
        return []
    return urls


def write_endpoints(state_dir: Path, urls: Sequence[str]) -> None:
    """Remember `urls` atomically (a temporary file renamed over the old one)."""
    path = state_dir / ENDPOINTS_FILE
    tmp = state_dir / f".{ENDPOINTS_FILE}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(list(urls), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- the server, started and stopped on demand -------------------------------------------------


class ServerSlot:
    """At most one etcd server of this host, started and stopped while the agent runs.

    Its `close` goes on the exit stack before the client World, so on the
    way out it stops last: the client revokes its lease through it first.
    """

    def __init__(self, on_failure: Callable[[Exception], None] | None = None) -> None:
        self.on_failure = on_failure
        self.server: EtcdServer | None = None
        #: set when the running server exited because its member was removed
        self.removed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, config: EtcdConfig) -> list[str]:
        """Start etcd with `config`; its client URLs once healthy. Raises if it cannot start.

        The server runs in a task of its own until `stop` (or `close`); a
        failure after it started goes to `on_failure`, a removal sets `removed`.
        """
        from ..service import ServiceExited, TaskStatus

        await self.stop()
        server = EtcdServer(config)
        self.removed.clear()
        status: TaskStatus[list[str]] = TaskStatus()

        async def body() -> None:
            try:
                await server.run(status)
            except EtcdRemoved:
                if not status.is_started:
                    raise
                self.removed.set()
            except Exception as e:
                if not status.is_started or self.on_failure is None:
                    raise
                log.error("etcd server failed: %s", e)
                self.on_failure(e)

        task = asyncio.create_task(body(), name="etcd server")
        self._task = task
        waits: list[asyncio.Future[Any]] = [status._ready, task]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self.stop()
            raise
        if status.is_started:
            self.server = server
            return status._ready.result()
        self._task = None
        await task  # raises why it could not start
        raise ServiceExited("etcd server exited before it was ready")

    async def stop(self) -> None:
        """Stop the running server (if any) and wait until it is gone."""
        task, self._task = self._task, None
        self.server = None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    async def close(self) -> None:
        await self.stop()


# -- start-up ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How this agent starts: serve etcd (new cluster, or restart on its data) or a client."""

    serve: bool
    #: a client's endpoints; a restarted member's fallbacks after its own URLs
    endpoints: tuple[str, ...] = ()
    #: it makes a new one-member cluster (creates idealClusterSize)
    new_cluster: bool = False


def volunteers(options: ClusterOptions) -> bool:
    """Whether this agent offers to run an etcd member (see the module docstring)."""
    from .cluster import DEFAULT_SERVER_URLS

    if options.no_server:
        return False
    if not options.seeds:
        return True
    return options.server_urls != DEFAULT_SERVER_URLS or bool(options.advertise_server_urls)


def is_me(member: Member, name: str, config: EtcdConfig) -> bool:
    """This host's member: by its name once started, by its peer URLs before.

    (Peer URLs alone could be another machine's default 127.0.0.1:2380.)
    """
    if member.started:
        return member.name == name
    return same_urls(member.peer_urls, config.peer_urls)


async def plan_start(options: ClusterOptions, state_dir: Path, config: EtcdConfig) -> Plan:
    """Decide, before anything runs, how this agent joins (see the module docstring)."""
    from .cluster import ClusterError

    if options.no_server:
        return Plan(serve=False, endpoints=options.seeds)
    own = set(config.client_urls)
    remembered = [u for u in read_endpoints(state_dir) if u not in own]
    ask = list(options.seeds) or remembered
    if has_data(state_dir):
        if not ask:
            return Plan(serve=True)
        listed = await ops.ask(ask, tls=options.tls)
        if listed is None:
            log.info("cluster: nobody answers at %s; restarting etcd on its data", ",".join(ask))
            return Plan(serve=True, endpoints=tuple(ask))
        if any(is_me(m, options.hostname, config) for m in listed):
            return Plan(serve=True, endpoints=tuple(ask))
        log.info("cluster: this host's etcd member was removed while it was away")
        wipe_data(state_dir)
        return Plan(serve=False, endpoints=tuple(ask))
    if options.seeds:
        return Plan(serve=False, endpoints=options.seeds)
    if remembered:
        if await ops.ask(remembered, tls=options.tls) is not None:
            return Plan(serve=False, endpoints=tuple(remembered))
        raise ClusterError(
            f"this host was part of the cluster at {', '.join(remembered)} (remembered in "
            f"{state_dir / ENDPOINTS_FILE}), which does not answer: start it with --seeds, "
            "or remove that file to start a new cluster"
        )
    return Plan(serve=True, new_cluster=True)


# -- the agent's part --------------------------------------------------------------------------


def parse_urls(raw: bytes, field: str) -> tuple[str, ...]:
    """The URLs in a volunteer's or nomination's JSON; () for junk.

    Written by other hosts (or anyone with etcdctl): every URL must be
    ``http(s)://IP:PORT`` (`valid_url`), else none is taken.
    """
    try:
        value = json.loads(raw).get(field)
    except (ValueError, AttributeError, RecursionError):
        return ()
    if not isinstance(value, list) or not value or not all(valid_url(u) for u in value):
        return ()
    return tuple(value)


def parse_ideal(raw: bytes) -> int | None:
    """``idealClusterSize`` as written: a whole number from 1 in decimal ASCII; None if not."""
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if not text.isdigit() or len(text) > 6:  # ASCII digits only (decoded as ASCII)
        return None
    value = int(text)
    return value if value >= 1 else None


class Changes:
    """A count of changes that several tasks wait on, each for one newer than it saw.

    Each waiter keeps the version it last acted on, so a change reaches
    every waiter (one shared Event, cleared by the first waiter to wake,
    hid it from the others: a nominee noticed its nomination only at the
    next poll).
    """

    def __init__(self) -> None:
        self.version = 0
        self._waiters: list[asyncio.Future[None]] = []

    def bump(self) -> None:
        self.version += 1
        waiters, self._waiters = self._waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    async def wait(self, seen: int, timeout: float | None = None) -> int:
        """The version once it is not `seen` (at once if so already), or after `timeout` s."""
        if self.version != seen:
            return self.version
        f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(f)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await f
        finally:
            f.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(f)
        return self.version


class AutoCluster:
    """This agent's part in the automatic clustering; `run` until cancelled, then `leave`."""

    def __init__(
        self,
        options: ClusterOptions,
        state_dir: Path,
        world: EtcdWorld,
        slot: ServerSlot,
        config: EtcdConfig,
        plan: Plan,
    ) -> None:
        self.options = options
        self.me = options.hostname
        self.state_dir = state_dir
        self.world = world
        self.slot = slot
        self.config = config
        self.plan = plan
        self.volunteering = volunteers(options)
        #: where events go (the engine's emit, bound once the engine exists)
        self.emit: Callable[[Event], None] = lambda event: None
        self.role: Literal["server", "client"] = "server" if slot.serving else "client"
        self.volunteers: dict[str, tuple[str, ...]] = {}
        self.nominated: dict[str, tuple[str, ...]] = {}
        self.ideal: int | None = None
        self.leader = ""
        self.members: list[Member] = []
        self._voting: set[str] | None = None
        #: host -> why the leader (this agent) removed its member, for MemberLeft
        self._reasons: dict[str, str] = {}
        #: bumped on every change of what this agent knows (keys, member list, role)
        self._changes = Changes()
        #: the idealClusterSize key exists (whatever it holds)
        self._ideal_written = False
        #: (host, value) pairs already warned about, so junk is logged once
        self._warned: set[tuple[str, bytes]] = set()
        self._refreshing = asyncio.Lock()
        self._absent: dict[int, float] = {}
        self._unstarted: dict[int, float] = {}
        #: host -> until when it is passed over (its learner never started)
        self._passed_over: dict[str, float] = {}

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Mirror the cluster's keys, follow the members, volunteer, campaign; until cancelled."""
        from ..report.events import RoleChanged
        from .cluster import DEFAULT_IDEAL_SIZE

        # the role this host starts in, so a reader of the stream knows it from the outset
        log.info(
            "cluster: this host %s",
            "serves an etcd member" if self.role == "server" else "is a client of the cluster",
        )
        self.emit(RoleChanged(self.role))
        if self.plan.new_cluster:
            size = self.options.ideal_cluster_size or DEFAULT_IDEAL_SIZE
            await self._create(keys.IDEAL_SIZE, str(size).encode())
        await self._refresh_members()
        if self.role == "client":
            await self._drop_stale_entry()
        try:
            await self._run_tasks()
        except* WorldError as eg:
            # a World that failed for good (its name taken): the caller's to handle, bare
            raise eg.exceptions[0] from None

    async def _run_tasks(self) -> None:
        from .cluster import mirror_prefix

        async with asyncio.TaskGroup() as tg:
            tg.create_task(mirror_prefix(self.world, keys.VOLUNTEERS, self._on_volunteers))
            tg.create_task(mirror_prefix(self.world, keys.NOMINATED, self._on_nominated))
            tg.create_task(mirror_prefix(self.world, keys.IDEAL_SIZE, self._on_ideal))
            tg.create_task(mirror_prefix(self.world, keys.LEADER, self._on_leader))
            tg.create_task(self._poll())
            tg.create_task(self._on_removed())
            tg.create_task(self._campaign())
            if self.volunteering:
                tg.create_task(self._volunteer())
            elif not self.options.no_server:
                log.info(
                    "cluster: not volunteering to run an etcd member: give this host its own "
                    "--server-urls (and --client-urls) that the other hosts can reach "
                    "(the default %s serves nobody else)",
                    ",".join(self.config.peer_urls),
                )

    async def _create(self, key: str, value: bytes) -> None:
        kvs, _ = await self.world.get_prefix(key)
        if not any(kv.key == key for kv in kvs):
            await self.world.put(key, value)

    def _peer_urls(self, where: str, state: dict[str, bytes]) -> dict[str, tuple[str, ...]]:
        """host -> its peer URLs from a mirrored prefix; junk kept as () and warned about once."""
        out = {}
        for host, raw in state.items():
            if not valid_hostname(host):
                continue
            out[host] = urls = parse_urls(raw, "peer_urls")
            if not urls and (host, raw) not in self._warned:
                self._warned.add((host, raw))
                log.warning(
                    "cluster: %s%s holds no usable peer URLs (each must be http(s)://IP:PORT); "
                    "ignored",
                    where,
                    host,
                )
        return out

    def _on_volunteers(self, state: dict[str, bytes]) -> None:
        self.volunteers = self._peer_urls(keys.VOLUNTEERS, state)
        self._changes.bump()

    def _on_nominated(self, state: dict[str, bytes]) -> None:
        self.nominated = self._peer_urls(keys.NOMINATED, state)
        self._changes.bump()

    def _on_ideal(self, state: dict[str, bytes]) -> None:
        from .cluster import DEFAULT_IDEAL_SIZE

        raw = state.get("")
        self._ideal_written = raw is not None
        if raw is None:
            self._changes.bump()  # the leader writes it again
            return
        ideal = parse_ideal(raw)
        if ideal is None:
            kept = self.ideal if self.ideal is not None else DEFAULT_IDEAL_SIZE
            log.warning(
                "cluster: %s holds %r, not a whole number from 1; refused, the cluster "
                "keeps %d members",
                keys.IDEAL_SIZE,
                raw[:40],
                kept,
            )
            self.ideal = kept
        elif ideal != self.ideal:
            log.info("cluster: the ideal cluster size is %d", ideal)
            self.ideal = ideal
        self._changes.bump()

    def _on_leader(self, state: dict[str, bytes]) -> None:
        from ..report.events import LeaderChanged

        raw = state.get("", b"")
        leader = (
            raw.decode(errors="replace") if valid_hostname(raw.decode(errors="replace")) else ""
        )
        if leader != self.leader:
            self.leader = leader
            if leader:
                log.info("cluster: %s is the leader", leader)
            else:
                log.info("cluster: no leader (the last one left); electing one")
            self.emit(LeaderChanged(leader))
        self._changes.bump()

    # -- the member list ----------------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval())
            await self._refresh_members()

    def _poll_interval(self) -> float:
        """`FAST_POLL` for the leader while a learner is in the list, and for a
        nominee that does not serve yet; `POLL` otherwise."""
        learner = any(m.is_learner for m in self.members)
        nominee = self.me in self.nominated and not self.slot.serving
        return FAST_POLL if (learner and self.leader == self.me) or nominee else POLL

    async def _refresh_members(self) -> None:
        """Read the member list; follow it with the endpoints; report changes."""
        async with self._refreshing:
            await self._refresh_members_locked()

    async def _refresh_members_locked(self) -> None:
        try:
            async with asyncio.timeout(ACTION_TIMEOUT):
                listed = await ops.member_list(self.world)
        except (WorldError, TimeoutError) as e:
            log.debug("cluster: cannot read the member list: %s", e)
            return
        if listed != self.members:
            self.members = listed
            self._changes.bump()
        voting = [m for m in listed if m.started and not m.is_learner]
        self._report(voting)
        if self.role == "server" and self.slot.serving:
            mine = [m for m in listed if is_me(m, self.me, self.config)]
            if not mine:
                log.warning("cluster: this host's etcd is no longer in the member list")
                self.slot.removed.set()
        urls = self._endpoints(voting)
        if urls and not self.options.tunnelled:
            try:
                await self.world.set_endpoints(urls)
            except WorldError as e:
                log.debug("cluster: cannot follow the members' URLs %s: %s", urls, e)
            if list(urls) != read_endpoints(self.state_dir):
                with contextlib.suppress(OSError):
                    write_endpoints(self.state_dir, urls)

    def _endpoints(self, voting: Sequence[Member]) -> list[str]:
        """The voting members' client URLs, this host's own first when it serves."""
        own: list[str] = []
        others: list[str] = []
        for m in sorted(voting, key=lambda m: m.name):
            urls = [u for u in m.client_urls if valid_url(u)]
            if m.name == self.me and self.slot.serving:
                own += urls
            elif m.name != self.me:
                others += urls
        return list(dict.fromkeys(own + others))

    def _report(self, voting: Sequence[Member]) -> None:
        from ..report.events import MemberJoined, MemberLeft

        now = {m.name for m in voting if valid_hostname(m.name)}
        before = self._voting
        self._voting = now
        if before is None:
            log.info("cluster: etcd members: %s", ", ".join(sorted(now)) or "none")
            for host in sorted(now):
                self.emit(MemberJoined(host))
            return
        for host in sorted(now - before):
            log.info("cluster: %s joined the etcd members (%d now)", host, len(now))
            self.emit(MemberJoined(host))
        for host in sorted(before - now):
            reason = self._reasons.pop(host, "removed from the cluster")
            log.info("cluster: %s left the etcd members: %s (%d now)", host, reason, len(now))
            self.emit(MemberLeft(host, reason))

    async def _drop_stale_entry(self) -> None:
        """A client listed as a started member is a stale entry of its own past: remove it.

        (Its data dir is gone, so that member can never start again.)
        """
        for m in self.members:
            if m.started and is_me(m, self.me, self.config):
                log.info("cluster: removing this host's stale etcd member %x", m.id)
                with contextlib.suppress(WorldError, TimeoutError):
                    async with asyncio.timeout(ACTION_TIMEOUT):
                        await self._retrying(functools.partial(ops.remove, self.world, m.id))

    async def _retrying(self, fn: Callable[[], Any]) -> None:
        """Run `fn` until etcd accepts it (refusals retried with back-off).

        The back-off stays short (≤ `RETRY_CAP`): etcd refuses some changes
        for ~5 s after the last one, and is asked again soon after it would.
        """
        delay = 0.05
        while True:
            try:
                await fn()
                return
            except ops.MemberRefused as e:
                log.debug("cluster: etcd refused (%s); retrying in %.2f s", e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP)

    # -- volunteering and being nominated ------------------------------------------------

    def _volunteer_value(self) -> bytes:
        return json.dumps(
            {
                "peer_urls": list(self.config.peer_urls),
                "client_urls": list(self.config.client_urls),
            },
            sort_keys=True,
        ).encode()

    async def _volunteer(self) -> None:
        """Offer to serve; start etcd when nominated; withdraw a while if it cannot start."""
        from ..service import ServiceExited

        backoff = 5.0
        key = keys.volunteer(self.me)
        await self.world.put(key, self._volunteer_value(), lease=True)
        seen = -1
        while True:
            seen = await self._changes.wait(seen)
            if self.role == "server" or self.slot.serving or self.me not in self.nominated:
                continue
            mine = [m for m in self.members if same_urls(m.peer_urls, self.config.peer_urls)]
            if not mine:
                # the leader adds the learner before it nominates: read the list now,
                # not at the next poll
                await self._refresh_members()
                mine = [m for m in self.members if same_urls(m.peer_urls, self.config.peer_urls)]
            if not mine or mine[0].started:
                continue
            try:
                await self._join()
            except (WorldError, ServiceExited, OSError) as e:
                log.error(
                    "cluster: nominated, but this host's etcd cannot start: %s; "
                    "withdrawing for %g s",
                    e,
                    backoff,
                )
                await self.world.delete(key)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                await self.world.put(key, self._volunteer_value(), lease=True)

    async def _join(self) -> None:
        """Start this host's etcd as the learner the leader added for it."""
        from ..report.events import RoleChanged

        started = [m for m in self.members if m.started and valid_hostname(m.name)]
        cluster = [f"{m.name}={u}" for m in started for u in m.peer_urls if valid_url(u)]
        cluster += [f"{self.me}={u}" for u in self.config.peer_urls]
        wipe_data(self.state_dir)  # a joining member starts empty
        config = replace(self.config, initial_cluster=",".join(cluster), cluster_state="existing")
        log.info("cluster: nominated; starting etcd to join %d member(s)", len(started))
        await self.slot.start(config)
        self.role = "server"
        log.info("cluster: this host now serves an etcd member")
        self.emit(RoleChanged("server"))
        await self._refresh_members()

    async def _on_removed(self) -> None:
        """This host's member was removed: stop its etcd, wipe its data, stay a client."""
        from ..report.events import RoleChanged

        while True:
            await self.slot.removed.wait()
            self.slot.removed.clear()
            others = [m for m in self.members if m.started and not is_me(m, self.me, self.config)]
            urls = [u for m in others for u in m.client_urls if valid_url(u)]
            if urls:
                with contextlib.suppress(WorldError):
                    await self.world.set_endpoints(urls)
            await self.slot.stop()
            with contextlib.suppress(WorldError):
                await self.world.delete_leased(keys.LEADER)
            try:
                wipe_data(self.state_dir)
            except WorldError as e:
                # etcd will refuse this data dir: joining again fails (and is retried)
                log.error("cluster: %s", e)
            if self.role != "client":
                self.role = "client"
                log.info("cluster: this host's etcd member was removed; it is a client now")
                self.emit(RoleChanged("client"))
            self._changes.bump()

    # -- the leader -----------------------------------------------------------------------

    def _voting_member(self) -> bool:
        return self.role == "server" and any(
            m.name == self.me and not m.is_learner for m in self.members
        )

    async def _campaign(self) -> None:
        """Voting members try to take the leader key; the holder leads until it is gone.

        The leader mirror may deliver a read taken before this host created
        the key (an empty one) after the create: leading stops on it, and
        resumes here when the mirror catches up and shows this host again.
        Otherwise the key would say this host leads while nothing does.
        """
        from ..report.events import LeaderChanged

        seen = -1
        while True:
            seen = await self._changes.wait(seen)
            if not self._voting_member():
                continue
            if self.leader == self.me:
                await self._lead()
                continue
            if self.leader:
                continue
            if await self.world.create_leased(keys.LEADER, self.me.encode()):
                log.info("cluster: this host is the leader now")
                if self.leader != self.me:
                    self.leader = self.me
                    self.emit(LeaderChanged(self.me))
                await self._lead()

    async def _lead(self) -> None:
        """Decide and make one change at a time while this host holds the leader key.

        One action per change: after an action the leader waits until what
        it knows shows the action's effect (or `POLL` passes), and an
        action decided again on the same knowledge is not made again until
        something changes; a repeated action is logged once.
        """
        from .cluster import DEFAULT_IDEAL_SIZE

        delay = 0.2
        last: chooser.Action | None = None
        #: the version of what the leader knew when it last acted
        acted_at = -1
        while self.leader == self.me and self._voting_member():
            if not self._ideal_written:
                size = self.options.ideal_cluster_size or DEFAULT_IDEAL_SIZE
                with contextlib.suppress(WorldError):
                    await self._create(keys.IDEAL_SIZE, str(size).encode())
            version = self._changes.version
            action = chooser.choose(self._view())
            if action is None or (action == last and version == acted_at):
                if action is None:
                    last = None
                # a timeout re-decides: a gone member's grace or a start timeout runs out
                await self._changes.wait(version, timeout=self._decide_again_in())
                continue
            if action == last:
                log.debug("cluster: again: %s", _describe(action))
            else:
                log.info("cluster: %s", _describe(action))
            last, acted_at = action, version
            acted = False
            try:
                async with asyncio.timeout(ACTION_TIMEOUT):
                    acted = await self._act(action)
                delay = 0.2
            except (WorldError, TimeoutError) as e:
                log.warning(
                    "cluster: %s did not go through (%s); deciding again in %.1f s",
                    _describe(action),
                    str(e) or "it took too long",
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                last = None
            await self._refresh_members()
            if acted:
                await self._until_seen(action)
        if self.role != "server":
            with contextlib.suppress(WorldError):
                await self.world.delete_leased(keys.LEADER)

    def _decide_again_in(self) -> float:
        """Seconds until the leader decides again if nothing changes: the next poll, or
        sooner when a gone member's grace runs out."""
        now = time.monotonic()
        ends = [since + GRACE - now for since in self._absent.values()]
        return max(FAST_POLL, min([self._poll_interval(), *ends]))

    def _seen(self, action: chooser.Action) -> bool:
        """What this agent knows shows `action`'s effect."""
        ids = {m.id: m for m in self.members}
        match action:
            case chooser.Remove(member_id, host, _):
                return member_id not in ids and host not in self.nominated
            case chooser.Promote(member_id, _):
                return member_id not in ids or not ids[member_id].is_learner
            case chooser.Nominate(host, peer_urls, _):
                listed = any(same_urls(m.peer_urls, peer_urls) for m in self.members)
                return listed and host in self.nominated
            case chooser.Unnominate(host):
                return host not in self.nominated
        raise AssertionError(action)

    async def _until_seen(self, action: chooser.Action) -> None:
        """Wait (at most `POLL` s) until the mirrors and the member list show `action`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + POLL
        seen = self._changes.version
        while not self._seen(action) and (left := deadline - loop.time()) > 0:
            seen = await self._changes.wait(seen, timeout=min(left, FAST_POLL))
            if not self._seen(action):
                await self._refresh_members()

    def _view(self) -> chooser.View:
        from .cluster import DEFAULT_IDEAL_SIZE

        now = time.monotonic()
        draft = chooser.View(
            me=self.me,
            ideal=self.ideal if self.ideal is not None else DEFAULT_IDEAL_SIZE,
            members=tuple(self.members),
            volunteers=dict(self.volunteers),
            nominated=dict(self.nominated),
            now=now,
            grace=GRACE,
            start_timeout=START_TIMEOUT,
            passed_over=frozenset(h for h, until in self._passed_over.items() if until > now),
        )
        self._absent = chooser.track(self._absent, chooser.absent(draft), now)
        self._unstarted = chooser.track(self._unstarted, chooser.unstarted(draft), now)
        return replace(draft, absent_since=self._absent, unstarted_since=self._unstarted)

    async def _act(self, action: chooser.Action) -> bool:
        """Make `action`; False if it turned out not to be due (nothing was changed)."""
        from ..report.events import Nominated

        match action:
            case chooser.Remove(member_id, host, reason):
                if valid_hostname(host):
                    self._reasons[host] = reason
                    await self.world.delete(keys.nominated(host))
                    if reason.startswith(chooser.NEVER_STARTED):
                        self._passed_over[host] = time.monotonic() + PASS_OVER
                await self._retrying(lambda: ops.remove(self.world, member_id))
            case chooser.Promote(member_id, _):
                try:
                    await self._retrying(lambda: ops.promote(self.world, member_id))
                except ops.MemberGone:
                    log.debug("cluster: member %x is gone; not promoting it", member_id)
            case chooser.Nominate(host, peer_urls, add):
                if not await self._still_volunteers(host, peer_urls):
                    # its mirror lags: the host withdrew (it is leaving)
                    log.info("cluster: %s no longer volunteers; not nominating it", host)
                    return False
                if add:
                    await self._retrying(lambda: ops.add_learner(self.world, peer_urls))
                value = json.dumps({"peer_urls": list(peer_urls)}).encode()
                await self.world.put(keys.nominated(host), value)
                self.emit(Nominated(host))
            case chooser.Unnominate(host):
                await self.world.delete(keys.nominated(host))
        return True

    async def _still_volunteers(self, host: str, peer_urls: Sequence[str]) -> bool:
        """`host` volunteers with `peer_urls` now (read from etcd, not from the mirror).

        A leaving host withdraws its key before it removes its member: read
        after the member list that shows it gone, this sees the withdrawal.
        """
        key = keys.volunteer(host)
        kvs, _ = await self.world.get_prefix(key)
        raw = next((kv.value for kv in kvs if kv.key == key), None)
        return raw is not None and same_urls(parse_urls(raw, "peer_urls"), peer_urls)

    # -- leaving ------------------------------------------------------------------------

    async def leave(self) -> None:
        """On a clean stop, a member with other voting members withdraws from the
        volunteers, removes itself and wipes its data; anyone else just goes.

        The withdrawal comes first, so the leader, seeing this member gone,
        does not nominate its host again (it reads the volunteer key afresh
        before it adds a learner). A client has nothing to do: its volunteer
        key rides on its lease, revoked next. The member list is read afresh:
        when hosts are stopped one after the other, the last one's copy may
        still show members that are gone, and it must not wait on them.
        Every step is bounded: a stop always ends.
        """
        if not self.slot.serving:
            return
        # said first: each step below may take seconds (bounded), and a stop
        # that says nothing while it waits looks hung
        log.info("cluster: stopping this host's etcd member")
        listed = self.members
        with contextlib.suppress(WorldError, TimeoutError):
            async with asyncio.timeout(FRESH_TIMEOUT):
                listed = await ops.member_list(self.world)
        mine = [m for m in listed if is_me(m, self.me, self.config)]
        others = [
            m
            for m in listed
            if m.started and not m.is_learner and not is_me(m, self.me, self.config)
        ]
        if not mine or not others:
            return  # the sole member keeps its data, and restarts on it
        # our own etcd first while it lives, then the others (it exits once removed)
        own = [u for u in self.config.client_urls if valid_url(u)]
        theirs = [u for m in others for u in m.client_urls if valid_url(u)]
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT):
                if self.volunteering:
                    await self.world.delete(keys.volunteer(self.me))
                await self.world.set_endpoints(own + theirs)
                await self.world.delete_leased(keys.LEADER)
                log.info("cluster: leaving the etcd members (%d remain)", len(others))
                await self._retrying(lambda: ops.remove(self.world, mine[0].id))
                # our etcd is stopping now: the rest goes to the others
                await self.world.set_endpoints(theirs or own)
                await self.world.delete(keys.nominated(self.me))
        except Exception as e:  # a stop goes on whatever the cluster says
            # (WorldError, TimeoutError, or a gRPC error from a member going down)
            log.warning(
                "cluster: could not leave the etcd members (%s); the leader removes this "
                "host once its lease expires",
                str(e) or "it took too long",
            )
            return
        await self.slot.stop()
        try:
            wipe_data(self.state_dir)
        except WorldError as e:
            log.error("cluster: %s", e)


def _describe(action: chooser.Action) -> str:
    match action:
        case chooser.Remove(_, host, reason):
            return f"removing {host}'s etcd member: {reason}"
        case chooser.Promote(_, host):
            return f"promoting {host}'s etcd learner to a voting member"
        case chooser.Nominate(host, _, True):
            return f"nominating {host}: adding its etcd as a learner"
        case chooser.Nominate(host, _, False):
            return f"nominating {host} (its learner is already added)"
        case chooser.Unnominate(host):
            return f"withdrawing the nomination of {host}, which is not a member"
    raise AssertionError(action)


__all__ = [
    "AutoCluster",
    "Plan",
    "ServerSlot",
    "plan_start",
    "read_endpoints",
    "volunteers",
    "wipe_data",
    "write_endpoints",
]
