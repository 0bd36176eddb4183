"""`pymgmt run --remote`: real sshd hosts, a real initiator with its etcd, real remote agents.

mgmt's article example (remote2a/remote2b exchanging exported files through
the initiator's etcd), live remote hacking, the cluster-wide converged
timeout across hosts, bundle caching, --cconns, the ways a host fails (each
alone), a kill -9 of the initiator, and bad input that touches no host.
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import event, wait_for, write_atomic
from remote_harness import (
    REMOTE_DEADLINE,
    Initiator,
    agent_pids,
    cached_bundles,
    example,
    files_graph,
    remote_event,
    remote_stage,
    root_of,
    run_dirs,
    wait_settled,
)
from sshd import ClientKey, SshServer

pytestmark = pytest.mark.slow


def files(root: Path) -> dict[str, str]:
    """name -> content of the files in `root`, read while an agent may be writing there:
    a temporary file it renames into place a moment later is neither listed nor read."""
    out = {}
    for p in sorted(root.iterdir()):
        if p.name.startswith(".pymgmt-tmp-"):
            continue
        try:
            if p.is_file():
                out[p.name] = p.read_text()
        except FileNotFoundError:
            continue  # renamed or removed since the listing
    return out


def test_article_example_exchanges_files_and_follows_live_edits(
    sshd: Callable[..., SshServer], initiator: Callable[..., Initiator], tmp_path: Path
) -> None:
    """remote2a/remote2b: each host gets its own file and both exported ones; an
    edit of an exported file on the initiator reaches both hosts; ^C stops all."""
    a, b = sshd(), sshd()
    ga = example(a, "remote2a.yaml", tmp_path / "a")
    gb = example(b, "remote2b.yaml", tmp_path / "b")
    init = initiator(a, b)
    agent = init.start([ga, gb])
    want_a = {
        "file1a": "i am file1a\n",
        "file2a": "i am file2a, exported from host a\n",
        "file2b": "i am file2b, exported from host b\n",
    }
    want_b = {**want_a, "file1b": "i am file1b\n"}
    del want_b["file1a"]
    wait_for(lambda: files(root_of(a)) == want_a, REMOTE_DEADLINE, "host a's files")
    wait_for(lambda: files(root_of(b)) == want_b, REMOTE_DEADLINE, "host b's files")
    # the remote agents' events reach the initiator, marked with their host
    agent.wait_event(remote_event(a.host, "graph_started"), what="a's graph_started")
    agent.wait_event(remote_event(b.host, "graph_started"), what="b's graph_started")

    # live remote hacking: the exported file's content changes on the initiator
    since = agent.mark()
    write_atomic(gb, gb.read_text().replace("exported from host b", "edited on the initiator"))
    agent.wait_event(remote_stage(b.host, "updated"), since=since, what="b's graph copied")
    edited = "i am file2b, edited on the initiator\n"
    wait_for(lambda: files(root_of(a)).get("file2b") == edited, what="a's collected file2b")
    wait_for(lambda: files(root_of(b)).get("file2b") == edited, what="b's own file2b")

    assert agent.stop(signal.SIGINT, timeout=60) == 0  # forever mode: a graceful stop
    for s in (a, b):
        wait_for(lambda s=s: not agent_pids(s), what=f"{s.host}'s agent to exit")
        assert run_dirs(s) == []
        assert len(cached_bundles(s)) == 1  # kept for the next run
    recap = agent.recap()
    assert recap["interrupted"] is True
    assert set(recap["remotes"]) == {a.host, b.host}


def test_converged_timeout_covers_every_host_and_the_bundle_is_cached(
    sshd: Callable[..., SshServer], initiator: Callable[..., Initiator], tmp_path: Path
) -> None:
    """--converged-timeout ends the run once initiator and remotes all converged; the
    exit code covers all hosts; a second run copies no bundle; --no-caching does."""
    a, b = sshd(), sshd()
    ga = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    gb = files_graph(b, tmp_path / "b.yaml", {"two": "2\n"})
    init = initiator(a, b)

    first = init.start([ga, gb], "--converged-timeout", "1")
    assert first.wait_exit(REMOTE_DEADLINE) == 2, first.describe()  # changes made
    recap = first.recap()
    assert recap["remotes"][a.host]["exit_code"] == 2
    assert recap["remotes"][b.host]["exit_code"] == 2
    assert files(root_of(a)) == {"one": "1\n"}
    assert files(root_of(b)) == {"two": "2\n"}
    # the remote agents converged, not interrupted
    for host in (a.host, b.host):
        remote_recap = first.find(remote_event(host, "recap"))
        assert remote_recap and remote_recap[-1]["interrupted"] is False
    copies = {s.host: s.sftp_writes(".pyz") for s in (a, b)}
    assert all(n >= 1 for n in copies.values()), copies
    for s in (a, b):
        assert not agent_pids(s) and run_dirs(s) == []

    second = init.start([ga, gb], "--converged-timeout", "1")
    assert second.wait_exit(REMOTE_DEADLINE) == 0, second.describe()  # nothing to change
    assert {s.host: s.sftp_writes(".pyz") for s in (a, b)} == copies  # not copied again

    third = init.start([ga], "--converged-timeout", "1", "--no-caching")
    assert third.wait_exit(REMOTE_DEADLINE) == 0, third.describe()
    assert a.sftp_writes(".pyz") == copies[a.host] + 1
    assert run_dirs(a) == []  # the copied bundle went with its run directory
    assert len(cached_bundles(a)) == 1  # the cache of earlier runs is left alone


def test_cconns_sets_up_one_host_at_a_time(
    sshd: Callable[..., SshServer], initiator: Callable[..., Initiator], tmp_path: Path
) -> None:
    """--cconns 1: a host's login comes after the previous host's agent was started
    (seen in each sshd's own log)."""
    servers = [sshd() for _ in range(3)]
    graphs = [files_graph(s, tmp_path / f"g{i}.yaml", {f"f{i}": "x\n"}) for i, s in
              enumerate(servers)]  # fmt: skip
    init = initiator(*servers)
    run = init.start(graphs, "--converged-timeout", "0.5", "--cconns", "1")
    assert run.wait_exit(REMOTE_DEADLINE) == 2, run.describe()
    logins = sorted((s.accepted_logins()[0], s) for s in servers)
    for (_, before), (login, _) in itertools.pairwise(logins):
        # the agent's session is the last one a set-up opens
        sessions = [t for t, _ in before.matching(r"Starting session: command")]
        assert sessions and max(sessions) <= login, (before.host, sessions, login)


def test_one_bad_host_fails_alone(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    tmp_path: Path,
    client_key: ClientKey,
) -> None:
    """An unknown host key, a host without Python, an unreachable host: each fails
    with a clear message naming it; the good host converges; the exit code says 4|2."""
    good, unknown, no_python = sshd(), sshd(), sshd(path=str(tmp_path / "empty-bin"))
    (tmp_path / "empty-bin").mkdir()
    graphs = [
        files_graph(good, tmp_path / "good.yaml", {"g": "good\n"}),
        files_graph(unknown, tmp_path / "unknown.yaml", {"u": "u\n"}),
        files_graph(no_python, tmp_path / "nopy.yaml", {"n": "n\n"}),
    ]
    closed = files_graph(good, tmp_path / "closed.yaml", {"c": "c\n"}, hostname="closed")
    closed.write_text(
        closed.read_text().replace(f"remote: {good.url()}", "remote: ssh://root@127.0.0.1:9")
    )
    init = initiator(good, no_python)  # `unknown` is not in known_hosts
    run = init.start([*graphs, closed], "--converged-timeout", "1")
    assert run.wait_exit(REMOTE_DEADLINE) == 6, run.describe()  # changed | failed
    remotes = run.recap()["remotes"]
    assert remotes[good.host]["exit_code"] == 2
    assert files(root_of(good)) == {"g": "good\n"}
    assert "host key" in remotes[unknown.host]["message"].lower()
    assert "Python 3.11" in remotes[no_python.host]["message"]
    assert remotes["closed"]["outcome"].startswith("FAILED")
    assert not files(root_of(unknown)) and not files(root_of(no_python))
    assert unknown.accepted_logins() == []  # never logged in to an unverified host


def test_kill9_of_the_initiator_stops_every_remote_agent(
    sshd: Callable[..., SshServer], initiator: Callable[..., Initiator], tmp_path: Path
) -> None:
    """The remote agents lose their SSH session: they exit and remove their run directory."""
    a, b = sshd(), sshd()
    ga = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    gb = files_graph(b, tmp_path / "b.yaml", {"two": "2\n"})
    run = initiator(a, b).start([ga, gb])
    wait_settled(run, a, b)
    assert agent_pids(a) and agent_pids(b)
    run.send(signal.SIGKILL)
    run.wait_exit()
    for s in (a, b):
        wait_for(lambda s=s: not agent_pids(s), what=f"{s.host}'s agent to exit")
        wait_for(lambda s=s: run_dirs(s) == [], what=f"{s.host}'s run directory to go")


def test_a_bad_remote_file_touches_no_host(
    sshd: Callable[..., SshServer], initiator: Callable[..., Initiator], tmp_path: Path
) -> None:
    """Validation covers every remote file before any connection: file, line, field."""
    a = sshd()
    good = files_graph(a, tmp_path / "good.yaml", {"one": "1\n"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("graph: g\nremote: ftp://root@127.0.0.1\nresources: {}\n")
    no_target = tmp_path / "none.yaml"
    no_target.write_text("graph: g\nresources: {}\n")
    run = initiator(a).start([good, bad, no_target], "--converged-timeout", "0")
    assert run.wait_exit() == 1
    errors = run.find(event("invalid_input"))[0]["errors"]
    where = {(e["file"], e["field"]) for e in errors}
    assert (str(bad), "remote") in where
    assert (str(no_target), "remote") in where
    line = next(e for e in errors if e["file"] == str(bad))["line"]
    assert line == 2
    assert a.accepted_logins() == []
    assert files(root_of(a)) == {}


def test_hierarchical_run_through_an_intermediate_host(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    ssh_agent: Callable[..., Any],
    client_key: ClientKey,
    tmp_path: Path,
) -> None:
    """a.yaml carries 'remotes: [c.yaml]': host a runs c's graph on host c (depth 2),
    with the initiator's forwarded ssh-agent; c's events come back through a."""
    a, c = sshd(), sshd()
    files_graph(c, tmp_path / "c.yaml", {"deep": "from depth 2\n"})
    ga = files_graph(a, tmp_path / "a.yaml", {"mid": "from depth 1\n"}, remotes="[c.yaml]")
    keys = ssh_agent(client_key.private)
    run = initiator(a, c, key=None).start([ga], "--converged-timeout", "1", env=keys.env)
    assert run.wait_exit(REMOTE_DEADLINE) == 2, run.describe()
    assert files(root_of(a)) == {"mid": "from depth 1\n"}
    assert files(root_of(c)) == {"deep": "from depth 2\n"}
    deep = run.find(lambda e: e.get("remote") == c.host and e.get("event") == "recap")
    assert deep and deep[-1]["via"] == [a.host], deep
    for s in (a, c):
        assert not agent_pids(s) and run_dirs(s) == []


def test_human_output_is_prefixed_with_the_host(
    sshd: Callable[..., SshServer], initiator: Callable[..., Initiator], tmp_path: Path
) -> None:
    """Each remote line carries its host; a terminal escape sent by a remote (here in
    its graph's name) is written out, never acted on by the initiator's terminal."""
    a = sshd()
    ga = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    ga.write_text(ga.read_text().replace("graph: a", 'graph: "a\\e[2J"'))
    run = initiator(a).start([ga], "--converged-timeout", "0.5", json_mode=False)
    assert run.wait_exit(REMOTE_DEADLINE) == 2, run.describe()
    lines = [e["line"] for e in run.find(lambda e: True)]
    assert any(line.startswith(f"[{a.host}] ") and "File[one]" in line for line in lines), lines
    assert any(line.startswith(f"  {a.host}") and "changed" in line for line in lines), lines
    assert any("Graph[a\\x1b[2J]" in line for line in lines), lines
    assert not any("\x1b" in line for line in lines)


def test_a_password_in_the_url_is_never_shown(
    sshd: Callable[..., SshServer], initiator: Callable[..., Initiator], tmp_path: Path
) -> None:
    """mgmt's ssh://root:pass@host form is accepted with a warning; a refused password
    is a clear failure; the password appears in no output."""
    secret = "hunter2-not-shown"
    a = sshd(password_auth=True, permit_root_login="yes")
    ga = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"}, remote=a.url(password=secret))
    run = initiator(a, key=None).start([ga], "--converged-timeout", "0")
    assert run.wait_exit(REMOTE_DEADLINE) == 4, run.describe()
    out = json.dumps(run.events) + run.stderr
    assert secret not in out
    assert "password" in run.stderr.lower()  # the warning
    assert run.recap()["remotes"][a.host]["outcome"].startswith("FAILED")


#: a CPython other than the initiator's, for a remote that has only it
PYTHON_312 = Path("/root/.pyenv/versions/3.12.1/bin/python3.12")


@pytest.mark.skipif(not PYTHON_312.exists(), reason=f"no {PYTHON_312} on this machine")
def test_a_remote_with_another_python_gets_a_bundle_built_for_it(
    sshd: Callable[..., SshServer], initiator: Callable[..., Initiator], tmp_path: Path
) -> None:
    """A host whose only Python is 3.12 runs a bundle made for 3.12 (its compiled
    wheels fetched by pip), cached there like the other."""
    only = tmp_path / "py312-bin"
    only.mkdir()
    (only / "python3").symlink_to(PYTHON_312)
    a = sshd(path=str(only))
    ga = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    init = initiator(a)
    run = init.start([ga], "--converged-timeout", "0.5")
    assert run.wait_exit(REMOTE_DEADLINE) == 2, run.describe()
    assert files(root_of(a)) == {"one": "1\n"}
    started = run.find(remote_stage(a.host, "running"))
    assert started and "3.12" in started[0]["message"]
    copies = a.sftp_writes(".pyz")
    again = init.start([ga], "--converged-timeout", "0.5")
    assert again.wait_exit(REMOTE_DEADLINE) == 0, again.describe()
    assert a.sftp_writes(".pyz") == copies  # cached
