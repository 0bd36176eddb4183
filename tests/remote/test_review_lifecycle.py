"""Review of issue 11 (remote execution): lifecycle bugs found by the reviewer.

Each test is a real scenario (real sshd, real initiator, real remote agents)
that failed on i11/lead when written.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import event, wait_for, write_atomic
from remote_harness import (
    REMOTE_DEADLINE,
    Initiator,
    agent_pids,
    files_graph,
    remote_event,
    remote_stage,
    root_of,
    run_dirs,
    wait_settled,
)
from review_proxy import GatedProxy
from sshd import ClientKey, SshServer

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
    initiator: Callable[..., Initiator],
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
    initiator: Callable[..., Initiator],
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
    initiator: Callable[..., Initiator],
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
    initiator: Callable[..., Initiator],
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
    initiator: Callable[..., Initiator],
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
    wait_settled(run, a, b)
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


def test_review_an_interrupted_remote_is_not_called_failed(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    tmp_path: Path,
) -> None:
    """^C of a run-once run: each remote agent is told "stop SIGINT" and exits 130,
    as asked. On i11/lead the recap then lists the host as "FAILED (exit 130)" and
    counts "1 failed": nothing failed there; it was interrupted, like this host."""
    a = sshd()
    ga = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    run = initiator(a).start([ga], "--converged-timeout", "600")
    run.wait_event(remote_event(a.host, "checked"), timeout=REMOTE_DEADLINE, what="a's check")
    assert run.stop(signal.SIGINT, timeout=60) == 130
    outcome = run.recap()["remotes"][a.host]["outcome"]
    assert "FAILED" not in outcome, outcome


def test_review_the_recap_names_a_failed_host_at_depth_2(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    ssh_agent: Callable[..., Any],
    client_key: ClientKey,
    tmp_path: Path,
) -> None:
    """The issue: "the recap and exit code cover all hosts". Host a runs c.yaml on
    host c, which cannot be reached. On i11/lead the initiator's recap lists only
    a (as "changed, FAILED": a's own exit code, though a itself was fine); the
    host that failed, and why, is in no recap line of the initiator."""
    a, c = sshd(), sshd()
    gc = files_graph(c, tmp_path / "c.yaml", {"deep": "d\n"}, hostname="deep")
    gc.write_text(gc.read_text().replace(f"remote: {c.url()}", "remote: ssh://root@127.0.0.1:9"))
    ga = files_graph(a, tmp_path / "a.yaml", {"mid": "m\n"}, remotes="[c.yaml]")
    keys = ssh_agent(client_key.private)
    run = initiator(a, c, key=None).start([ga], "--converged-timeout", "1", env=keys.env)
    assert run.wait_exit(REMOTE_DEADLINE) == 6, run.describe()
    remotes = run.recap()["remotes"]
    assert "deep" in remotes, remotes
    assert remotes["deep"]["outcome"].startswith("FAILED"), remotes


def test_review_a_chatty_login_shell_fails_its_host_alone(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    tmp_path: Path,
) -> None:
    """A host whose ~/.bashrc prints a banner starting with "{" (bash sources it for
    sshd's commands). On i11/lead the probe's `json.loads` raises a ValueError
    that `Session.run` does not catch (only RemoteError, OSError, asyncssh.Error):
    the whole initiator crashes with a traceback, exit 1, no recap, and the
    healthy host's run is cut short. Any unexpected error of one host should
    fail that host alone."""
    good, chatty = sshd(), sshd()
    (chatty.dir / "home" / ".bashrc").write_text('echo "{ welcome to $(hostname) }"\n')
    gg = files_graph(good, tmp_path / "good.yaml", {"g": "good\n"})
    gc = files_graph(chatty, tmp_path / "chatty.yaml", {"c": "c\n"})
    run = initiator(good, chatty).start([gg, gc], "--converged-timeout", "1")
    code = run.wait_exit(REMOTE_DEADLINE)
    assert "Traceback" not in run.stderr, run.stderr[-1500:]
    assert code == 6, run.describe()
    remotes = run.recap()["remotes"]
    assert remotes[good.host]["exit_code"] == 2
    assert remotes[chatty.host]["outcome"].startswith("FAILED")


def test_review_two_graphs_for_one_ssh_host(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    tmp_path: Path,
) -> None:
    """Two remote files may name the same SSH host with their own 'hostname:' (two
    agents there). On i11/lead both sessions copy the bundle to the same temporary
    name (`.NAME.part-<initiator pid>`): the first rename takes it away from the
    other, which fails with "No such file" (and one may rename a file the other
    is still writing: a bundle with holes)."""
    a = sshd()
    g1 = files_graph(a, tmp_path / "x1.yaml", {"x1": "1\n"}, hostname="x1")
    g2 = files_graph(a, tmp_path / "x2.yaml", {"x2": "2\n"}, hostname="x2")
    run = initiator(a).start([g1, g2], "--converged-timeout", "1")
    code = run.wait_exit(REMOTE_DEADLINE)
    remotes = run.recap()["remotes"]
    assert code == 2, remotes


PY312 = Path("/root/.pyenv/versions/3.12.1/bin/python3.12")


@pytest.mark.skipif(not PY312.exists(), reason="needs a Python 3.12")
def test_review_a_host_with_python_3_12_is_served(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    tmp_path: Path,
) -> None:
    """The issue: "The remote needs only a Python 3.11+ interpreter" (Ubuntu 24.04
    ships 3.12, Fedora 3.13). On i11/lead the bundle holds cp311 builds only
    and the probe wants exactly 3.11: such a host is refused."""
    bin_dir = tmp_path / "py312-bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(PY312)
    (bin_dir / "env").symlink_to("/usr/bin/env")  # /bin is /usr/bin here: it has 3.11
    a = sshd(path=str(bin_dir))
    graph = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    run = initiator(a).start([graph], "--converged-timeout", "1")
    code = run.wait_exit(REMOTE_DEADLINE)
    assert code == 2, run.recap()["remotes"]
