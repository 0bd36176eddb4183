"""Review of issue 11 (remote execution): lifecycle bugs found by the reviewer.

Each test is a real scenario (real sshd, real initiator, real remote agents)
that failed on i11/lead when written.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import event, wait_for, write_atomic
from remote_harness import Initiator, agent_pids, files_graph, root_of, run_dirs
from review_proxy import GatedProxy
from sshd import SshServer
from test_remote_run import (  # noqa: F401
    REMOTE_DEADLINE,
    bundles,
    initiator,
    remote_event,
    remote_stage,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def gated(no_leaks: None) -> Iterator[Callable[[SshServer], GatedProxy]]:
    made: list[GatedProxy] = []

    def make(server: SshServer) -> GatedProxy:
        p = GatedProxy((server.host, server.port))
        made.append(p)
        return p

    yield make
    for p in made:
        p.open()
        p.close()


def test_review_sigint_while_connecting_sets_up_nothing_and_reports_the_host(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],  # noqa: F811
    gated: Callable[[SshServer], GatedProxy],
    tmp_path: Path,
) -> None:
    """^C while a host's SSH connection is still being made (a slow link): the host
    must not be set up afterwards (no probe, no bundle copy, no agent started after the
    user said stop), and the recap must still name it.

    On i11/lead: Session.stop() with no connection yet only waits; the set-up
    goes on once connect() returns, copies the bundle and starts the agent
    after the stop, and the host is then dropped without a word (no
    remote_changed exited/failed, missing from the recap)."""
    a = sshd()
    proxy = gated(a)
    graph = files_graph(a, tmp_path / "slow.yaml", {"late": "started after ^C\n"},
                        hostname="slow", remote=f"ssh://root@127.0.0.1:{proxy.port}")  # fmt: skip
    init = initiator(a)
    with open(init.known_hosts, "a") as f:
        f.write(f"[127.0.0.1]:{proxy.port} {a.host_public_key}\n")
    run = init.start([graph])
    run.wait_event(remote_stage("slow", "connecting"), what="slow connecting")
    wait_for(proxy.accepted.is_set, what="the TCP connection to the proxy")
    run.send(signal.SIGINT)
    run.wait_event(event("stopping"), what="the stop")
    proxy.open()  # the link gets through only now
    run.wait_exit(REMOTE_DEADLINE)
    started = [line for _, line in a.matching(r"Starting session: command")]
    assert started == [], "commands run on the host after ^C:\n" + "\n".join(started)
    assert not (root_of(a) / "late").exists()
    wait_for(lambda: not agent_pids(a), what="no agent left")
    assert run_dirs(a) == []
    assert "slow" in run.recap().get("remotes", {}), run.recap()


def test_review_a_graph_saved_while_the_agent_starts_is_deployed(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Live remote hacking: a save between the copy of the graph and the agent's
    joining the cluster must reach the host too.

    On i11/lead `_live_files` only starts (and reads its "last copied" bytes)
    once the agent registered: a save in that window (seconds: the bundle's
    first extraction, Python's start, the etcd join) is taken as already
    copied and never deployed; the host runs the old graph until the next save."""
    a = sshd()
    graph = files_graph(a, tmp_path / "a.yaml", {"one": "old\n"})
    run = initiator(a).start([graph])
    run.wait_event(remote_stage(a.host, "running"), timeout=REMOTE_DEADLINE, what="a running")
    write_atomic(graph, graph.read_text().replace('"old\\n"', '"new\\n"'))
    wait_for(lambda: (root_of(a) / "one").exists(), REMOTE_DEADLINE, "a's first apply")
    wait_for(
        lambda: (root_of(a) / "one").read_text() == "new\n",
        REMOTE_DEADLINE,
        "the saved graph to be deployed",
    )
    run.stop(signal.SIGINT, timeout=60)


def test_review_kill9_during_set_up_leaves_no_run_directory(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The issue: if the initiator is killed, every remote's temporary files go.

    On i11/lead only a running agent removes its run directory: killed after
    the probe made it and before the agent started (during the bundle copy),
    the run directory stays on the host for good, and so does the half-copied
    bundle (``.pymgmt-...pyz.part-PID`` in the remote's cache)."""
    a = sshd()
    graph = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    run = initiator(a).start([graph])
    wait_for(lambda: run_dirs(a), REMOTE_DEADLINE, "the probe's run directory")
    run.send(signal.SIGKILL)
    run.wait_exit()
    assert not agent_pids(a)
    wait_for(lambda: run_dirs(a) == [], what="the run directory to go")
    cache = a.dir / "cache" / "pymgmt" / "bundles"
    assert not list(cache.glob(".*part*")), list(cache.iterdir())


def test_review_no_watch_does_not_deploy_saved_remote_graphs(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],  # noqa: F811
    tmp_path: Path,
) -> None:
    """``--no-watch`` (mgmt passes it on to its remotes): the graph files are read
    once. On i11/lead the remote graph files are still watched and a save is
    copied to the host and applied there, though the user asked for no watching."""
    a = sshd()
    graph = files_graph(a, tmp_path / "a.yaml", {"one": "read once\n"})
    run = initiator(a).start([graph], "--no-watch")
    wait_for(lambda: (root_of(a) / "one").exists(), REMOTE_DEADLINE, "a's apply")
    since = run.mark()
    write_atomic(graph, graph.read_text().replace("read once", "saved later"))
    with pytest.raises(AssertionError, match="timed out"):
        run.wait_event(remote_stage(a.host, "updated"), since=since, timeout=5, what="a copy")
    assert (root_of(a) / "one").read_text() == "read once\n"
    run.stop(signal.SIGINT, timeout=60)


def test_review_a_host_lost_mid_run_fails_alone(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],  # noqa: F811
    tmp_path: Path,
) -> None:
    """A host whose SSH connection dies while its agent runs (host crash, network
    drop, sshd restarted: here its session's sshd is killed) is one failed host;
    the other hosts and the initiator go on, and the run ends with a recap.

    On i11/lead asyncssh's ConnectionLost escapes `_follow`'s TaskGroup from the
    stdout/stderr readers as an ExceptionGroup, which `Session.run` does not
    catch: the initiator crashes at once with a traceback (exit 1, no recap),
    taking every other host's run down with it. (A host that hangs instead --
    SIGSTOP -- crashes it the same way once the keepalive gives up.)"""
    a, b = sshd(), sshd()
    ga = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    gb = files_graph(b, tmp_path / "b.yaml", {"two": "2\n"})
    run = initiator(a, b).start([ga, gb])
    for s in (a, b):
        run.wait_event(remote_event(s.host, "settled"), timeout=REMOTE_DEADLINE,
                       what=f"{s.host} settled")  # fmt: skip
    session = [p for p in a.processes() if Path(f"/proc/{p}/cmdline").read_bytes().startswith(
        b"sshd: root")]  # fmt: skip
    assert session, a.processes()
    os.kill(session[0], signal.SIGKILL)
    run.wait_event(remote_stage(a.host, "failed"), what="a reported as failed")
    assert run.proc.poll() is None, run.describe()  # still running: b is fine
    assert run.stop(signal.SIGINT, timeout=60) == 0
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    remotes = run.recap()["remotes"]
    assert remotes[a.host]["outcome"].startswith("FAILED")
    assert remotes[b.host]["exit_code"] == 130 or remotes[b.host]["outcome"]
