"""Hosts exchanging exported resources through etcd: real agents, real etcd, real files.

mgmt's A/B/C example as the article runs it, live edits of an export, a
host leaving (cleanly and by kill -9), and a hostile export. Every wait is
on a condition with a deadline; the cluster fixture stops every agent and
etcd and removes their directories.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from harness import (
    CLUSTER_DEADLINE,
    Cluster,
    Host,
    etcdctl,
    expected_files,
    files_in,
    graph3,
)
from helpers import event, snapshot, write_atomic

from pymgmt.world.base import keys

pytestmark = pytest.mark.slow


def target(host: Host, letter: str) -> Path:
    """The directory mgmt's example manages on host `letter`."""
    return host.root / f"mgmt{letter.upper()}"


def has_exactly(host: Host, letter: str, others: str) -> bool:
    return files_in(target(host, letter)) == expected_files(letter, others)


def applied(ev: dict[str, object]) -> bool:
    return ev.get("event") == "checked" and bool(ev.get("applied"))


def idle(host: Host) -> bool:
    """`host`'s graph settled after its last swap: every check of it is reported.

    A file is on disk before the event of the check that wrote it: files
    alone do not say the events are in.
    """
    assert host.agent is not None
    events = host.agent.find(lambda e: True)
    swaps = [i for i, e in enumerate(events) if e.get("event") == "graph_swapped"]
    return any(e.get("event") == "settled" for e in events[swaps[-1] if swaps else 0 :])


def start_ab(cluster: Cluster) -> tuple[Host, Host]:
    """A serving etcd, then B joining it; both hold each other's exports, all events in."""
    a, b = cluster.host("a"), cluster.host("b")
    cluster.start("a", graph3(a, "a"))
    cluster.wait_for(lambda: has_exactly(a, "a", ""), "A's own four files")
    cluster.start("b", graph3(b, "b"), seeds=a)
    cluster.wait_for(
        lambda: has_exactly(a, "a", "b") and has_exactly(b, "b", "a"), "A and B exchanged"
    )
    cluster.wait_for(lambda: idle(a) and idle(b), "A and B settled")
    return a, b


@pytest.mark.parametrize("root", ["root", "a root with spaces"])
def test_the_articles_abc_exchange_and_cluster_wide_converged_timeout(cluster, root):
    cluster.root_name = root
    a, b = start_ab(cluster)
    c = cluster.host("c")
    timeout = 1.0
    agent_c = cluster.start("c", graph3(c, "c"), "--converged-timeout", str(timeout), seeds=a)
    code = agent_c.wait_exit(CLUSTER_DEADLINE)
    # exit codes as for one host: 2, C changed things (it wrote its files)
    assert code == 2, agent_c.describe()
    for host, letter in ((a, "a"), (b, "b"), (c, "c")):
        assert has_exactly(host, letter, "abc"), (letter, files_in(target(host, letter)))
    # C exited only once A and B too had been converged for the timeout:
    # after their last change (collecting C's files) plus the timeout
    converged = agent_c.find(event("converged"))
    assert converged, agent_c.describe()
    at = converged[0]["time"]
    last = max(
        e["time"]
        for host in (a, b)
        for e in host.agent.find(applied)  # type: ignore[union-attr]
        if e["time"] < at
    )
    assert at >= last + timeout, (at, last)
    # every host saw the others join; C's leaving took its exports out of A's graph
    agent_a = a.agent
    assert agent_a is not None
    agent_a.wait_event(event("host_left", host="c"), what="A saw C leave")
    assert agent_a.find(event("host_joined", host="b"))
    assert has_exactly(a, "a", "abc"), "a collected file was deleted when its exporter left"


def test_editing_an_export_updates_every_copy(cluster):
    a, b = start_ab(cluster)
    agent_b = b.agent
    assert agent_b is not None
    since = agent_b.mark()
    graph = a.root.parent / "graph3a.yaml"
    text = graph.read_text().replace("i am f3, exported from host A", "f3 from A, edited")
    write_atomic(graph, text)
    cluster.wait_for(
        lambda: (target(b, "b") / "f3a").read_text() == "f3 from A, edited\n",
        "B's copy of f3a updated",
    )
    assert (target(a, "a") / "f3a").read_text() == "f3 from A, edited\n"
    assert (target(b, "b") / "f4a").read_text() == "i am f4, exported from host A\n"
    # live changeover on B: only the edited vertex is replaced and re-run; the
    # unchanged collected file is neither replaced nor written again. The file
    # on disk can change before B's events reach this test through the pipe:
    # its apply event (which follows the swap's) is waited for first.
    agent_b.wait_event(
        lambda e: applied(e) and e.get("vertex") == "File[file3a@a]",
        since=since,
        what="B's apply of the edited export",
    )
    swaps = agent_b.find(event("graph_swapped"), since=since)
    assert swaps, agent_b.describe()
    assert all(s["replaced"] == ["File[file3a@a]"] for s in swaps), swaps
    rewritten = agent_b.find(
        lambda e: applied(e) and e.get("vertex") != "File[file3a@a]", since=since
    )
    assert rewritten == [], rewritten


