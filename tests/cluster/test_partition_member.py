"""An etcd *member* cut off from its cluster (issue 10: partitions and membership together).

Three hosts on a private network (tests/netns.py), all three etcd members
(ideal size 3). Cutting h3's cable leaves h1 and h2 their quorum: h3's
lease runs out there, the leader removes h3's member, and the cluster goes
on with two. h3, alone with a member that has no leader, keeps enforcing
its graph. Once healed, h3's etcd learns it was removed and exits; h3
wipes that member's data, carries on as a client, volunteers again, and the
leader brings it back as a member: three again, and every export made on
either side meanwhile reaches the other.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator

import pytest
from harness import CLUSTER_DEADLINE, Cluster, Host, etcdctl_binary
from helpers import DEADLINE, checked, event, write_atomic
from netns import Network, cluster_network
from test_partition import graph, holds, on_network

pytestmark = pytest.mark.slow

HOSTS = ("h1", "h2", "h3")
#: membership changes wait out etcd's refusals (~5 s after a change) and a lease
SETTLE = 120.0


@pytest.fixture
def net(cluster: Cluster) -> Iterator[Network]:
    with cluster_network(HOSTS, "m", cluster.close) as n:
        yield n


def voting(net: Network, via: Host) -> set[str]:
    """The started voting members, as the etcd of `via` says (from inside its namespace)."""
    proc = subprocess.run(
        [*net.hosts[via.name].prefix, etcdctl_binary(), "--endpoints", via.client_url,
         "--command-timeout=2s", "member", "list", "-w", "json"],
        capture_output=True, text=True, timeout=DEADLINE, check=False,
        env={"ETCDCTL_API": "3", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip
    if proc.returncode != 0:
        return set()
    listed = json.loads(proc.stdout).get("members", [])
    if not all(m.get("name") and not m.get("isLearner") for m in listed):
        return set()  # a change under way
    return {m["name"] for m in listed}


def test_a_partitioned_member_is_replaced_enforces_its_graph_and_comes_back(
    net: Network, cluster: Cluster
) -> None:
    h1, h2, h3 = (on_network(cluster, net, n) for n in HOSTS)
    a1 = cluster.start("h1", graph(h1, ["e1a"]), "--ideal-cluster-size", "3")
    cluster.wait_for(lambda: voting(net, h1) == {"h1"}, "h1's cluster")
    cluster.join("h2", graph(h2, ["e2a"]), seeds=h1)
    cluster.wait_for(lambda: voting(net, h1) == {"h1", "h2"}, "h2 a member", SETTLE)
    a3 = cluster.join("h3", graph(h3, ["e3a"]), seeds=h1)
    cluster.wait_for(lambda: voting(net, h1) == set(HOSTS), "h3 a member", SETTLE)
    before = {"e1a": (h1,), "e2a": (h2,), "e3a": (h3,)}
    cluster.wait_for(lambda: all(holds(h, before) for h in (h1, h2, h3)), "the exchange")

    net.cut("h3")
    # the majority removes the member it cannot hear from once h3's lease ran out
    cluster.wait_for(lambda: voting(net, h1) == {"h1", "h2"}, "h3's member removed", SETTLE)
    # h3 enforces its graph all along: drift repaired, a new graph swapped in
    local = h3.root / "d" / "local"
    since = a3.mark()
    write_atomic(local, "drifted\n")
    a3.wait_event(checked("File[local]", applied=True, drift=True), since=since, what="repair")
    graph(h3, ["e3a", "e3b"])
    cluster.wait_for(lambda: (h3.root / "d" / "e3b").exists(), "h3 made its new export")
    graph(h1, ["e1a", "e1b"])
    cluster.wait_for(lambda: (h1.root / "d" / "e1b").exists(), "h1 made its new export")
    assert not (h1.root / "d" / "e3b").exists()
    assert a3.proc.poll() is None, a3.describe()

    healed_at = a3.mark()
    net.heal("h3")
    # h3 learns its member was removed, turns client, and is nominated again
    a3.wait_event(
        event("role_changed", role="client"), since=healed_at, timeout=SETTLE, what="h3 a client"
    )
    cluster.wait_for(lambda: voting(net, h1) == set(HOSTS), "h3 a member again", SETTLE)
    after = {"e1a": (h1,), "e1b": (h1,), "e2a": (h2,), "e3a": (h3,), "e3b": (h3,)}
    cluster.wait_for(
        lambda: all(holds(h, after) for h in (h1, h2, h3)), "the exchange after", CLUSTER_DEADLINE
    )
    assert a3.proc.poll() is None and not a3.find(event("cluster_lost")), a3.describe()
    for name in ("h3", "h2", "h1"):
        assert cluster.stop(name, signal.SIGTERM) == 0, cluster.hosts[name].agent.describe()  # type: ignore[union-attr]
    assert a1.proc.returncode == 0
