"""etcd's member API, typed: list, add a learner, promote, remove.

aetcd 1.0 has no learner flag on ``add_member``, so these go through its
raw cluster stub (``MemberAddRequest(isLearner=True)``,
``MemberPromoteRequest``, ``MemberRemoveRequest``, ``MemberListRequest``)
with `EtcdWorld`'s retrying call: "unavailable" (no leader, a member
switching) is retried there. etcd's refusals ("unhealthy cluster" for
~5 s after a change -- gRPC "unavailable" too, but not an outage --, "can
only promote a learner member which is in sync with leader", "too many
learner members") reach the caller as `MemberRefused`; the clustering loop
retries those with back-off. A member that is not there (`MemberGone`)
and every other error etcd answers with reach it as a `WorldError`, never
as a raw gRPC error: nothing etcd says ends the agent.

`Member` and `same_urls` are plain data: the pure chooser uses them too.
Nothing heavy is imported at the top.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..base import WorldError

log = logging.getLogger("pymgmt.cluster")

if TYPE_CHECKING:
    from .client import EtcdWorld
    from .tls import TlsFiles


class MemberRefused(WorldError):
    """etcd refused a membership change for now (it says why); worth retrying later."""


class MemberGone(WorldError):
    """The member is not (or no longer) in the cluster: retrying cannot help."""


class MemberConflict(WorldError):
    """A member with these peer URLs (or this id) exists already: re-read, then decide."""


@dataclass(frozen=True)
class Member:
    """One etcd member as MemberList shows it.

    A member added but not started yet has no name and no client URLs
    (etcd learns them when it first connects); names are hostnames here.
    """

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    @property
    def started(self) -> bool:
        return bool(self.name)


def same_urls(a: Iterable[str], b: Iterable[str]) -> bool:
    """Two lists of URLs name the same set (etcd keeps them as given)."""
    return {u.rstrip("/") for u in a} == {u.rstrip("/") for u in b}


def valid_url(url: object) -> bool:
    """`url` is exactly ``http(s)://IP:PORT`` (an IPv6 address in brackets), nothing else.

    The only URLs taken from other hosts' keys (volunteers, nominations)
    and from the member list: a name would be resolved by etcd (and could
    point anywhere), a path, query, user or odd spelling is junk or forgery.
    """
    if not isinstance(url, str) or not url.isascii() or not url.isprintable():
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        ip = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or port is None or port == 0:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return False  # a link-local zone names an interface of the writer's machine
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    return url.rstrip("/") == f"{parts.scheme}://{shown}:{port}"


def _member(m: Any) -> Member:
    return Member(
        id=int(m.ID),
        name=str(m.name),
        peer_urls=tuple(m.peerURLs),
        client_urls=tuple(m.clientURLs),
        is_learner=bool(m.isLearner),
    )


def _refused(e: BaseException) -> WorldError | None:
    """etcd's answer to a membership call, as a `WorldError` (None: not an answer to map).

    "unhealthy cluster" comes as gRPC "unavailable", as an outage does: it
    is told apart by its text, so the World does not log it as the cluster
    being unreachable and retry it for ever.
    """
    from aetcd import rpc

    if not isinstance(e, rpc.AioRpcError):
        return None
    code, details = e.code(), str(e.details())
    if code == rpc.StatusCode.NOT_FOUND:
        return MemberGone(details)
    if "already exist" in details:
        return MemberConflict(details)
    if code in (rpc.StatusCode.FAILED_PRECONDITION, rpc.StatusCode.RESOURCE_EXHAUSTED):
        return MemberRefused(details)
    if code == rpc.StatusCode.UNAVAILABLE and "unhealthy cluster" in details:
        return MemberRefused(details)
    return None


async def _cluster_call(world: EtcdWorld, what: str, method: str, request: Any) -> Any:
    from aetcd import rpc

    async def attempt(client: Any) -> Any:
        try:
            return await getattr(client.clusterstub, method)(
                request, timeout=world.rpc_timeout, metadata=client.metadata
            )
        except rpc.AioRpcError as e:
            # mapped here, inside the World's retrying call: a refusal is an answer
            answer = _refused(e)
            if answer is None:
                raise
            try:
                raise answer from None
            finally:
                # no cycle (this frame <-> the error's traceback) keeps the channel alive
                del answer

    try:
        return await world.raw_call(what, attempt)
    except rpc.AioRpcError as e:
        raise WorldError(f"{what}: etcd says {e.code().name.lower()}: {e.details()}") from None


async def member_list(world: EtcdWorld) -> list[Member]:
    """Every member (voting and learners), read linearizably through the leader."""
    from aetcd import rpc

    resp = await _cluster_call(
        world, "list the members", "MemberList", rpc.MemberListRequest(linearizable=True)
    )
    return [_member(m) for m in resp.members]


async def add_learner(world: EtcdWorld, peer_urls: Sequence[str]) -> Member:
    """Add a non-voting member with `peer_urls`; it is to start with state "existing"."""
    from aetcd import rpc

    request = rpc.MemberAddRequest(peerURLs=list(peer_urls), isLearner=True)
    resp = await _cluster_call(
        world, f"add a learner at {','.join(peer_urls)}", "MemberAdd", request
    )
    return _member(resp.member)


async def promote(world: EtcdWorld, member_id: int) -> None:
    """Make a learner a voting member (refused until it is in sync with the leader)."""
    from aetcd import rpc

    request = rpc.MemberPromoteRequest(ID=member_id)
    await _cluster_call(world, f"promote member {member_id:x}", "MemberPromote", request)


async def remove(world: EtcdWorld, member_id: int) -> None:
    """Remove a member; its etcd, if it runs, exits by itself. One already gone is done."""
    from aetcd import rpc

    request = rpc.MemberRemoveRequest(ID=member_id)
    try:
        await _cluster_call(world, f"remove member {member_id:x}", "MemberRemove", request)
    except MemberGone:
        log.debug("member %x was removed already", member_id)


async def ask(
    endpoints: Sequence[str], *, tls: TlsFiles | None = None, timeout: float = 5.0
) -> list[Member] | None:
    """The member list as the cluster at `endpoints` says it; None if nobody answers.

    For the start-up question "am I still a member?", before this agent's
    own World exists: a throw-away client, closed before returning.
    """
    import aetcd
    from aetcd import rpc

    from .client import EtcdWorld, _close_client, _transient

    probe = EtcdWorld("probe", endpoints, rpc_timeout=min(timeout, 2.0), tls=tls)
    client = await probe._make_client()
    deadline = time.monotonic() + timeout
    delay = 0.05
    try:
        while True:
            try:
                resp = await client.clusterstub.MemberList(
                    rpc.MemberListRequest(linearizable=True),
                    timeout=probe.rpc_timeout,
                    metadata=client.metadata,
                )
                return [_member(m) for m in resp.members]
            except (aetcd.ClientError, rpc.AioRpcError) as e:
                if not _transient(e) or time.monotonic() + delay >= deadline:
                    log.info("no member list from %s: %s", ",".join(endpoints), str(e))
                    return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
    finally:
        await _close_client(client, [])


__all__ = [
    "Member",
    "MemberConflict",
    "MemberGone",
    "MemberRefused",
    "add_learner",
    "ask",
    "member_list",
    "promote",
    "remove",
    "same_urls",
    "valid_url",
]
