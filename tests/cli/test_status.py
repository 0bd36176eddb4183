"""`pymgmt status` asks a real running agent over its status socket (issue 12).

Each test starts a real agent (`pymgmt run --json`), waits on its events,
then runs the real `pymgmt status` command against the same --prefix.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    PYMGMT,
    Agent,
    checked,
    dump,
    event,
    graph_doc,
    wait_for,
    write_atomic,
    write_graph,
)

from pymgmt.cli.status import render
from pymgmt.status import SOCKET_NAME
from pymgmt.status.client import ask


def _status(
    prefix: Path, *args: str, wrapper: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    argv = [*wrapper, *PYMGMT, "status", "--prefix", str(prefix), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _status_json(prefix: Path) -> dict[str, Any]:
    proc = _status(prefix, "--json")
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _vertices(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in status["vertices"]}


def _refresh_graph(tmp_path: Path, managed: Path) -> Path:
    """A file that notifies a command which always fails: its refresh stays pending."""
    graph = tmp_path / "g.yaml"
    doc = graph_doc(
        "status",
        files=[{"name": "f", "path": str(managed / "f"), "content": "hello\n"}],
        execs=[{"name": "e", "shell": "/bin/sh", "cmd": "echo boom >&2; exit 3"}],
        edges=[("file:f", "exec:e")],
    )
    doc["edges"][0]["notify"] = True
    graph.write_text(dump(doc))
    return graph


def test_status_prints_each_resource_of_the_running_agent(agent, prefix, tmp_path, managed):
    a = agent(_refresh_graph(tmp_path, managed))
    a.wait_event(checked("File[f]", applied=True), what="the file written")
    a.wait_event(event("failed", vertex="Exec[e]"), what="the command failing")
    proc = _status(prefix)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"pid {a.pid}" in lines[0]
    assert "graph 'status'" in lines[1] and "2 resources" in lines[1], lines[1]
    assert "1 converged, 1 failed; not converged" in lines[1], lines[1]
    table = {line.split()[0]: line for line in lines[3:]}
    assert lines[3].split()[:2] == ["RESOURCE", "STATE"]
    assert table["File[f]"].split()[1] == "converged"
    row = table["Exec[e]"]
    assert row.split()[1] == "failed"
    assert "status 3" in row, row
    # the refresh File[f] sent is still waiting (the command failed): one pending
    columns = lines[3]
    at = columns.index("REFRESHES")
    assert row[at:].split()[0] == "1", row
    assert table["File[f]"][at:].split()[0] == "0"


def test_status_json_counts_a_drift_repair(agent, prefix, tmp_path, managed):
    a = agent(_refresh_graph(tmp_path, managed))
    a.wait_event(checked("File[f]", applied=True), what="the file written")
    before = _vertices(_status_json(prefix))["File[f]"]
    assert before["drift_repairs"] == 0 and before["applies"] == 1
    since = a.mark()
    write_atomic(managed / "f", "drifted\n")
    a.wait_event(checked("File[f]", drift=True), since=since, what="the drift repaired")
    status = _status_json(prefix)
    f = _vertices(status)["File[f]"]
    assert f["drift_repairs"] == 1 and f["applies"] == 2
    assert f["status"] == "converged"
    assert "hello" in f["last_diff"]
    assert f["last_change"] >= before["last_change"]
    assert f["params"]["path"] == str(managed / "f")
    assert status["agent"]["pid"] == a.pid
    assert status["edges"] == [{"from": "File[f]", "to": "Exec[e]", "notify": True, "auto": False}]
    e = _vertices(status)["Exec[e]"]
    assert e["pending_refreshes"] == 1 and e["last_error"]


def test_the_socket_is_0600_replaces_a_stale_one_and_goes_with_the_agent(
    agent, prefix, tmp_path, managed
):
    prefix.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as stale:  # what an agent killed with -9 leaves
        stale.bind(str(prefix / SOCKET_NAME))
    assert "the agent that made it is gone" in _status(prefix).stderr
    a = agent(_refresh_graph(tmp_path, managed))
    a.wait_event(checked("File[f]"), what="the first check")
    st = os.lstat(prefix / SOCKET_NAME)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert _status(prefix).returncode == 0
    a.stop(signal.SIGINT)
    assert not (prefix / SOCKET_NAME).exists()
    proc = _status(prefix)
    assert proc.returncode == 1
    assert "no agent runs on" in proc.stderr, proc.stderr


def test_without_an_agent_status_says_so_and_exits_1(tmp_path):
    proc = _status(tmp_path / "nothing")
    assert proc.returncode == 1
    assert "no agent runs on" in proc.stderr, proc.stderr
    proc = _status(tmp_path / "nothing", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["event"] == "error"


_SETPRIV = shutil.which("setpriv")
_NOBODY = ("--reuid", "nobody", "--regid", "nogroup", "--clear-groups")


@pytest.mark.skipif(os.geteuid() != 0 or not _SETPRIV, reason="needs root and setpriv")
def test_another_user_is_refused(agent, prefix, tmp_path, managed):
    """The directory and the socket's mode keep `nobody` out; past them, SO_PEERCRED does.

    With CAP_DAC_OVERRIDE `nobody` gets through every file mode and
    connects: the agent still refuses it, because of its uid.
    """
    assert _SETPRIV is not None
    a = agent(_refresh_graph(tmp_path, managed))
    a.wait_event(checked("File[f]"), what="the first check")
    plain = _status(prefix, wrapper=(_SETPRIV, *_NOBODY))
    assert plain.returncode == 1
    assert "permission denied" in plain.stderr, plain.stderr
    caps = ("--inh-caps", "+dac_override", "--ambient-caps", "+dac_override")
    forced = _status(prefix, "--json", wrapper=(_SETPRIV, *_NOBODY, *caps))
    assert forced.returncode == 1, forced.stdout
    answer = json.loads(forced.stdout)
    assert "refused" in answer["message"], answer
    assert "File[f]" not in forced.stdout
    wait_for(lambda: "refused uid 65534" in a.stderr, what="the agent's warning")
    assert _status(prefix).returncode == 0  # root still may


def test_a_secret_is_in_no_status_output(agent, prefix, tmp_path, managed):
    """A password sent into a file's content shows in neither the table nor the JSON."""
    holder = managed / "holder"
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "graph: secret\n"
        "resources:\n"
        "  password: [{name: pw, length: 40}]\n"
        f"  file: [{{name: holder, path: {holder}, mode: '0600'}}]\n"
        "edges:\n"
        "- {name: pw->holder, from: {kind: password, name: pw}, to: {kind: file, name: holder},\n"
        "   send: password, recv: content}\n"
    )
    a = agent(graph)
    a.wait_event(checked("File[holder]", applied=True), what="the secret written")
    secret = holder.read_text()
    assert len(secret) == 40
    table = _status(prefix)
    as_json = _status(prefix, "--json")
    assert table.returncode == 0 and as_json.returncode == 0
    for out in (table.stdout, as_json.stdout):
        assert secret not in out
    f = _vertices(json.loads(as_json.stdout))["File[holder]"]
    assert f["applies"] == 1 and "<redacted>" in f["last_diff"], f


