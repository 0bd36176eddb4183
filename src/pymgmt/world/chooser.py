"""The cluster leader's decision: which one membership change to make next. PURE.

`choose` looks at what the leader read (the member list, the volunteers,
the nominations, the ideal size, and how long some members have been in a
suspicious state) and returns at most one `Action`; the leader carries it
out (world/autocluster.py), reads again, and asks again. One change at a
time is etcd's own advice: two changes in flight can cost the quorum (the
2 -> 3 step), and etcd allows one learner at a time anyway.

In order, the first that applies:

1. **Gone**: a member whose host has had no volunteer key for `grace` s
   (its lease expired: the host died, or it withdrew to leave) is removed.
   So is a learner that did not start within `start_timeout` s (its host
   could not start etcd); the leader then passes that host over for a
   while (`View.passed_over`), so one host that never starts cannot hold
   up the others. Never the leader itself.
2. **Promote** a learner that has started (etcd refuses until it is in
   sync: the leader retries).
3. **Wait** while a learner has not started yet (one change at a time),
   after writing its host's nomination if it is missing (a leader that
   died between adding the learner and nominating its host).
4. **Stale nominations**: a nominated host that is not a member loses its
   nomination (a failed or undone nomination).
5. **Grow**: fewer members than the ideal size: the first volunteer in
   sorted order that is not a member, not passed over, with peer URLs
   (the caller keeps only ``http(s)://IP:PORT`` ones) that clash with no
   member's and no earlier volunteer's, is nominated (added as a learner).
6. **Shrink**: more voting members than the ideal size: the last member in
   sorted order other than the leader is removed.

The ideal size is at least 1: a cluster is never shrunk to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .etcd.members import Member, same_urls


@dataclass(frozen=True)
class View:
    """What the leader knows when it decides."""

    #: the leader's hostname (never removed by its own decision)
    me: str
    ideal: int
    members: tuple[Member, ...]
    #: host -> the peer URLs it volunteers with (its key rides on its lease)
    volunteers: Mapping[str, tuple[str, ...]]
    #: host -> the peer URLs it was nominated with
    nominated: Mapping[str, tuple[str, ...]]
    #: seconds, on the clock `since` was kept with
    now: float = 0.0
    #: member id -> when it was first seen without a live host (see `track`)
    absent_since: Mapping[int, float] = field(default_factory=dict)
    #: member id -> when it was first seen as an unstarted learner
    unstarted_since: Mapping[int, float] = field(default_factory=dict)
    #: how long a member may lack a volunteer key before it is removed
    grace: float = 2.0
    #: how long a learner may stay unstarted before it is removed
    start_timeout: float = 30.0
    #: hosts not to nominate now (their learner did not start lately)
    passed_over: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Remove:
    """Delete `host`'s nomination, then remove its member."""

    member_id: int
    host: str
    reason: str


@dataclass(frozen=True)
class Promote:
    member_id: int
    host: str


@dataclass(frozen=True)
class Nominate:
    """Add a learner at `peer_urls` (unless `add` is False: it exists), then nominate `host`."""

    host: str
    peer_urls: tuple[str, ...]
    add: bool = True


@dataclass(frozen=True)
class Unnominate:
    """Delete the nomination of `host`, which is not a member."""

    host: str


Action = Remove | Promote | Nominate | Unnominate

#: how the reason of a Remove for a learner that never started begins
NEVER_STARTED = "it did not start within"


def host_of(member: Member, view: View) -> str | None:
    """The host a member belongs to: its name once started, else whose peer URLs it has."""
    if member.name:
        return member.name
    for table in (view.nominated, view.volunteers):
        for host in sorted(table):
            if same_urls(table[host], member.peer_urls):
                return host
    return None


def absent(view: View) -> set[int]:
    """Ids of the members whose host has no volunteer key now (the leader excepted)."""
    out = set()
    for m in view.members:
        host = host_of(m, view)
        if host != view.me and (host is None or host not in view.volunteers):
            out.add(m.id)
    return out


def unstarted(view: View) -> set[int]:
    return {m.id for m in view.members if not m.started}


def track(previous: Mapping[int, float], ids: set[int], now: float) -> dict[int, float]:
    """`ids` with when each was first seen in the set: kept from `previous`, else `now`."""
    return {i: previous.get(i, now) for i in ids}


def choose(view: View) -> Action | None:
    """The next membership change, or None when the cluster is as it should be."""
    ideal = max(1, view.ideal)
    members = sorted(view.members, key=lambda m: (host_of(m, view) or "", m.id))
    hosts = {m.id: host_of(m, view) for m in members}
    gone = absent(view)

    # 1. gone hosts, and learners that never started
    for m in members:
        host = hosts[m.id]
        if host == view.me:
            continue
        label = host or f"{m.id:x}"
        if m.id in gone and view.now - view.absent_since.get(m.id, view.now) >= view.grace:
            return Remove(m.id, label, "its host is gone")
        waited = view.now - view.unstarted_since.get(m.id, view.now)
        if not m.started and waited >= view.start_timeout:
            return Remove(m.id, label, f"{NEVER_STARTED} {view.start_timeout:g} s")

    # 2. promote a started learner
    for m in members:
        if m.is_learner and m.started:
            return Promote(m.id, hosts[m.id] or m.name)

    # 3. a learner on its way: one change at a time (shrinking drops it first)
    for m in members:
        if not m.started:
            host = hosts[m.id]
            if len(members) > ideal:
                return Remove(m.id, host or f"{m.id:x}", f"the cluster shrinks to {ideal}")
            if host is not None and host in view.volunteers and host not in view.nominated:
                return Nominate(host, m.peer_urls, add=False)
            return None

    # 4. nominations of hosts that are not members
    member_hosts = {h for h in hosts.values() if h is not None}
    for host in sorted(view.nominated):
        if host not in member_hosts:
            return Unnominate(host)

    # 5. grow
    if len(members) < ideal:
        taken = [m.peer_urls for m in members]
        for host in sorted(view.volunteers):
            urls = view.volunteers[host]
            clash = any(set(urls) & set(t) for t in taken)
            taken.append(urls)
            if host in member_hosts or host in view.passed_over or not urls or clash:
                continue
            return Nominate(host, urls)
        return None

    # 6. shrink
    voting = [m for m in members if not m.is_learner]
    if len(voting) > ideal:
        for m in reversed(voting):
            host = hosts[m.id]
            if host != view.me:
                return Remove(m.id, host or f"{m.id:x}", f"the cluster shrinks to {ideal}")
    return None


__all__ = [
    "NEVER_STARTED",
    "Action",
    "Nominate",
    "Promote",
    "Remove",
    "Unnominate",
    "View",
    "absent",
    "choose",
    "host_of",
    "track",
    "unstarted",
]
