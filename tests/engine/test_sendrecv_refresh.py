"""Send/Recv and refresh notifications, end to end on real files and processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from helpers import PYMGMT, json_lines

from pymgmt.frontends.api import GraphBuilder, run_async
from pymgmt.report.events import Checked
from pymgmt.resources.file import File
from pymgmt.resources.noop import Noop
from pymgmt.resources.password import Password


def _password_graph(target: Path) -> GraphBuilder:
    g = GraphBuilder("secret")
    pw = g.add(Password(name="pw", length=24))
    f = g.add(File(name=str(target), mode="0600"))
    n = g.add(Noop(name="told"))
    g.edge(pw, f, send="password", recv="content")
    g.edge(f, n, notify=True)
    return g


def test_the_password_reaches_the_file_and_a_new_one_regenerates_it(tmp_path):
    target = tmp_path / "secret.conf"
    state = tmp_path / "state"
    first = asyncio.run(run_async(_password_graph(target), state_dir=state))
    secret = target.read_text()
    assert len(secret) == 24 and secret.isalnum()
    assert (target.stat().st_mode & 0o777) == 0o600
    stored = next(state.glob("state/password-pw*/password"))
    assert stored.read_text() == secret and (stored.stat().st_mode & 0o777) == 0o600
    # The secret never appears in any event.
    assert secret not in repr(first.events)
    refreshed = [e for e in first.events if isinstance(e, Checked) and e.refreshed]
    assert [e.vertex for e in refreshed] == ["Noop[told]"]

    # A second run keeps the same password: nothing changes.
    second = asyncio.run(run_async(_password_graph(target), state_dir=state))
    assert second.exit_code == 0 and target.read_text() == secret

    # Losing the stored password regenerates it, and the file follows.
    stored.unlink()
    third = asyncio.run(run_async(_password_graph(target), state_dir=state))
    assert third.exit_code == 2
    assert target.read_text() != secret and target.read_text() == stored.read_text()


def _graph_yaml(tmp: Path, slow: str) -> str:
    return f"""
graph: refresh
resources:
  file:
  - name: {tmp}/upstream
    content: "changed\\n"
  exec:
  - name: slow
    cmd: {slow}
  noop:
  - name: receiver
edges:
- name: notify
  from: {{kind: file, name: {tmp}/upstream}}
  to: {{kind: noop, name: receiver}}
  notify: true
- name: order
  from: {{kind: exec, name: slow}}
  to: {{kind: noop, name: receiver}}
"""


def test_a_refresh_survives_kill_9_and_is_delivered_exactly_once(tmp_path):
    graph = tmp_path / "g.yaml"
    prefix = tmp_path / "prefix"
    graph.write_text(_graph_yaml(tmp_path, "sleep 60"))
    agent = subprocess.Popen(
        [*PYMGMT, "run", "--json", "--prefix", str(prefix), str(graph)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert agent.stdout is not None
        deadline = time.monotonic() + 20
        for line in agent.stdout:
            ev = json.loads(line)
            if ev["event"] == "checked" and ev["vertex"].startswith("File[") and ev["applied"]:
                break  # the upstream changed; the receiver still waits for "slow"
            assert time.monotonic() < deadline, "the upstream never changed"
        markers = list((prefix / "refresh").iterdir())
        assert len(markers) == 1
        os.kill(agent.pid, signal.SIGKILL)
    finally:
        agent.kill()
        agent.wait()
        if agent.stdout:
            agent.stdout.close()
        # The agent's `sleep 60` gets SIGKILL with it (PR_SET_PDEATHSIG); the
        # leak check reaps it as our orphan.

    graph.write_text(_graph_yaml(tmp_path, "sleep 0.1"))
    delivered = 0
    for _ in range(2):
        proc = subprocess.run(
            [
                *PYMGMT,
                "run",
                "--json",
                "--converged-timeout",
                "0",
                "--prefix",
                str(prefix),
                str(graph),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        evs = json_lines(proc.stdout)
        delivered += sum(1 for e in evs if e["event"] == "checked" and e["refreshed"])
        upstream = [e for e in evs if e["event"] == "checked" and e["vertex"].startswith("File[")]
        assert upstream and not any(e["applied"] for e in upstream)
    assert delivered == 1
    assert list((prefix / "refresh").iterdir()) == []


def test_noop_reports_the_refresh_it_would_send_and_writes_no_marker(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text(_graph_yaml(tmp_path, "true"))
    proc = subprocess.run(
        [
            *PYMGMT,
            "run",
            "--json",
            "--noop",
            "--converged-timeout",
            "0",
            "--prefix",
            str(tmp_path / "p"),
            str(graph),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    evs = json_lines(proc.stdout)
    (up,) = [e for e in evs if e["event"] == "checked" and e["vertex"].startswith("File[")]
    assert up["noop"] and up["notified"] == ["Noop[receiver]"]
    assert not (tmp_path / "upstream").exists()
    assert not (tmp_path / "p" / "refresh").exists()


def test_the_articles_yaml_example_runs_unchanged_but_for_its_paths(tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "sendrecv.yaml"
    root = tmp_path / "root"
    graph = tmp_path / "g.yaml"
    graph.write_text(example.read_text().replace("/tmp/pymgmt-examples", str(root)))
    cmd = [
        *PYMGMT,
        "run",
        "--json",
        "--converged-timeout",
        "0",
        "--prefix",
        str(tmp_path / "p"),
        str(graph),
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 2, first.stderr
    secret = (root / "secret").read_text()
    assert len(secret) == 32
    assert secret not in first.stdout and secret not in first.stderr
    evs = json_lines(first.stdout)
    assert [e["vertex"] for e in evs if e["event"] == "checked" and e["refreshed"]] == [
        "Noop[noop1]"
    ]
    assert "Received a notification!" in first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and (root / "secret").read_text() == secret