def test_the_socket_answers_one_vertex_and_refuses_what_it_does_not_know(
    agent, prefix, tmp_path, managed
):
    a = agent(_refresh_graph(tmp_path, managed))
    a.wait_event(checked("File[f]", applied=True), what="the file written")
    one = ask(prefix, {"command": "vertex", "name": "File[f]"})
    assert one["ok"] is True
    assert one["vertex"]["status"] == "converged"  # type: ignore[index]
    assert ask(prefix, {"command": "vertex", "name": "File[nope]"})["ok"] is False
    unknown = ask(prefix, {"command": "reboot"})
    assert unknown == {"ok": False, "error": "unknown command 'reboot' (status, vertex)"}
    bare = ask(prefix, {"command": "status", "params": False})["status"]
    assert all("params" not in v for v in bare["vertices"])  # type: ignore[index]
    with socket.socket(socket.AF_UNIX) as s:  # not JSON: refused, the agent goes on
        s.connect(str(prefix / SOCKET_NAME))
        s.sendall(b"hello\n")
        assert b"not one line of JSON" in s.recv(4096)
    assert _status(prefix).returncode == 0


@pytest.mark.slow  # waits for the agent to give up on a silent client (5 s)
def test_a_client_that_says_nothing_holds_up_no_one(agent, prefix, tmp_path, managed):
    a = agent(_refresh_graph(tmp_path, managed))
    a.wait_event(checked("File[f]"), what="the first check")
    with socket.socket(socket.AF_UNIX) as silent:
        silent.connect(str(prefix / SOCKET_NAME))  # connected, never sends a request
        assert ask(prefix, {"command": "status"})["ok"] is True
        # answered while the silent one still waits (one at a time, it would
        # have had its answer first)
        silent.setblocking(False)
        with pytest.raises(BlockingIOError):
            silent.recv(4096)
        # the agent gives up on it (IO_TIMEOUT) and closes: the read ends
        silent.settimeout(60)
        assert b"no request came in" in silent.recv(4096)


