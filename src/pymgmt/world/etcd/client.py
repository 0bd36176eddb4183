"""The World over an etcd v3 cluster, through aetcd (asyncio gRPC).

What this layer adds to the bare client, and why:

* **Several endpoints.** aetcd takes one host:port; gRPC's own resolver
  takes ``ipv4:A:p,B:q,C:r``, so the channel fails over between members by
  itself (pick-first). Calls carry etcd's ``hasleader`` metadata, so a
  member that lost its leader says so at once instead of hanging.
* **Partitions are waited out.** Once running, a call that fails with
  "unavailable" (or times out) is retried with back-off capped at
  ``retry_cap`` s (1 s) for as long as it takes: an agent cut off from its
  cluster goes on enforcing its last graph, and what it writes meanwhile
  (exports, its converged state) goes through once the cluster answers. The
  lease keep-alive and the watches retry the same way. One warning says the
  cluster stopped answering, another every ``report_every`` s (30 s) while
  it stays so, and one info line says when it is back. Only the start is
  bounded (``connect_timeout``: seeds that cannot be reached fail the
  start), and a tool may bound every call with ``op_timeout``
  (`WorldUnavailable`, naming the endpoints).
* **A session lease.** One lease per agent, kept alive by `run`; keys put
  with ``lease=True`` ride on it and vanish when the agent goes away: at
  once on a clean exit (the lease is revoked), after the TTL on ``kill -9``.
  If the lease is lost anyway (expired during a partition), a new one is
  granted and every leased key re-put; `EtcdWorld` remembers them for that.
  A re-grant cut short (cancelled, or the cluster gone again) is finished by
  the next keep-alive, so no leased key stays missing.
* **A host key.** `run` registers ``keys.host(hostname)`` on the lease with a
  create-if-absent transaction, so two live hosts can never share a name
  (`HostnameTaken`).
* **Watches that never skip an event.** aetcd ends a watch when its stream
  breaks; `watch_prefix` re-arms from the last revision seen + 1. If that
  revision was compacted, it re-reads the prefix and yields synthetic puts
  and deletes (the difference to what the consumer has seen), so the
  consumer's view equals the store, then watches on from the read revision.

aetcd (and with it grpc, ~80 ms of imports) is imported only when `run`
connects: the single-host path never pays for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import os
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Literal, TypeVar

from ...service import TaskStatus
from ..base import KV, WatchEvent, WorldError, keys
from .tls import CLUSTER_NAME, TlsFiles, diagnose, warn_plain_text
from .urls import host_port, secure, unix_endpoint

log = logging.getLogger("pymgmt.world.etcd")

T = TypeVar("T")

#: gRPC channel options: fail over fast between members, notice a dead peer.
_CHANNEL_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 50,
    "grpc.min_reconnect_backoff_ms": 50,
    "grpc.max_reconnect_backoff_ms": 1000,
    # etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time)
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    # No cap on what etcd sends: gRPC's 4 MiB default is below six exports of
    # a 1 MiB file, and a watch catching up batches many revisions in one
    # message, which, refused, would be re-requested for ever. What etcd may
    # hold is bounded by its own limits (request size, backend quota), and
    # `get_prefix` reads in pages.
    "grpc.max_receive_message_length": -1,
}
#: keys per page of `get_prefix` (each up to etcd's 1.5 MiB request limit)
_PAGE = 64
#: etcd's default limit of operations in one transaction (--max-txn-ops)
MAX_TXN_OPS = 128
#: bytes of keys and values per transaction, under etcd's 1.5 MiB request limit
MAX_TXN_BYTES = 1 << 20
#: etcd's require-leader metadata (rpctypes.MetadataRequireLeaderKey)
_REQUIRE_LEADER = (("hasleader", "true"),)


#: how often registering looks again when the host key changes under a take-over
_TAKEOVER_TRIES = 5


class HostnameTaken(WorldError):
    """Another live host is registered under this hostname."""

    def __init__(self, hostname: str) -> None:
        super().__init__(
            f"another live host is already named {hostname!r} in this cluster "
            "(choose another --hostname, or wait for it to leave)"
        )
        self.hostname = hostname


class WorldUnavailable(WorldError):
    """No etcd member answered in time."""


class WorldClosed(WorldError):
    """The World was used after `close`."""


def grpc_target(endpoints: Sequence[str]) -> tuple[str, int]:
    """aetcd's (host, port) for a list of ``http://IP:PORT`` client URLs.

    aetcd joins them as ``f"{host}:{port}"``, so several endpoints become a
    gRPC ``ipv4:``/``ipv6:`` address list whose last port is passed apart.
    """
    if not endpoints:
        raise WorldError("no etcd endpoints given")
    if len(endpoints) == 1 and (unix := unix_endpoint(endpoints[0])) is not None:
        return unix  # the SSH tunnel of an agent started by --remote
    hostports: list[tuple[str, int]] = []
    for url in endpoints:
        hostports.append(host_port(url, what="endpoint"))
    if len(hostports) == 1:
        return hostports[0]
    try:
        ips = [ipaddress.ip_address(h) for h, _ in hostports]
    except ValueError:
        raise WorldError(
            f"several etcd endpoints must be IP addresses, not names: {', '.join(endpoints)}"
        ) from None
    if all(ip.version == 4 for ip in ips):
        head = ",".join(f"{h}:{p}" for h, p in hostports[:-1])
        return f"ipv4:{head},{hostports[-1][0]}", hostports[-1][1]
    if all(ip.version == 6 for ip in ips):
        head = ",".join(f"[{h}]:{p}" for h, p in hostports[:-1])
        return f"ipv6:{head},[{hostports[-1][0]}]", hostports[-1][1]
    raise WorldError(f"etcd endpoints mix IPv4 and IPv6: {', '.join(endpoints)}")


@functools.cache
def _tls_client_class() -> type[Any]:
    """aetcd's Client on a TLS channel (aetcd 1.0 opens insecure channels only).

    Its `connect` does what aetcd's does, but with ``grpc.aio.secure_channel``
    and without aetcd's user/password login (the certificate authenticates).
    """
    import aetcd
    from aetcd import rpc, watcher

    class TlsClient(aetcd.Client):  # type: ignore[misc]
        def __init__(self, credentials: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._credentials = credentials

        async def connect(self) -> None:
            if self._connected.is_set():
                return
            target = f"{self._host}:{self._port}"
            self.channel = rpc.secure_channel(
                target, self._credentials, options=list(self._options.items())
            )
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()

    return TlsClient


def _transient(e: BaseException) -> bool:
    """Worth retrying: the member is down, switching, or has no leader right now."""
    import aetcd

    if isinstance(
        e,
        aetcd.ConnectionFailedError | aetcd.ConnectionTimeoutError | aetcd.WatchTimeoutError,
    ):
        return True
    if isinstance(e, aetcd.rpc.AioRpcError):
        details = e.details() or ""
        if e.code() == aetcd.rpc.StatusCode.INTERNAL:
            # gRPC's own core failing a call on a channel being torn down (the
            # endpoints swapped under a stream), not an answer from etcd
            return "from Core" in details
        if e.code() == aetcd.rpc.StatusCode.UNKNOWN:
            # a member that is stopping (removed, or shutting down): another answers
            return details in ("raft: stopped", "etcdserver: server stopped")
        return e.code() in (
            aetcd.rpc.StatusCode.UNAVAILABLE,
            aetcd.rpc.StatusCode.DEADLINE_EXCEEDED,
        )
    if isinstance(e, aetcd.InternalError):
        return "from Core" in str(e)
    return False


def _brief(e: BaseException) -> str:
    """An error in one line: a gRPC error's text spans several, with debug strings."""
    import aetcd

    if isinstance(e, aetcd.rpc.AioRpcError):
        return f"{e.code().name.lower()}: {e.details()}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class _Outage:
    """Says when the cluster stops answering, while it does not, and when it is back.

    Every retry loop reports its transient failures here (`failed`) and
    every answer (`answered`); the log gets one warning when the first
    failure comes, one every `report_every` s while no call gets through,
    and one info line when one does: a partition is a few lines, however
    many calls wait it out. A failure of an attempt that began before the
    last answer is old news (a call sent into the outage, timing out just
    after another got through) and says nothing.
    """

    def __init__(self, where: Callable[[], str], report_every: float) -> None:
        self.where = where
        self.report_every = report_every
        #: when the cluster stopped answering (monotonic); None: it answers
        self.since: float | None = None
        self._reported = 0.0
        self._answered_at = 0.0

    def failed(self, what: str, e: BaseException, began: float) -> None:
        now = time.monotonic()
        if self.since is None:
            if began < self._answered_at:
                return
            # unanswered since this attempt began (and since the last answer)
            self.since = began
            self._reported = now
            log.warning(
                "the etcd cluster at %s does not answer (%s: %s); retrying until it does, "
                "still enforcing the last graph",
                self.where(),
                what,
                _brief(e),
            )
        elif now - self._reported >= self.report_every:
            self._reported = now
            log.warning(
                "the cluster has been unreachable for %d s; still enforcing the last graph",
                now - self.since,
            )

    def answered(self) -> None:
        self._answered_at = now = time.monotonic()
        if self.since is not None:
            log.info(
                "the etcd cluster at %s answers again (unreachable for %.1f s)",
                self.where(),
                now - self.since,
            )
            self.since = None


