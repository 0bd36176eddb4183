"""etcd's member API, typed: list, add a learner, promote, remove.

aetcd 1.0 has no learner flag on ``add_member``, so these go through its
raw cluster stub (``MemberAddRequest(isLearner=True)``,
``MemberPromoteRequest``, ``MemberRemoveRequest``, ``MemberListRequest``)
with `EtcdWorld`'s retrying call: "unavailable" (no leader, a member
switching) is retried there. etcd's other refusals ("unhealthy cluster"
for ~5 s after a change, "can only promote a learner member which is in
sync with leader", "too many learner members") reach the caller as
`MemberRefused`; the clustering loop retries those with back-off.

`Member` and `same_urls` are plain data: the pure chooser uses them too.
Nothing heavy is imported at the top.
"""

from __future__ import annotations

import asyncio
import logging
import time
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


def _member(m: Any) -> Member:
    return Member(
        id=int(m.ID),
        name=str(m.name),
        peer_urls=tuple(m.peerURLs),
        client_urls=tuple(m.clientURLs),
        is_learner=bool(m.isLearner),
    )


def _refused(e: BaseException) -> MemberRefused | None:
    """etcd's word for a change it will not make now, as a `MemberRefused`."""
    from aetcd import rpc

    if isinstance(e, rpc.AioRpcError) and e.code() in (
        rpc.StatusCode.FAILED_PRECONDITION,
        rpc.StatusCode.NOT_FOUND,
        rpc.StatusCode.UNAVAILABLE,
        rpc.StatusCode.DEADLINE_EXCEEDED,
        rpc.StatusCode.RESOURCE_EXHAUSTED,
    ):
        return MemberRefused(str(e.details()))
    return None


async def _cluster_call(world: EtcdWorld, what: str, method: str, request: Any) -> Any:
    try:
        return await world.raw_call(
            what,
            lambda client: getattr(client.clusterstub, method)(
                request, timeout=world.rpc_timeout, metadata=client.metadata
            ),
        )
    except Exception as e:
        if refused := _refused(e):
            raise refused from None
        raise


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
    """Remove a member; its etcd, if it runs, exits by itself."""
    from aetcd import rpc

    request = rpc.MemberRemoveRequest(ID=member_id)
    await _cluster_call(world, f"remove member {member_id:x}", "MemberRemove", request)


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
    "MemberRefused",
    "add_learner",
    "ask",
    "member_list",
    "promote",
    "remove",
    "same_urls",
]
