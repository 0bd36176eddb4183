"""A host cut off from its cluster: real agents on a private network (tests/netns.py).

Host h1 serves etcd in its namespace; h2 is a client of it (``--seeds
--no-server``: this is about the partitioned host's behaviour, not about
membership). Pulling h2's cable (its veth down) leaves its connections
hanging, as a real partition does; nothing is refused or reset. The
outcome wanted (issue 10): h2 keeps enforcing its last graph (drift repair,
graph changes), never exits, and once the cable is back everything made on
either side meanwhile reaches the other, nothing lost. How fast that is,
is measured by bench/partition.py, never asserted here.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import CLUSTER_DEADLINE, Cluster, Host, files_in
from helpers import checked, event, graph_doc, write_atomic, write_graph
from netns import NetnsUnavailable, Network, cluster_network, ip, namespaces, network, unavailable

pytestmark = pytest.mark.slow

HOSTS = ("h1", "h2")


@pytest.fixture
def net(cluster: Cluster) -> Iterator[Network]:
    """h1 and h2 on a private network; agents and etcd stopped before it is deleted."""
    with cluster_network(HOSTS, "p", cluster.close) as n:
        yield n


def on_network(cluster: Cluster, net: Network, name: str) -> Host:
    """The cluster's host `name`, living in its namespace at its network address."""
    where = net.hosts[name]
    host = Host(
        name=name,
        address=where.address,
        client_port=2379,  # the namespace is ours alone: mgmt's default ports are free
        peer_port=2380,
        prefix=cluster.base / name / "state",
        root=cluster.base / name / "root",
        wrapper=where.prefix,
    )
    (host.root / "d").mkdir(parents=True)
    cluster.hosts[name] = host
    return host


def content(host: Host, export: str) -> str:
    return f"{export} exported by {host.name}\n"


def graph(host: Host, exports: list[str]) -> Path:
    """A local file, the `exports` (``@@``), and every other host's exports collected,
    all in the host's directory ``d``."""
    d = host.root / "d"
    files = [{"name": "local", "path": str(d / "local"), "content": f"{host.name}'s own\n"}]
    files += [{"name": f"@@{e}", "path": str(d / e), "content": content(host, e)} for e in exports]
    doc = graph_doc(f"partition-{host.name}", files=files)
    doc["collect"] = [{"kind": "file", "pattern": f"{d}/"}]
    path = host.root.parent / "graph.yaml"
    write_graph(path, doc)
    return path


def holds(host: Host, exported: dict[str, tuple[Host, ...]]) -> bool:
    """`host`'s directory holds exactly its own file and these exports (name -> exporter)."""
    want = {"local": f"{host.name}'s own\n"}
    want.update({e: content(exporter[0], e) for e, exporter in exported.items()})
    return files_in(host.root / "d") == want


def test_the_network_helper_cuts_and_heals_a_link_and_leaves_the_root_namespace_alone() -> None:
    root_links = ip("-o", "link", "show").stdout
    root_addrs = ip("-o", "addr", "show").stdout
    try:
        with network(HOSTS, tag="n") as n:
            h1 = n.hosts["h1"].address
            assert n.connects("h2", h1, 9)  # refused, but it got there and back
            n.cut("h2")
            assert not n.connects("h2", h1, 9, timeout=0.5)
            n.heal("h2")
            assert n.connects("h2", h1, 9)
            # nothing was made in the root namespace
            assert ip("-o", "link", "show").stdout == root_links
            assert ip("-o", "addr", "show").stdout == root_addrs
            made = {h.namespace for h in n.hosts.values()} | {n.switch}
            assert made <= namespaces()
    except NetnsUnavailable as e:
        unavailable(e)
    assert not made & namespaces()


def test_a_partitioned_host_enforces_its_graph_and_catches_up_when_healed(
    net: Network, cluster: Cluster
) -> None:
    h1, h2 = on_network(cluster, net, "h1"), on_network(cluster, net, "h2")
    a1 = cluster.start("h1", graph(h1, ["e1a"]))
    a2 = cluster.start("h2", graph(h2, ["e2a"]), seeds=h1, serve=False)
    before = {"e1a": (h1,), "e2a": (h2,)}
    cluster.wait_for(lambda: holds(h1, before) and holds(h2, before), "h1 and h2 exchanged")

    cut_at = a1.mark()
    net.cut("h2")
    # The majority side sees h2's lease run out: the partition is real, and
    # h2's keys (host key, exports) are gone from the store until it heals.
    a1.wait_event(
        event("host_left", host="h2"), since=cut_at, timeout=CLUSTER_DEADLINE, what="h1 saw h2 go"
    )

    # h2 goes on enforcing its graph: drift is repaired
    local = h2.root / "d" / "local"
    since = a2.mark()
    write_atomic(local, "drifted\n")
    a2.wait_event(
        checked("File[local]", applied=True, drift=True), since=since, what="h2's drift repair"
    )
    assert local.read_text() == "h2's own\n"
    # ... and a new graph is swapped in: a new export, made here at once
    graph(h2, ["e2a", "e2b"])
    cluster.wait_for(lambda: (h2.root / "d" / "e2b").exists(), "h2 made its new export")
    # meanwhile h1 exports something new too
    graph(h1, ["e1a", "e1b"])
    cluster.wait_for(lambda: (h1.root / "d" / "e1b").exists(), "h1 made its new export")
    # Each side could not know of the other's: the cut is still there.
    assert not (h1.root / "d" / "e2b").exists()
    assert not (h2.root / "d" / "e1b").exists()
    # ... and until h2's own calls have failed (one RPC timeout, 5 s): a
    # partition it knows of, not one that ended before it noticed
    cluster.wait_for(lambda: "does not answer" in a2.stderr, "h2 noticed the partition")
    assert a2.proc.poll() is None, a2.describe()

    healed_at = a1.mark()
    net.heal("h2")
    after = {"e1a": (h1,), "e1b": (h1,), "e2a": (h2,), "e2b": (h2,)}
    cluster.wait_for(lambda: holds(h1, after) and holds(h2, after), "the exchange after healing")
    # h2 is back in h1's view: its host key re-put on a new lease
    a1.wait_event(event("host_joined", host="h2"), since=healed_at, what="h1 saw h2 come back")

    # h2 never gave up: no exit, no "cluster lost", and said so in a few lines
    assert a2.proc.poll() is None, a2.describe()
    assert not a2.find(event("cluster_lost")), a2.describe()
    log = a2.stderr
    assert log.count("does not answer") == 1, log[-3000:]
    assert "answers again" in log, log[-3000:]
    assert "was lost" in log, log[-3000:]  # its lease, re-granted
    assert cluster.stop("h2", signal.SIGTERM) == 0
    assert cluster.stop("h1", signal.SIGTERM) == 0