class _RecordingWatchStub:
    """aetcd's Watch stub, remembering each stream call it opens.

    aetcd does not keep its watch stream's call object, and grpc.aio ends a
    cancelled call only when its status comes back from the poller thread;
    knowing the calls lets closing wait for that, so a closed World has no
    gRPC work (tasks, channel, poller thread) left behind.
    """

    def __init__(self, stub: Any, calls: list[Any]) -> None:
        self._stub = stub
        self._calls = calls

    def Watch(self, *args: Any, **kwargs: Any) -> Any:  # the stub method name
        call = self._stub.Watch(*args, **kwargs)
        self._calls[:] = [c for c in self._calls if not c.done()]
        self._calls.append(call)
        return call


async def _close_client(client: Any, streams: list[Any]) -> None:
    """Close the channel, then wait (at most 2 s) until its calls have really ended.

    First this channel's calls (known ones: active or watch streams), then
    any of grpc.aio's per-call tasks still pending, since a call dropped
    early (by a timeout, say) is known to no one; with another World open
    in this process its live calls make this wait the full bound, which
    only tests do (an agent has one World).
    """
    deadline = time.monotonic() + 2.0
    channel = client.channel
    calls = list(getattr(channel, "_active_calls", ())) if channel is not None else []
    calls += [c for c in streams if c not in calls]
    for call in calls:
        call.cancel()
    grpc_tasks = {t for t in asyncio.all_tasks() if "_cygrpc" in repr(t)}
    await _keeping_cancel(client.close())
    streams.clear()
    ended = [asyncio.ensure_future(call.code()) for call in calls]
    if ended:
        done, pending = await asyncio.wait(ended, timeout=2.0)
        for f in pending:
            f.cancel()
        if pending:
            await asyncio.wait(pending)
        for f in done:
            f.exception()  # retrieved: a failed call's status is of no interest now
    grpc_tasks = {t for t in grpc_tasks | asyncio.all_tasks() if "_cygrpc" in repr(t)}
    if unfinished := {t for t in grpc_tasks if not t.done()}:
        await asyncio.wait(unfinished, timeout=max(deadline - time.monotonic(), 0.01))


#: seconds a cancelled caller waits for aetcd's close to finish before giving up on it
KEEPING_CANCEL_WAIT = 5.0