def test_a_host_that_goes_away_takes_its_exports_out_of_the_others_graphs(cluster):
    a, b = start_ab(cluster)
    c = cluster.host("c")
    cluster.start("c", graph3(c, "c"), seeds=a)
    cluster.wait_for(
        lambda: all(has_exactly(h, x, "abc") for h, x in ((a, "a"), (b, "b"), (c, "c"))),
        "the three-way exchange",
    )
    agent_a = a.agent
    assert agent_a is not None
    since = agent_a.mark()
    # a clean stop revokes C's lease at once
    assert cluster.stop("c", signal.SIGTERM) == 0
    gone = {"File[file3c@c]", "File[file4c@c]"}
    agent_a.wait_event(
        lambda e: e.get("event") == "collect_changed" and gone <= set(e["removed"]),
        since=since,
        what="A's collect dropping C's exports",
    )
    agent_a.wait_event(
        lambda e: e.get("event") == "graph_swapped" and gone <= set(e["removed"]),
        since=since,
        what="C's files leaving A's graph",
    )
    agent_a.wait_event(event("host_left", host="c"), since=since, what="A logging C's leaving")
    # the files stay on disk: nothing deletes a collected file when its exporter leaves
    assert has_exactly(a, "a", "abc")
    # kill -9: B's exports go when its lease expires (the harness's short TTL)
    since = agent_a.mark()
    cluster.kill9("b")
    agent_a.wait_event(
        lambda e: (
            e.get("event") == "collect_changed"
            and {"File[file3b@b]", "File[file4b@b]"} <= set(e["removed"])
        ),
        since=since,
        timeout=CLUSTER_DEADLINE,
        what="A dropping B's exports after B's lease expired",
    )
    agent_a.wait_event(event("host_left", host="b"), since=since, what="A logging B's leaving")
    assert has_exactly(a, "a", "abc")


def _export(endpoint: str, host: str, name: str, **params: object) -> None:
    """Write an export as a hostile host would: straight into etcd, no agent checks it."""
    doc = {"v": 1, "kind": "file", "name": name, "params": params}
    etcdctl(endpoint, "put", keys.exported(host, "file", name), stdin=json.dumps(doc).encode())


def test_a_hostile_export_writes_nothing_outside_the_pattern_and_is_reported(cluster):
    a = cluster.host("a")
    agent_a = cluster.start("a", graph3(a, "a"))
    cluster.wait_for(lambda: has_exactly(a, "a", ""), "A's own four files")
    pattern = target(a, "a")
    outside = a.root / "outside"
    outside.mkdir()
    (outside / "victim").write_text("untouched\n")
    os.symlink(outside / "victim", pattern / "planted")
    before = snapshot(a.root)
    around = sorted(os.listdir(cluster.base))
    since = agent_a.mark()
    url = a.client_url
    _export(url, "mallory", "dotdot", path="/x/..", content="owned\n")
    _export(url, "mallory", "../../../escape", path="../../../escape", content="owned\n")
    _export(url, "mallory", "relative", path="x/escape", content="owned\n")
    _export(url, "mallory", "huge", path="/x/huge", content="x" * ((1 << 20) + 1))
    _export(url, "mallory", "setuid", path="/x/setuid", content="owned\n", mode="4755")
    _export(url, "mallory", "planted", path="/x/planted", content="owned\n")
    _export(url, "mallory", "fine", path="/etc/fine", content="a fine file\n")
    # the fine one is applied, in the pattern under its base name
    cluster.wait_for(lambda: files_in(pattern).get("fine") == "a fine file\n", "the fine export")
    refused = {"dotdot", "../../../escape", "relative", "huge", "setuid"}
    cluster.wait_for(
        lambda: refused <= {e["name"] for e in agent_a.find(event("collect_refused"), since=since)},
        f"CollectRefused for {sorted(refused)}",
    )
    for e in agent_a.find(event("collect_refused"), since=since):
        assert e["host"] == "mallory" and e["kind"] == "file" and e["reason"], e
    # the planted symlink is found when the collected file is checked: a failure
    # of that vertex, reported, not written through
    agent_a.wait_event(
        lambda e: (
            (e.get("event") == "failed" and e.get("vertex") == "File[planted@mallory]")
            or (e.get("event") == "collect_refused" and e.get("name") == "planted")
        ),
        since=since,
        what="the planted symlink reported",
    )
    # whatever became of the planted symlink, nothing was written through it,
    # and nothing outside the pattern changed
    assert (outside / "victim").read_text() == "untouched\n"
    after = snapshot(a.root)
    mine = os.path.relpath(pattern, a.root)
    changed = {
        p
        for p in set(before) | set(after)
        if before.get(p) != after.get(p) and p != mine and not p.startswith(mine + os.sep)
    }
    assert not changed, changed
    assert sorted(os.listdir(cluster.base)) == around
    assert agent_a.proc.poll() is None, agent_a.describe()
