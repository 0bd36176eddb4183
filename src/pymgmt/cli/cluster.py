"""``pymgmt cluster status|ideal-size N``: the cluster, as an operator sees it.

Both connect to the cluster's etcd like any client (``--seeds``, default
mgmt's http://127.0.0.1:2379; the TLS flags as for `run`) but register no
host and hold no lease: looking changes nothing. `status` reads the member
list and pymgmt's keys in one go and prints, or with ``--json`` writes one
object:

    cluster at http://127.0.1.1:2379: 3 of 3 members, leader h1
    members:
      h1  voting   http://127.0.1.1:2379  converged  (leader)
      h2  voting   http://127.0.1.2:2379  converged
      h3  learner  (not started)
    clients:
      h4  converged   (volunteer)

Everything read from the cluster is another host's data: names that are
not host names are left out, and URLs that are not printable ASCII
http(s)://HOST:PORT are shown as "(not a URL)", never printed raw (a
member's client URLs are what its etcd published about itself).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..world.base import keys, valid_hostname

if TYPE_CHECKING:
    import argparse

    from ..world.etcd.client import EtcdWorld
    from ..world.etcd.tls import TlsFiles

#: mgmt's default client URL, where `pymgmt cluster` looks without --seeds
DEFAULT_SEEDS = ("http://127.0.0.1:2379",)


@dataclass
class MemberRow:
    name: str
    id: str
    role: str  # "voting", "learner" or "not started"
    client_urls: list[str]
    peer_urls: list[str]
    converged: bool | None


@dataclass
class HostRow:
    name: str
    converged: bool | None
    volunteer: bool


@dataclass
class Status:
    endpoints: list[str]
    ideal_size: int | None
    leader: str
    members: list[MemberRow] = field(default_factory=list)
    clients: list[HostRow] = field(default_factory=list)
    nominated: list[str] = field(default_factory=list)


async def _names(world: EtcdWorld, prefix: str) -> dict[str, bytes]:
    kvs, _ = await world.get_prefix(prefix)
    out = {}
    for kv in kvs:
        name = kv.key[len(prefix) :]
        if valid_hostname(name):
            out[name] = kv.value
    return out


async def gather(world: EtcdWorld) -> Status:
    """Everything `status` shows, read from the cluster."""
    from ..world.etcd.members import member_list

    listed = await member_list(world)
    hosts = await _names(world, keys.HOSTS)
    converged = {h: v == b"true" for h, v in (await _names(world, keys.CONVERGED)).items()}
    volunteers = await _names(world, keys.VOLUNTEERS)
    nominated = await _names(world, keys.NOMINATED)
    ideal_kvs, _ = await world.get_prefix(keys.IDEAL_SIZE)
    leader_kvs, _ = await world.get_prefix(keys.LEADER)
    ideal: int | None = None
    for kv in ideal_kvs:
        if kv.key == keys.IDEAL_SIZE:
            try:
                ideal = int(kv.value.decode().strip())
            except ValueError:
                ideal = None
    leader = ""
    for kv in leader_kvs:
        if kv.key == keys.LEADER:
            text = kv.value.decode(errors="replace").strip()
            leader = text if valid_hostname(text) else ""
    status = Status(endpoints=list(world.endpoints), ideal_size=ideal, leader=leader)
    member_names = set()
    for m in sorted(listed, key=lambda m: (not m.name, m.name, m.id)):
        name = m.name if valid_hostname(m.name) else ""
        member_names.add(name)
        role = "not started" if not m.started else "learner" if m.is_learner else "voting"
        status.members.append(
            MemberRow(
                name=name,
                id=f"{m.id:x}",
                role=role,
                client_urls=list(m.client_urls),
                peer_urls=list(m.peer_urls),
                converged=converged.get(name) if name else None,
            )
        )
    for h in sorted(hosts):
        if h not in member_names:
            status.clients.append(HostRow(h, converged.get(h), h in volunteers))
    status.nominated = sorted(nominated)
    return status


def render(status: Status) -> str:
    """The human text of `status` (see the module docstring)."""
    voting = sum(1 for m in status.members if m.role == "voting")
    want = "?" if status.ideal_size is None else str(status.ideal_size)
    lead = status.leader or "none elected"
    lines = [
        f"cluster at {', '.join(status.endpoints)}: {voting} of {want} members, leader {lead}",
        "members:",
    ]
    width = max([len(m.name) for m in status.members] + [len(c.name) for c in status.clients] + [4])

    def state(c: bool | None) -> str:
        return "converged" if c else "not converged" if c is False else "-"

    for m in status.members:
        name = m.name or f"({m.id})"
        urls = ",".join(map(_url, m.client_urls)) if m.role != "not started" else "(not started)"
        mark = "  (leader)" if m.name and m.name == status.leader else ""
        lines.append(f"  {name:<{width}}  {m.role:<8} {urls}  {state(m.converged)}{mark}")
    lines.append("clients:" if status.clients else "clients: none")
    for c in status.clients:
        vol = "  (volunteer)" if c.volunteer else ""
        lines.append(f"  {c.name:<{width}}  {state(c.converged)}{vol}")
    members = {m.name for m in status.members if m.role != "not started"}
    if pending := [h for h in status.nominated if h not in members]:
        lines.append(f"nominated, joining: {', '.join(pending)}")
    return "\n".join(lines) + "\n"


def _url(url: str) -> str:
    """`url` if it is a printable ASCII http(s)://HOST:PORT, else a placeholder."""
    from ..world.base import WorldError
    from ..world.etcd.urls import host_port

    if not (url.isascii() and url.isprintable()):
        return "(not a URL)"
    try:
        host_port(url)
    except WorldError:
        return "(not a URL)"
    return url


def _tls(args: argparse.Namespace) -> TlsFiles | None:
    from ..world.etcd.tls import TlsFiles

    if args.pki:
        import socket

        return TlsFiles.from_pki(Path(args.pki), args.hostname or socket.gethostname())
    if args.tls_ca:
        return TlsFiles(Path(args.tls_ca), Path(args.tls_cert), Path(args.tls_key))
    return None


def cluster_command(args: argparse.Namespace) -> int:
    """`pymgmt cluster status|ideal-size`: 0 on success, 1 when the cluster cannot be read."""
    import asyncio

    from ..world.base import WorldError

    try:
        return asyncio.run(_cluster(args))
    except WorldError as e:
        _error(str(e), args)
        return 1
    except KeyboardInterrupt:
        print("pymgmt: interrupted; nothing was changed", file=sys.stderr)
        return 130


def _error(message: str, args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"event": "error", "message": message}))
    else:
        print(f"pymgmt: error: {message}", file=sys.stderr)


async def _cluster(args: argparse.Namespace) -> int:
    from ..world.etcd.client import observer

    seeds: Sequence[str] = args.seeds or DEFAULT_SEEDS
    async with observer(seeds, tls=_tls(args)) as world:
        if args.cluster_command == "ideal-size":
            await world.put(keys.IDEAL_SIZE, str(args.size).encode())
            print(f"the cluster's ideal size is now {args.size}", file=sys.stderr)
            return 0
        status = await gather(world)
    if args.json:
        print(json.dumps(_as_json(status)))
    else:
        sys.stdout.write(render(status))
    return 0


def _as_json(status: Status) -> dict[str, Any]:
    return asdict(status)


__all__ = ["Status", "cluster_command", "gather", "render"]