async def _keeping_cancel(aw: Awaitable[T]) -> T:
    """Await aetcd code that swallows a cancel of its caller; the cancel is raised here.

    aetcd's ``Watcher._terminate_stream`` (behind ``Client.close`` too)
    cancels its stream's request handler, awaits it and passes on any
    CancelledError: a cancel of the caller that lands in that await is
    taken for the handler's own and lost. Run in a task of its own,
    the caller's cancel stays the caller's: aetcd finishes (it only waits
    for its cancelled handler), then the cancel is raised.
    """
    inner = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        if not inner.done():
            # the stream ends: no half-closed channel left behind; but a stop
            # never waits on aetcd for ever
            await asyncio.wait([inner], timeout=KEEPING_CANCEL_WAIT)
            if not inner.done():
                inner.cancel()
        raise


async def _add_watch(watcher: Any, key: bytes, callback: Any, **kw: Any) -> Any:
    """aetcd's ``Watcher.add_callback``; a cancel of the caller is never lost.

    add_callback waits for etcd's answer through ``asyncio.wait_for``, which
    on Python 3.11 returns the new watch, not the cancel, when the answer is
    handled in the loop iteration where the caller is cancelled. A clean
    stop right after an endpoint change hit it beside CPU hogs: every watch
    re-arms on the new channel then, the stop's cancel landed among etcd's
    answers, the mirror went on watching, and the agent never exited.

    Run in a task of its own, the caller's cancel stays the caller's. The
    task is cancelled too; when it makes its watch all the same (its own
    cancel lost the same way), that watch is cancelled, so no stream feeds a
    queue nobody reads.
    """
    adding = asyncio.ensure_future(watcher.add_callback(key, callback, **kw))
    try:
        return await asyncio.shield(adding)
    except asyncio.CancelledError:
        adding.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
        adding.cancel()
        await asyncio.wait([adding], timeout=KEEPING_CANCEL_WAIT)
        if adding.done() and not adding.cancelled() and adding.exception() is None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await watcher.cancel(adding.result().watch_id)
        raise
    finally:
        # the task holds its error, whose traceback holds this frame: no cycle
        # keeping the channel (and gRPC's poller thread) alive until a gc pass
        del adding


async def _next_item(queue: asyncio.Queue[T], timeout: float) -> T:
    """The queue's next item; TimeoutError after `timeout` s; a cancel always propagates.

    Not ``asyncio.wait_for(queue.get(), timeout)``: on Python 3.11, when the
    get completes in the same loop iteration as the caller is cancelled,
    wait_for returns the item and the cancel is lost. A watch consumer
    cancelled by a clean stop just as an event arrived then went on
    watching for ever, and the task group waiting for it never ended: the
    agent ignored its SIGTERM. Here the get runs in the caller's own task,
    so the cancel is raised in it (an item already taken stays queued).
    """
    async with asyncio.timeout(timeout):
        return await queue.get()