@pytest.mark.skipif(os.geteuid() != 0 or not _SETPRIV, reason="needs root and setpriv")
def test_an_agent_of_another_user_answers_that_user_and_root_only(no_leaks, tmp_path, managed):
    """Run as `nobody`, the agent answers nobody and root; `daemon` (uid 1) is refused."""
    assert _SETPRIV is not None
    home = Path(tempfile.mkdtemp(prefix="pymgmt-status-"))  # tmp_path is root's alone
    try:
        os.chmod(home, 0o755)
        graph = home / "g.yaml"
        write_graph(graph, graph_doc("nobody", files=[{"name": "f", "path": str(home / "f")}]))
        prefix = home / "state"
        prefix.mkdir()
        os.chown(prefix, 65534, 65534)
        os.chown(home, 65534, 65534)
        a = Agent(graph, prefix, wrapper=(_SETPRIV, *_NOBODY))
        try:
            a.wait_event(checked("File[f]"), what="the first check")
            assert os.lstat(prefix / SOCKET_NAME).st_uid == 65534
            mine = _status(prefix, "--json", wrapper=(_SETPRIV, *_NOBODY))
            assert mine.returncode == 0, mine.stderr
            assert json.loads(mine.stdout)["agent"]["uid"] == 65534
            assert _status(prefix).returncode == 0  # root
            caps = ("--inh-caps", "+dac_override", "--ambient-caps", "+dac_override")
            daemon = ("--reuid", "daemon", "--regid", "daemon", "--clear-groups", *caps)
            other = _status(prefix, wrapper=(_SETPRIV, *daemon))
            assert other.returncode == 1 and "refused" in other.stderr, other.stderr
            assert a.stop() == 0
        finally:
            a.close()
    finally:
        shutil.rmtree(home)


def test_the_table_shows_ages_cuts_long_errors_and_never_a_terminal_escape():
    now = 1_000_000.0
    status = {
        "agent": {
            "version": "1",
            "pid": 7,
            "hostname": "h",
            "started": now - 7200,
            "graph": "g",
            "graph_swapped": now - 60,
            "converged": False,
            "counts": {"pending": 1, "applying": 0, "converged": 0, "failed": 1},
        },
        "vertices": [
            {
                "name": "Exec[x]",
                "status": "failed",
                "last_check": now - 5,
                "last_change": None,
                "last_error": "\x1b]0;owned\x07boom " + "y" * 200 + "\nsecond line",
                "drift_repairs": 0,
                "pending_refreshes": 2,
            },
            {
                "name": "File[y]",
                "status": "pending",
                "last_check": None,
                "last_change": None,
                "last_error": None,
                "drift_repairs": 0,
                "pending_refreshes": 0,
            },
        ],
    }
    text = render(status, now=now)
    assert "\x1b" not in text and "\x07" not in text
    lines = text.splitlines()
    assert lines[0] == "pymgmt 1: pid 7 on h, up 2 h"
    assert lines[1].endswith("2 resources: 1 pending, 1 failed; not converged"), lines[1]
    exec_row = lines[4]
    assert exec_row.split()[:5] == ["Exec[x]", "failed", "5", "s", "ago"]
    assert "\\x1b]0;owned\\x07boom" in exec_row and "second line" not in exec_row
    assert exec_row.endswith("...") and len(exec_row.split("  ")[-1]) <= 72
    assert lines[5].split()[:4] == ["File[y]", "pending", "-", "-"]
