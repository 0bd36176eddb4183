"""A cluster that cannot be served or joined: exit 1, a message naming what, nothing changed.

The first agent, already serving, keeps running and keeps its graph
enforced.
"""

from __future__ import annotations

import signal

import pytest
from harness import CLUSTER_DEADLINE, Cluster, free_port, graph3
from helpers import event, snapshot

pytestmark = pytest.mark.slow


def _serving_a(cluster: Cluster):
    a = cluster.host("a")
    agent = cluster.start("a", graph3(a, "a"))
    f1 = a.root / "mgmtA" / "f1a"
    cluster.wait_for(f1.exists, "A's files")
    return a, agent


def _still_enforced(cluster: Cluster, agent, path) -> None:
    """The agent runs and repairs drift: it was not disturbed."""
    assert agent.proc.poll() is None, agent.describe()
    path.unlink()
    cluster.wait_for(path.exists, f"{path} repaired by the first agent")


def test_a_second_agent_on_the_same_ports_exits_1_naming_the_port(cluster):
    a, agent_a = _serving_a(cluster)
    b = cluster.host("b")
    graph = graph3(b, "b")
    before = snapshot(b.root)
    same_ports = ["--client-urls", a.client_url, "--server-urls", a.peer_url]
    agent_b = cluster.start("b", graph, *same_ports, local=True)
    code = agent_b.wait_exit(CLUSTER_DEADLINE)
    assert code == 1, agent_b.describe()
    everything = agent_b.stderr + "".join(str(e) for e in agent_b.events)
    assert f"{a.address}:{a.client_port}" in everything, agent_b.describe()
    assert "in use" in everything
    assert snapshot(b.root) == before
    _still_enforced(cluster, agent_a, a.root / "mgmtA" / "f1a")


def test_a_second_live_host_with_the_same_name_exits_1(cluster):
    a, agent_a = _serving_a(cluster)
    twin = cluster.host("twin")
    graph = graph3(twin, "b")
    before = snapshot(twin.root)
    agent = cluster.start("twin", graph, seeds=a, serve=False, hostname="a")
    code = agent.wait_exit(CLUSTER_DEADLINE)
    assert code == 1, agent.describe()
    everything = agent.stderr + "".join(str(e) for e in agent.events)
    assert "'a'" in everything and "already" in everything, agent.describe()
    assert snapshot(twin.root) == before
    _still_enforced(cluster, agent_a, a.root / "mgmtA" / "f1a")


def test_unreachable_seeds_exit_1_naming_them(cluster):
    lost = cluster.host("lost")
    graph = graph3(lost, "c")
    before = snapshot(lost.root)
    nobody = f"http://127.0.1.250:{free_port('127.0.1.250')}"
    agent = cluster.start("lost", graph, "--seeds", nobody, "--no-server", local=True)
    code = agent.wait_exit(CLUSTER_DEADLINE)
    assert code == 1, agent.describe()
    everything = agent.stderr + "".join(str(e) for e in agent.events)
    assert nobody in everything, agent.describe()
    assert snapshot(lost.root) == before


def test_a_signal_while_joining_aborts_the_start_with_nothing_changed(cluster):
    lost = cluster.host("lost")
    graph = graph3(lost, "c")
    before = snapshot(lost.root)
    nobody = f"http://127.0.1.250:{free_port('127.0.1.250')}"
    agent = cluster.start("lost", graph, "--seeds", nobody, local=True)
    # the agent is trying to reach the seeds (for up to 10 s) when the signal comes
    cluster.wait_for(
        lambda: agent.proc.poll() is not None or "grpc" in _maps(agent.pid),
        "the agent connecting (grpc loaded)",
    )
    code = agent.stop(signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, agent.describe()
    assert agent.find(event("interrupted")), agent.describe()
    assert snapshot(lost.root) == before


def test_a_host_killed_and_started_again_takes_its_name_back(cluster):
    # a long lease: B's old host key is surely still there when B comes back
    cluster.env["PYMGMT_LEASE_TTL"] = "60"
    a, _ = _serving_a(cluster)
    b = cluster.host("b")
    graph = graph3(b, "b")
    cluster.start("b", graph, seeds=a, serve=False)
    copy, theirs = a.root / "mgmtA" / "f3b", b.root / "mgmtB" / "f3a"
    cluster.wait_for(lambda: copy.exists() and theirs.exists(), "A and B collecting each other")
    cluster.kill9("b")
    # at once, before B's lease (and so its host key) expired
    again = cluster.start("b", graph, seeds=a, serve=False)
    again.wait_event(event("host_joined", host="b"), what="B back in the cluster")
    theirs.unlink()
    cluster.wait_for(theirs.exists, "B collecting again")


def _maps(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return f.read()
    except OSError:
        return ""


def test_a_hostname_no_cluster_accepts_exits_1_before_anything_starts(cluster):
    odd = cluster.host("odd")
    graph = graph3(odd, "a")
    before = snapshot(odd.root)
    agent = cluster.start("odd", graph, local=True, hostname="bad host")
    code = agent.wait_exit(CLUSTER_DEADLINE)
    assert code == 1, agent.describe()
    everything = agent.stderr + "".join(str(e) for e in agent.events)
    assert "'bad host' cannot name a host" in everything, agent.describe()
    assert snapshot(odd.root) == before
    assert not (odd.prefix / "etcd").exists(), "etcd was started for a refused hostname"