def _chunks(ops: Sequence[tuple[str, bytes | None]]) -> Iterator[list[tuple[str, bytes | None]]]:
    """`ops` in order, cut into transactions within MAX_TXN_OPS and MAX_TXN_BYTES."""
    chunk: list[tuple[str, bytes | None]] = []
    size = 0
    for key, value in ops:
        n = len(_raw(key)) + len(value or b"")
        if chunk and (len(chunk) == MAX_TXN_OPS or size + n > MAX_TXN_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((key, value))
        size += n
    if chunk:
        yield chunk


def _raw(key: str) -> bytes:
    """A key as etcd stores it; `_key`'s inverse, so any key read can be written back."""
    return key.encode("utf-8", "surrogateescape")


def _key(raw: bytes) -> str:
    """A key read from etcd, which holds bytes: any client may write one that is not
    UTF-8, and one such key must not make every reader of its prefix fail. Its
    undecodable bytes become lone surrogates (no schema accepts those)."""
    return raw.decode("utf-8", "surrogateescape")


def _lease_not_found(e: BaseException) -> bool:
    return "lease not found" in str(e)


class _Current:
    """The aetcd client in use, forwarding to it; `EtcdWorld.set_endpoints` swaps it.

    A request being retried holds this, not the client: its next try goes
    to the new endpoints instead of a closed channel.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class EtcdWorld:
    """The `World` over etcd; start it with `pymgmt.service.start`.

    ``world = await service.start(tg, EtcdWorld(host, urls).run, name="world")``
    returns once connected, with the lease granted and the host registered.
    Cancelling the task (or `close`) revokes the lease, so this host's leased
    keys vanish from every other host's view at once.
    """

    def __init__(
        self,
        hostname: str,
        endpoints: Sequence[str],
        *,
        lease_ttl: int = 10,
        connect_timeout: float = 10.0,
        op_timeout: float | None = None,
        retry_cap: float = 1.0,
        report_every: float = 30.0,
        rpc_timeout: float = 5.0,
        owner: str = "",
        host_info: Mapping[str, str] | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        """`owner`: a token that survives restarts of this agent (say, kept in its
        state dir). A host key still held by a previous run with the same
        owner (killed before its lease expired) is taken over instead of
        refused; with no owner, a name is free only once its lease is gone.
        `host_info` goes into the host key's value (JSON) for other hosts.
        """
        if not hostname or "/" in hostname:
            raise WorldError(f"{hostname!r} cannot be a hostname in the cluster")
        self.hostname = hostname
        self.endpoints = list(endpoints)
        self._target = grpc_target(self.endpoints)
        if lease_ttl < 1:
            raise WorldError(f"a lease TTL must be at least 1 s, not {lease_ttl}")
        self.lease_ttl = int(lease_ttl)  # etcd counts whole seconds
        self.connect_timeout = connect_timeout
        #: bound on one call's retries once running (None: retry until it answers)
        self.op_timeout = op_timeout
        #: the longest pause between two retries of a call, a keep-alive or a watch
        self.retry_cap = retry_cap
        self._outage = _Outage(self._where, report_every)
        #: the start is over: calls no longer bounded by `connect_timeout`
        self._running = False
        #: leased keys still to put back after a re-grant that was cut short
        self._republish_due = False
        self.rpc_timeout = rpc_timeout
        self.owner = owner
        self.host_info = dict(host_info or {})
        #: client certificate and CA for a TLS cluster (None: plain text)
        self.tls = tls
        self._client: Any = None
        self._lease_id = 0
        #: leased key -> value, to re-put them if the lease is ever lost
        self._leased: dict[str, bytes] = {}
        self._lease_lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self._closed = asyncio.Event()
        #: old clients swapped out by set_endpoints, closing in the background
        self._retiring: set[asyncio.Task[None]] = set()
        #: set on the way out: retirements stop waiting for their calls' grace
        self._hurry = asyncio.Event()
        #: open watch stream calls (see _RecordingWatchStub)
        self._streams: list[Any] = []
        #: how many times the lease was lost and re-granted (for tests and logs)
        self.lease_regrants = 0
        #: set when this World may no longer speak for `hostname` (its name was
        #: taken while its lease was lost): every later call raises it
        self._fatal: WorldError | None = None

    # -- lifecycle ------------------------------------------------------------------

    async def run(self, task_status: TaskStatus[EtcdWorld]) -> None:
        try:
            await self._connect()
            await self._grant()
            await self._register_host()
            log.info("joined the etcd cluster at %s as %s", ",".join(self.endpoints), self.hostname)
            self._running = True
            task_status.started(self)
            await self._keep_alive()
        finally:
            await self._shutdown()

    async def close(self) -> None:
        """Leave: revoke the lease (this host's leased keys vanish) and disconnect."""
        self._closing.set()
        if self._client is not None:
            await self._closed.wait()

    def _where(self) -> str:
        return ", ".join(self.endpoints)

    async def _make_client(self) -> Any:
        """A connected aetcd client for the current endpoints (one place for channel setup).

        With `tls`, a TLS channel with our certificate, verifying the server
        against the CA and `CLUSTER_NAME` (tls.py says why one name);
        without, plain text, and a warning once per agent run.
        """
        import aetcd

        host, port = self._target
        if self.tls is None:
            if https := [u for u in self.endpoints if secure(u)]:
                raise WorldError(
                    f"{https[0]}: an https endpoint needs this host's TLS files "
                    "(--pki DIR, or --tls-ca, --tls-cert and --tls-key)"
                )
            warn_plain_text()
            client = aetcd.Client(
                host=host,
                port=port,
                timeout=self.rpc_timeout,
                options=_CHANNEL_OPTIONS,
            )
        else:
            credentials = self.tls.grpc_credentials(self.tls.load())
            client = _tls_client_class()(
                credentials,
                host=host,
                port=port,
                timeout=self.rpc_timeout,
                options={**_CHANNEL_OPTIONS, "grpc.ssl_target_name_override": CLUSTER_NAME},
            )
        await client.connect()
        # Ask members to refuse (not stall) when they have no leader, watches too.
        client.metadata = _REQUIRE_LEADER
        client._watcher._metadata = _REQUIRE_LEADER
        client._watcher._watchstub = _RecordingWatchStub(client._watcher._watchstub, self._streams)
        return client

    async def _tls_mismatch(self, timeout: float) -> WorldError | None:
        """Why no endpoint answers, if TLS is why: a certificate one side does not trust,
        or one side speaking TLS and the other not (see `tls.diagnose`)."""
        found = await asyncio.gather(
            *(
                diagnose(*host_port(u), self.tls, timeout=timeout)
                for u in self.endpoints
                if unix_endpoint(u) is None  # an SSH tunnel's socket: SSH's, no TLS to check
            )
        )
        return next((e for e in found if e is not None), None)

    async def _connect(self) -> None:
        """Open the channel and prove a member with a leader answers."""
        client = await self._make_client()
        self._client = _Current(client)  # set_endpoints swaps what it forwards to
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.02
        while True:
            try:
                await client.get(keys.ROOT.encode())
                return
            except Exception as e:
                mismatch = None
                if _transient(e):
                    left = deadline - time.monotonic()
                    mismatch = await self._tls_mismatch(timeout=max(min(left, 2.0), 0.1))
                if mismatch is not None:
                    self._client = None
                    await _close_client(client, self._streams)
                    raise mismatch.with_traceback(None) from None
                if not _transient(e) or time.monotonic() + delay >= deadline:
                    self._client = None
                    await _close_client(client, self._streams)
                    raise WorldUnavailable(
                        f"cannot reach etcd at {self._where()} within "
                        f"{self.connect_timeout:g} s: {e}"
                    ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _shutdown(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._lease_id:
                async with asyncio.timeout(min(self.rpc_timeout, 3.0)):
                    await client.revoke_lease(self._lease_id)
                log.info("left the etcd cluster (%s's lease revoked)", self.hostname)
        except Exception as e:
            log.warning(
                "could not revoke %s's lease (%s); its keys vanish after %d s",
                self.hostname,
                str(e),  # text only: a record holding the error would pin its frames
                self.lease_ttl,
            )
        finally:
            self._lease_id = 0
            await self._finish_retiring()
            await _close_client(client, self._streams)
            self._closed.set()

    def _require_client(self) -> Any:
        if self._fatal is not None:
            raise HostnameTaken(self.hostname)
        if self._client is None or self._closing.is_set():
            raise WorldClosed("the etcd World is closed")
        return self._client

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one request, retrying while the cluster is unreachable.

        Once running, it retries until the cluster answers (or `op_timeout`
        passes, if one was given); during the start, at most until
        `connect_timeout`. The World's close ends the wait (`WorldClosed`).
        """
        limit = self.op_timeout if self._running else self.connect_timeout
        deadline = None if limit is None else time.monotonic() + limit
        delay = 0.02
        while True:
            began = time.monotonic()
            try:
                result = await fn()
            except asyncio.CancelledError:
                # Closing a channel ends its calls: grpc.aio raises that as a
                # CancelledError in the caller, who was not cancelled at all.
                # The World closing, that ends the call (WorldClosed below);
                # `set_endpoints` retiring the old channel, the call is tried
                # again on the new one. A real cancel of the caller propagates.
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                if not self._closing.is_set():
                    log.debug("%s: its channel was replaced; trying again", what)
            except Exception as e:
                # Once closing, WorldClosed is raised below, outside this block:
                # this error's frames hold the channel, and must not ride along.
                if not self._closing.is_set():
                    if not _transient(e):
                        self._outage.answered()  # it answered, if with a refusal
                        raise
                    if deadline is not None and time.monotonic() + delay >= deadline:
                        raise WorldUnavailable(
                            f"{what}: no etcd member at {self._where()} answered for "
                            f"{limit:g} s: {_brief(e)}"
                        ) from None
                    self._outage.failed(what, e, began)
                    log.debug("%s: %s; retrying in %.2f s", what, _brief(e), delay)
            else:
                self._outage.answered()
                return result
            if self._closing.is_set():
                raise WorldClosed("the etcd World is closed")
            await self._pause(delay)
            delay = min(delay * 2, self.retry_cap)

    async def _pause(self, delay: float) -> None:
        """Sleep `delay` s before a retry; raise `WorldClosed` if the World closes meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closing.wait()
        if self._closing.is_set():
            raise WorldClosed("the etcd World is closed")

    # -- the session lease ----------------------------------------------------------

    async def _grant(self) -> None:
        client = self._require_client()
        lease = await self._call("grant a lease", lambda: client.lease(self.lease_ttl))
        self._lease_id = lease.id

    async def _register_host(self) -> None:
        """Create ``keys.host(hostname)`` on our lease unless a live host holds it."""
        self._require_client()  # raises at once if the World is closed or refused
        key = keys.host(self.hostname)
        kb = _raw(key)
        value = json.dumps(
            {"owner": self.owner, "pid": os.getpid(), "info": self.host_info}, sort_keys=True
        ).encode()
        for _ in range(_TAKEOVER_TRIES):
            ok, responses = await self._create_on_lease(
                kb, value, f"register host {self.hostname}", read_back=True
            )
            if ok:
                break
            [(old_value, old)] = responses[0]
            if old.lease == self._lease_id:
                break  # ours already (a registration retried after a lost answer)
            if not self._same_owner(old_value):
                raise HostnameTaken(self.hostname)
            # Our own previous run, killed before its lease expired: take over.
            if await self._take_over(kb, value, old.mod_revision):
                log.info("took over the host key of a previous run of %s", self.hostname)
                break
            # The key changed meanwhile: most often the old lease just expired
            # and took it along. Look again: absent now, or another host's.
        else:
            raise HostnameTaken(self.hostname)
        self._leased[key] = value

    async def _take_over(self, kb: bytes, value: bytes, revision: int) -> bool:
        """Put our registration over the host key if it is still at `revision`."""
        client = self._require_client()
        t = client.transactions
        won, _ = await self._call(
            f"take over host {self.hostname}",
            lambda: client.transaction(
                compare=[t.mod(kb) == revision],
                success=[t.put(kb, value, lease=self._lease_id)],
                failure=[],
            ),
        )
        return bool(won)

    def _same_owner(self, raw: bytes) -> bool:
        if not self.owner:
            return False
        try:
            return bool(json.loads(raw).get("owner") == self.owner)
        except (ValueError, AttributeError):
            return False

    async def _keep_alive(self) -> None:
        """Refresh the lease every TTL/3 until closed; re-grant it if it was lost.

        While the cluster does not answer, it tries again with back-off
        capped at `retry_cap`, for as long as it takes: once the network is
        back, a lease that expired meanwhile is re-granted (and our keys
        re-put) within about a second. Raises `HostnameTaken` if the name
        went to another host while the lease was lost. It is raised from
        here, a frame that holds no client: a traceback pinning the channel
        would keep gRPC's poller alive.
        """
        interval = max(self.lease_ttl / 3, 0.05)
        wait = interval
        failures = 0
        while True:
            if self._fatal is not None:
                raise self._fatal.with_traceback(None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._closing.wait()
            if self._closing.is_set():
                return
            began = time.monotonic()
            try:
                await self._renew()
            except HostnameTaken:
                continue  # `_fatal` is set: raised at the top of the loop
            except WorldClosed:
                return
            except Exception as e:
                # "lease not found" here: the lease granted by a re-grant expired
                # too before it was used (an agent starved of CPU for longer than
                # the TTL, seen in the 50-agent benchmark): the next round
                # re-grants again, rather than the agent giving up the cluster.
                if not (_transient(e) or _lease_not_found(e)):
                    raise
                if _transient(e):
                    self._outage.failed(f"refresh {self.hostname}'s lease", e, began)
                failures += 1
                wait = min(0.05 * 2 ** min(failures, 8), self.retry_cap, interval)
                continue
            self._outage.answered()
            failures = 0
            wait = interval

    async def _renew(self) -> None:
        """One keep-alive; a new lease if the old one is gone, our keys put back if due."""
        client = self._require_client()
        lease = self._lease_id
        ttl = await self._refresh(client)
        if ttl > 0 and not self._republish_due:
            return
        async with self._lease_lock:
            if self._lease_id != lease:
                return  # a put or commit re-granted it meanwhile
            if ttl <= 0:
                await self._regrant()
            elif self._republish_due:
                await self._republish(client)

    async def _refresh(self, client: Any) -> int:
        """One keep-alive; the lease's remaining TTL (0: it is gone).

        The raw stream, read to its end (aetcd's refresh_lease returns after
        the first reply and leaves the call open until garbage collection).
        """
        from aetcd import rpc

        request = rpc.LeaseKeepAliveRequest(ID=self._lease_id)
        ttl = 0
        async for reply in client.leasestub.LeaseKeepAlive(
            iter([request]), timeout=self.rpc_timeout, metadata=client.metadata
        ):
            ttl = int(reply.TTL)
        return ttl

    async def _regrant(self) -> None:
        """The lease expired (we were cut off too long): get a new one, re-put our keys.

        Called with `_lease_lock` held. If this is cut short after the
        grant (cancelled, say), `_republish_due` stays set and the next
        keep-alive finishes the re-puts on the new lease.
        """
        client = self._require_client()
        lost = self._lease_id
        await self._grant()
        self.lease_regrants += 1
        self._republish_due = True
        log.warning(
            "%s's lease %x was lost (expired while etcd was unreachable?); re-granted it and "
            "re-publishing %d key(s)",
            self.hostname,
            lost,
            len(self._leased),
        )
        await self._republish(client)

    async def _republish(self, client: Any) -> None:
        """Put every leased key back on the current lease, the host key first.

        The host key is registered again first, as at the start: while our
        lease was gone the name was free, and another live host may hold it
        now. Then this World speaks for that name no more (`HostnameTaken`,
        from now on from every call), and none of our keys is re-put over
        theirs. Called with `_lease_lock` held.
        """
        host_key = keys.host(self.hostname)
        try:
            await self._register_host()
        except HostnameTaken as e:
            self._fatal = HostnameTaken(self.hostname)  # kept without e's traceback
            log.error("%s's name was taken while its lease was lost: %s", self.hostname, e)
            raise
        for key, value in list(self._leased.items()):
            if key != host_key:
                await self._put_leased(client, key, value)
        self._republish_due = False

    async def _put_leased(self, client: Any, key: str, value: bytes) -> Any:
        return await self._call(
            f"put {key}", lambda: client.put(_raw(key), value, lease=self._lease_id)
        )

    # -- the World ------------------------------------------------------------------

    async def put(self, key: str, value: bytes, *, lease: bool = False) -> int:
        client = self._require_client()
        if not lease:
            self._leased.pop(key, None)
            resp = await self._call(f"put {key}", lambda: client.put(_raw(key), value))
            return int(resp.header.revision)
        async with self._lease_lock:
            self._leased[key] = value
            try:
                resp = await self._put_leased(client, key, value)
            except Exception as e:
                if not _lease_not_found(e):
                    raise
                await self._regrant()  # re-puts this key too
                resp = await self._put_leased(client, key, value)
            return int(resp.header.revision)

    async def delete(self, key: str) -> int:
        from aetcd import rpc

        client = self._require_client()
        request = rpc.DeleteRangeRequest(key=_raw(key))

        async def delete() -> int:
            self._leased.pop(key, None)
            resp = await self._call(
                f"delete {key}",
                lambda: client.kvstub.DeleteRange(
                    request, timeout=self.rpc_timeout, metadata=client.metadata
                ),
            )
            return int(resp.header.revision)

        if key not in self._leased:
            return await delete()
        # Under the lease lock: a re-grant re-puts the leased keys it holds,
        # and must not bring back one deleted meanwhile.
        async with self._lease_lock:
            return await delete()

    async def commit(
        self, puts: Mapping[str, bytes], deletes: Iterable[str] = (), *, lease: bool = False
    ) -> int:
        """`puts` and `deletes` in as few etcd transactions as etcd's limits allow.

        A transaction holds at most MAX_TXN_OPS operations and about
        MAX_TXN_BYTES of keys and values (etcd refuses a request over 1.5 MiB;
        a single larger put goes alone, as `put` would send it). Deletes go
        first, so a host replacing its set never shows the union of old and
        new. Everything runs under the lease lock: a re-grant re-puts the
        leased keys, and must neither miss one put here nor bring back one
        deleted here; a lost lease is re-granted and the chunk written again.
        """
        gone = list(dict.fromkeys(deletes))
        if both := puts.keys() & set(gone):
            raise ValueError(f"put and deleted in one commit: {sorted(both)}")
        client = self._require_client()
        ops: list[tuple[str, bytes | None]] = [(k, None) for k in gone]
        ops += list(puts.items())
        if not ops:
            return await self._revision(client)
        revision = 0
        async with self._lease_lock:
            for chunk in _chunks(ops):
                for key, value in chunk:
                    if value is not None and lease:
                        self._leased[key] = value
                    else:
                        self._leased.pop(key, None)
                try:
                    revision = await self._txn(client, chunk, self._lease_id if lease else 0)
                except Exception as e:
                    if not (lease and _lease_not_found(e)):
                        raise
                    await self._regrant()
                    revision = await self._txn(client, chunk, self._lease_id)
        return revision

    async def _txn(self, client: Any, ops: Sequence[tuple[str, bytes | None]], lease: int) -> int:
        """One unconditional transaction of puts (value) and deletes (None); its revision."""
        from aetcd import rpc

        request = rpc.TxnRequest(
            success=[
                rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=_raw(k)))
                if v is None
                else rpc.RequestOp(request_put=rpc.PutRequest(key=_raw(k), value=v, lease=lease))
                for k, v in ops
            ]
        )
        resp = await self._call(
            f"commit {len(ops)} key(s)",
            lambda: client.kvstub.Txn(request, timeout=self.rpc_timeout, metadata=client.metadata),
        )
        return int(resp.header.revision)

    async def _revision(self, client: Any) -> int:
        """The store's current revision (an empty commit writes nothing)."""
        from aetcd import rpc

        request = rpc.RangeRequest(key=_raw(keys.ROOT), count_only=True)
        resp = await self._call(
            "read the revision",
            lambda: client.kvstub.Range(
                request, timeout=self.rpc_timeout, metadata=client.metadata
            ),
        )
        return int(resp.header.revision)

    async def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        """Every key under `prefix` at one revision, read `_PAGE` keys at a time.

        Pages keep each reply small whatever the exports hold; all pages are
        read at the first page's revision, so together they are one snapshot.
        """
        from aetcd import rpc, utils

        client = self._require_client()
        start = _raw(prefix)
        end = utils.prefix_range_end(start)
        found: list[KV] = []
        revision = 0
        while True:
            request = rpc.RangeRequest(key=start, range_end=end, limit=_PAGE, revision=revision)
            try:
                resp = await self._call(f"read {prefix}", self._range(client, request))
            except rpc.AioRpcError as e:
                if not revision or e.code() != rpc.StatusCode.OUT_OF_RANGE:
                    raise
                # compacted between two pages: read it all again, at a newer revision
                start, found, revision = _raw(prefix), [], 0
                continue
            if not revision:
                revision = int(resp.header.revision)
            found += [KV(_key(kv.key), bytes(kv.value), int(kv.mod_revision)) for kv in resp.kvs]
            if not resp.more or not resp.kvs:
                return found, revision
            start = bytes(resp.kvs[-1].key) + b"\0"  # the next key after the last one read

    def _range(self, client: Any, request: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: client.kvstub.Range(
            request, timeout=self.rpc_timeout, metadata=client.metadata
        )

    async def _mod_revisions_at(self, prefix: str, revision: int) -> dict[str, int] | None:
        """key -> mod revision under `prefix` as of `revision`; None if compacted."""
        from aetcd import rpc, utils

        if revision <= 0:
            return {}
        client = self._require_client()
        start = _raw(prefix)
        request = rpc.RangeRequest(
            key=start, range_end=utils.prefix_range_end(start), revision=revision, keys_only=True
        )
        try:
            resp = await self._call(
                f"read {prefix} at revision {revision}",
                lambda: client.kvstub.Range(
                    request, timeout=self.rpc_timeout, metadata=client.metadata
                ),
            )
        except rpc.AioRpcError as e:
            if e.code() == rpc.StatusCode.OUT_OF_RANGE:  # compacted (or a future revision)
                return None
            raise
        return {_key(kv.key): int(kv.mod_revision) for kv in resp.kvs}

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Every put/delete under `prefix` after `start_revision`, in order, none skipped.

        Ends when the World is closed. Keeps, per watch, the keys under the
        prefix the consumer knows of (read at `start_revision`, then updated
        by each event): that is what a compaction fallback diffs against.
        """
        import aetcd

        known = await self._mod_revisions_at(prefix, start_revision)
        last = start_revision
        delay = 0.02
        #: the watch broke and has delivered nothing since (its re-arms go unlogged)
        broken = False
        while not self._closing.is_set():
            began = time.monotonic()
            try:
                async for ev in self._watch_once(prefix, last):
                    if known is not None:
                        if ev.type == "put":
                            known[ev.key] = ev.revision
                        else:
                            known.pop(ev.key, None)
                    last = ev.revision
                    delay = 0.02
                    broken = False
                    yield ev
            except aetcd.RevisionCompactedError as e:
                log.warning(
                    "watch on %s: revision %d was compacted (below %d); re-reading it",
                    prefix,
                    last + 1,
                    e.compacted_revision,
                )
                events, last, known = await self._resync(prefix, known)
                for ev in events:
                    yield ev
                continue
            except WorldClosed:
                return
            except Exception as e:
                # A watch must outlive any outage, so every other failure re-arms it,
                # for as long as it takes (a partition): the outage is logged once.
                if self._closing.is_set():
                    return
                if _transient(e):
                    self._outage.failed(f"watch {prefix}", e, began)
                    level = logging.DEBUG if broken else logging.INFO
                else:
                    level = logging.WARNING
                what = _brief(e)
                log.log(level, "watch on %s broke (%s); resuming at %d", prefix, what, last + 1)
                broken = True
                # aetcd keeps a failed watch's error on its callback, which its
                # traceback's frames hold: a cycle that would pin the channel
                # until a gc pass. Nothing needs this traceback any more.
                e.__traceback__ = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_cap)

    async def _resync(
        self, prefix: str, known: dict[str, int] | None
    ) -> tuple[list[WatchEvent], int, dict[str, int]]:
        """Synthetic events turning the consumer's view into the store's, at one revision."""
        kvs, revision = await self.get_prefix(prefix)
        events: list[WatchEvent] = []
        current = {kv.key: kv for kv in kvs}
        if known is None:
            log.warning(
                "watch on %s: what the consumer read was compacted too; keys deleted "
                "meanwhile may linger in its view",
                prefix,
            )
        for key in sorted(known or {}):
            if key not in current:
                events.append(WatchEvent("delete", key, b"", revision))
        for kv in kvs:
            if known is None or known.get(kv.key) != kv.revision:
                events.append(WatchEvent("put", kv.key, kv.value, revision))
        return events, revision, {k: kv.revision for k, kv in current.items()}

    async def _watch_once(self, prefix: str, last: int) -> AsyncIterator[WatchEvent]:
        """One etcd watch from ``last + 1`` until its stream breaks (raises) or closes.

        Uses aetcd's Watcher callbacks with our own queue rather than its
        iterator: a queue can be waited on with a timeout safely, which lets
        us notice a stream that ended without an error (aetcd would then wait
        forever) and reset it.
        """
        import aetcd

        client = self._require_client()
        watcher = client._watcher
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def deliver(item: Any) -> None:
            queue.put_nowait(item)

        start = _raw(prefix)
        callback = await _add_watch(
            watcher,
            start,
            deliver,
            range_end=aetcd.utils.prefix_range_end(start),
            start_revision=last + 1,
        )
        try:
            while True:
                try:
                    item = await _next_item(queue, 1.0)
                except TimeoutError:
                    handler = watcher._request_handler
                    if handler is not None and handler.done():
                        await _keeping_cancel(
                            watcher._terminate_stream(
                                aetcd.ConnectionFailedError("the watch stream ended")
                            )
                        )
                    continue
                if item is None:  # the client is closing
                    raise WorldClosed("the etcd World is closed")
                if isinstance(item, BaseException):
                    # Drop our reference as it is raised: its traceback holds
                    # this frame, and a cycle would keep the gRPC channel (and
                    # its poller thread) alive until the next gc pass.
                    error, item = item, None
                    try:
                        raise error
                    finally:
                        del error
                kind: Literal["put", "delete"] = "put" if item.kind == "PUT" else "delete"
                yield WatchEvent(
                    kind,
                    _key(item.kv.key),
                    bytes(item.kv.value) if kind == "put" else b"",
                    int(item.kv.mod_revision),
                )
        finally:
            if callback.watch_id is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await watcher.cancel(callback.watch_id)

    # -- membership (issue 10: world/autocluster.py) ---------------------------------

    async def raw_call(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        """`fn(client)` on the aetcd client in use, retried as every World call is.

        For etcd APIs the World does not wrap (the member API, etcd/members.py);
        each try gets the client in use then, so a retry follows `set_endpoints`.
        """
        return await self._call(what, lambda: fn(self._require_client()))

    @property
    def lease_id(self) -> int:
        """This agent's session lease (0 before it is granted)."""
        return self._lease_id

    async def create_leased(self, key: str, value: bytes) -> bool:
        """Create `key` on this agent's lease if it is absent; whether it was created.

        etcd's election recipe: raft orders the creations, the first wins and
        holds the key until its lease ends. Not re-put when the lease is lost
        and re-granted (another agent may have won the key meanwhile).
        """
        lease = self._lease_id
        try:
            ok, _ = await self._create_on_lease(_raw(key), value, f"create {key}")
        except Exception as e:
            # our lease ended (an agent starved of CPU past its TTL) before the
            # keep-alive noticed: a new one, then the creation on it
            if not _lease_not_found(e):
                raise
            async with self._lease_lock:
                if self._lease_id == lease:
                    await self._regrant()
            ok, _ = await self._create_on_lease(_raw(key), value, f"create {key}")
        return bool(ok)

    async def _create_on_lease(
        self, kb: bytes, value: bytes, what: str, *, read_back: bool = False
    ) -> tuple[bool, Any]:
        """Put `kb` on our lease only if it does not exist (one transaction);
        with `read_back`, the responses carry the holder's value when it did."""
        client = self._require_client()
        t = client.transactions
        result: tuple[bool, Any] = await self._call(
            what,
            lambda: client.transaction(
                compare=[t.version(kb) == 0],
                success=[t.put(kb, value, lease=self._lease_id)],
                failure=[t.get(kb)] if read_back else [],
            ),
        )
        return result

    async def delete_leased(self, key: str) -> bool:
        """Delete `key` if it rides on this agent's current lease; whether it did."""
        from aetcd import rpc

        client = self._require_client()
        kb = _raw(key)
        request = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    key=kb,
                    result=rpc.Compare.EQUAL,
                    target=rpc.Compare.LEASE,
                    lease=self._lease_id,
                )
            ],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=kb))],
        )
        resp = await self._call(
            f"delete {key}",
            lambda: client.kvstub.Txn(request, timeout=self.rpc_timeout, metadata=client.metadata),
        )
        return bool(resp.succeeded)

    async def set_endpoints(self, urls: Sequence[str]) -> bool:
        """Talk to the cluster through `urls` from now on; False if they are the same.

        A new aetcd client is made for them (`_make_client`) and swapped in;
        the old one's watches end with a transient error, so each re-arms on
        the new client from its last revision (none skips an event); requests
        under way on the old channel may finish (each is bounded by
        ``rpc_timeout``), then it is closed. Raises WorldError for URLs that
        cannot form one gRPC target; the endpoints in use stay then.
        """
        import aetcd

        wanted = list(urls)
        if wanted == self.endpoints:
            return False
        current = self._require_client()
        target = grpc_target(wanted)
        before = self.endpoints, self._target
        self.endpoints, self._target = wanted, target
        try:
            fresh = await self._make_client()
        except BaseException:
            self.endpoints, self._target = before
            raise
        old = current.inner
        current.inner = fresh
        log.info("etcd endpoints are now %s", self._where())
        with contextlib.suppress(Exception):
            await _keeping_cancel(
                old._watcher._terminate_stream(
                    aetcd.ConnectionFailedError("the etcd endpoints changed")
                )
            )
        # Retired in the background: its calls under way get their grace, but
        # the caller (a member leaving, which swaps endpoints twice) does not
        # wait on it: waiting made a clean stop take seconds per swap.
        task = asyncio.create_task(
            _retire_client(old, self.rpc_timeout, self._hurry), name="retire etcd client"
        )
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return True

    async def _finish_retiring(self) -> None:
        """On the way out: close the swapped-out clients now (bounded), not after their grace."""
        self._hurry.set()
        if self._retiring:
            await asyncio.wait(set(self._retiring), timeout=KEEPING_CANCEL_WAIT)


