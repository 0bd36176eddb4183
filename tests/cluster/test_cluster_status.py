"""`pymgmt cluster status` and `pymgmt cluster ideal-size N` against a cluster of real agents."""

from __future__ import annotations

import json
import subprocess

import pytest
from harness import Cluster
from helpers import PYMGMT, event
from test_autocluster import plain

pytestmark = pytest.mark.slow


def cluster_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYMGMT, "cluster", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_status_shows_members_leader_clients_and_a_live_resize(cluster: Cluster):
    a = cluster.host("a")
    cluster.start("a", plain(a), "--ideal-cluster-size", "2")
    cluster.wait_members({"a"})
    cluster.join("b", plain(cluster.host("b")), seeds=a)
    cluster.wait_members({"a", "b"})
    agent_c = cluster.join("c", plain(cluster.host("c")), seeds=a)
    cluster.wait_for(lambda: agent_c.find(event("host_joined", host="c")), "c connected")

    def status() -> dict:
        proc = cluster_cli("status", "--seeds", a.client_url, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def settled() -> dict | None:
        s = status()
        clients = [c["name"] for c in s["clients"]]
        converged = all(m["converged"] for m in s["members"])
        return s if clients == ["c"] and converged and s["leader"] == "a" else None

    s = cluster.wait_for(settled, "a, b members led by a; c a converged client")
    assert s["ideal_size"] == 2
    assert [(m["name"], m["role"]) for m in s["members"]] == [("a", "voting"), ("b", "voting")]
    assert s["clients"][0]["volunteer"] is True
    text = cluster_cli("status", "--seeds", a.client_url)
    assert text.returncode == 0, text.stderr
    assert "2 of 2 members, leader a" in text.stdout
    assert "(volunteer)" in text.stdout

    # the operator grows the cluster: the leader nominates c
    resize = cluster_cli("ideal-size", "3", "--seeds", a.client_url)
    assert resize.returncode == 0, resize.stderr
    cluster.wait_members({"a", "b", "c"})
    s = status()
    assert s["ideal_size"] == 3 and s["clients"] == []


def test_status_of_no_cluster_is_a_clear_error(cluster: Cluster):
    a = cluster.host("a")  # an address and a port nobody serves
    proc = cluster_cli("status", "--seeds", a.client_url)
    assert proc.returncode == 1
    assert "cannot reach etcd at" in proc.stderr and "Traceback" not in proc.stderr