async def _retire_client(client: Any, grace: float, hurry: asyncio.Event) -> None:
    """Close a client that was swapped out, once its calls under way have ended.

    Its calls are given `grace` s (each is bounded by the RPC timeout), or
    less once `hurry` is set (the World closes), then cancelled; only this
    channel's calls are waited for (not every gRPC task of the process, as
    `_close_client` does on the way out).
    """
    channel = client.channel
    deadline = time.monotonic() + grace
    while channel is not None and time.monotonic() < deadline and not hurry.is_set():
        if all(c.done() for c in list(getattr(channel, "_active_calls", ()))):
            break
        await asyncio.sleep(0.05)
    calls = list(getattr(channel, "_active_calls", ())) if channel is not None else []
    for call in calls:
        call.cancel()
    try:
        await _keeping_cancel(client.close())
    except Exception as e:  # in the background: nobody else would hear of it
        log.debug("closing a swapped-out etcd client: %s", e)
    if calls:
        ended = [asyncio.ensure_future(c.code()) for c in calls]
        done, pending = await asyncio.wait(ended, timeout=2.0)
        for f in pending:
            f.cancel()
        if pending:
            await asyncio.wait(pending)
        for f in done:
            f.exception()  # retrieved: a cancelled call's status is of no interest


@contextlib.asynccontextmanager
async def observer(
    endpoints: Sequence[str], *, tls: TlsFiles | None = None, timeout: float = 5.0
) -> AsyncIterator[EtcdWorld]:
    """A World that looks without joining: no lease, no host key (`pymgmt cluster`).

    Reads and plain puts work as on any World; nothing it does vanishes
    with it, and no other host sees it as a host. Raises WorldUnavailable
    when no member at `endpoints` answers within `timeout` s.
    """
    world = EtcdWorld("observer", endpoints, tls=tls, connect_timeout=timeout, op_timeout=timeout)
    await world._connect()
    try:
        yield world
    finally:
        await world._shutdown()


__all__ = [
    "EtcdWorld",
    "HostnameTaken",
    "WorldClosed",
    "WorldUnavailable",
    "grpc_target",
    "observer",
]
