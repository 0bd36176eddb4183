"""The state directory is the agent's own (review findings 3 and 4).

3. Its path is walked like any path the agent touches as root: a symlink
   another user planted in it is refused, the directory it points to is left
   alone, and what the agent creates there is 0700.
4. The lock is the directory's: replacing the ``lock`` file does not let a
   second agent in, and a graph may not manage a path inside the directory.

The "user" is uid 65534 (nobody), as in tests/resources/test_file_symlinks.py.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from helpers import (
    PYMGMT,
    graph_doc,
    json_lines,
    run_async,
    run_once,
    snapshot,
    write_atomic,
    write_graph,
)

from pymgmt.errors import InputError
from pymgmt.frontends.api import GraphBuilder
from pymgmt.frontends.api import run_async as run_graph
from pymgmt.fsutil import state_name
from pymgmt.resources.file import File
from pymgmt.resources.password import Password
from pymgmt.statedir import LOCK_NAME, StateFileRefused, intrusions, read_own

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play both sides")

PASSWORD_GRAPH = """\
graph: pw
resources:
  password:
  - name: pw
    length: 16
"""


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (victim / "lock").write_text("important\n")
    return victim


def _user_symlink(link: Path, target: Path) -> None:
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)


def test_a_users_symlink_in_the_prefix_is_refused_and_its_target_untouched(tmp_path):
    """The review's attack: ``u/pm`` -> a root-only directory with a ``lock`` file."""
    victim = _victim(tmp_path)
    user = tmp_path / "u"
    user.mkdir()
    os.chown(user, NOBODY, NOBODY)
    _user_symlink(user / "pm", victim)
    graph = tmp_path / "graph.yaml"
    graph.write_text(PASSWORD_GRAPH)
    before = snapshot(victim)
    for args in [(), ("--json",)]:
        proc = run_once(graph, user / "pm", *args)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        text = proc.stdout + proc.stderr
        assert "not safe to use" in text and "symlink owned by uid 65534" in text, text
        assert "Traceback" not in text
    assert snapshot(victim) == before
    assert (victim / "lock").read_text() == "important\n"


@pytest.mark.parametrize("sub", ["state", "refresh"])
def test_a_users_symlink_as_a_subdirectory_of_the_prefix_is_refused_at_start(tmp_path, sub):
    victim = _victim(tmp_path)
    prefix = tmp_path / "prefix"
    prefix.mkdir(mode=0o700)
    _user_symlink(prefix / sub, victim)
    graph = tmp_path / "graph.yaml"
    graph.write_text(PASSWORD_GRAPH)
    before = snapshot(victim)
    proc = run_once(graph, prefix)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not safe to use" in proc.stderr and f"{sub}: it is a symlink" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(victim) == before


def test_a_users_symlink_inside_the_state_directory_is_not_followed(tmp_path):
    """Password state goes through the safe walk too: its own directory planted as a symlink."""
    victim = _victim(tmp_path)
    prefix = tmp_path / "prefix"
    (prefix / "state").mkdir(mode=0o700, parents=True)
    _user_symlink(prefix / "state" / state_name("password", "pw"), victim)
    graph = tmp_path / "graph.yaml"
    graph.write_text(PASSWORD_GRAPH)
    before = snapshot(victim)
    proc = run_once(graph, prefix, "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    (failed,) = (e for e in json_lines(proc.stdout) if e.get("event") == "failed")
    assert failed["kind"] == "resource" and "refusing to follow" in failed["error"]
    assert snapshot(victim) == before


def test_a_new_prefix_and_its_state_directory_are_made_0700(tmp_path):
    graph = tmp_path / "graph.yaml"
    graph.write_text(PASSWORD_GRAPH)
    prefix = tmp_path / "new" / "deeper" / "prefix"
    proc = run_once(graph, prefix)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    for d in [tmp_path / "new", tmp_path / "new" / "deeper", prefix, prefix / "state"]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    (stored,) = prefix.glob("state/password-pw*/password")
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600


# -- finding 4: the lock holds, and the directory is not the graph's ----------------------------


def test_replacing_the_lock_file_does_not_let_a_second_agent_in(agent, prefix, tmp_path, managed):
    first = tmp_path / "first.yaml"
    write_graph(first, graph_doc("first", files=[{"name": "f", "path": str(managed / "f")}]))
    a = agent(first)
    a.wait_checked(["File[f]"])
    write_atomic(prefix / LOCK_NAME, "1\n")  # a new inode: what a graph's rewrite did
    second = tmp_path / "second.yaml"
    write_graph(second, graph_doc("second", files=[{"name": "g", "path": str(managed / "g")}]))
    proc = run_once(second, prefix, timeout=30)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "in use by" in proc.stderr
    assert not (managed / "g").exists()
    (prefix / LOCK_NAME).unlink()  # removing it does not either
    proc = run_once(second, prefix, timeout=30)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert not (managed / "g").exists()
    assert a.stop(signal.SIGINT) == 0


def test_a_changed_graph_managing_the_state_directory_is_rejected(agent, prefix, tmp_path, managed):
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("g", files=[{"name": "f", "path": str(managed / "f")}]))
    a = agent(graph)
    a.wait_checked(["File[f]"])
    since = a.mark()
    lock = {"name": "lock", "path": str(prefix / LOCK_NAME), "content": "hello\n"}
    write_graph(graph, graph_doc("g", files=[{"name": "f", "path": str(managed / "f")}, lock]))
    i = a.wait_event(lambda e: e.get("event") == "graph_rejected", since=since)
    assert "inside the agent's state directory" in a.events[i]["errors"][0]["message"]
    assert (prefix / LOCK_NAME).read_text() == f"{a.pid}\n"
    assert a.stop(signal.SIGINT) == 0


def test_a_one_line_edit_moving_a_file_into_the_state_directory_is_rejected(
    agent, prefix, tmp_path, managed
):
    # one entry's line changes: the graph is re-read and checked for that resource alone
    graph = tmp_path / "graph.yaml"
    files = [{"name": n, "path": str(managed / n), "content": "x\n"} for n in ("e", "f", "g")]
    write_graph(graph, graph_doc("g", files=files))
    a = agent(graph)
    a.wait_checked(["File[e]", "File[f]", "File[g]"])
    since = a.mark()
    files[1]["path"] = str(prefix / LOCK_NAME)
    write_graph(graph, graph_doc("g", files=files))
    i = a.wait_event(lambda e: e.get("event") == "graph_rejected", since=since)
    assert "File[f] manages" in a.events[i]["errors"][0]["message"]
    assert (prefix / LOCK_NAME).read_text() == f"{a.pid}\n"
    since = a.mark()
    files[1]["path"] = str(managed / "f2")  # and the next edit is checked (and taken) again
    write_graph(graph, graph_doc("g", files=files))
    a.wait_checked(["File[f]"], since=since)
    assert (managed / "f2").read_text() == "x\n"
    assert a.stop(signal.SIGINT) == 0


# "" is the state directory itself ("state/." is refused sooner: not a normalised path)
@pytest.mark.parametrize("where", ["lock", "state/x", "", "refresh/"])
def test_a_graph_managing_a_path_in_the_state_directory_is_an_input_error(tmp_path, where):
    prefix = tmp_path / "state"
    prefix.mkdir()
    (prefix / "lock").write_text("")
    path = os.path.join(str(prefix), where)
    graph = tmp_path / "graph.yaml"
    res = {"name": "x", "path": path, "state": "absent"}
    if not path.endswith("/"):
        res["content"] = "hello\n"
    write_graph(graph, graph_doc("g", files=[res]))
    before = snapshot(prefix)
    proc = run_once(graph, prefix, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (ev,) = (e for e in json_lines(proc.stdout) if e.get("event") == "invalid_input")
    (err,) = ev["errors"]
    assert "inside the agent's state directory" in err["message"]
    assert (err["file"], err["field"]) == (str(graph), "path")
    assert snapshot(prefix) == before


def test_the_python_api_refuses_a_graph_managing_its_state_directory(tmp_path):
    prefix = tmp_path / "state"
    g = GraphBuilder("api")
    g.add(File(name=str(prefix / "state" / "pw"), content="x"))
    g.add(Password(name="pw"))
    with pytest.raises(InputError, match="inside the agent's state directory"):
        run_async(run_graph(g, state_dir=prefix))
    assert not prefix.exists()


def test_a_relative_prefix_works_for_password_state_and_refresh_markers(tmp_path):
    """The safe walk starts at ``/``: a relative --prefix is made absolute first."""
    graph = tmp_path / "graph.yaml"
    graph.write_text(
        PASSWORD_GRAPH
        + "  exec:\n  - name: e\n    cmd: /bin/false\n"
        + "edges:\n- name: e1\n  from: {kind: password, name: pw}\n"
        + "  to: {kind: exec, name: e}\n  notify: true\n"
    )
    argv = [*PYMGMT, "run", "--prefix", "rel", "--converged-timeout", "0", str(graph)]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 6, proc.stdout + proc.stderr  # changed, and exec e failed
    assert "Traceback" not in proc.stderr
    assert list((tmp_path / "rel").glob("state/password-pw*/password"))
    assert list((tmp_path / "rel" / "refresh").iterdir())  # e failed: its refresh waits


def test_intrusions_resolve_each_path_as_realpath_does(tmp_path):
    """The per-directory shortcut (one walk per directory) agrees with os.path.realpath."""
    from pymgmt.statedir import _RealPaths

    (tmp_path / "d").mkdir()
    (tmp_path / "linkdir").symlink_to(tmp_path / "d")
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "d" / "lf").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "d" / "loop").symlink_to("loop")
    paths = [
        str(tmp_path / "linkdir" / "f"),
        str(tmp_path / "linkdir" / "lf"),
        str(tmp_path / "linkdir" / "loop"),
        str(tmp_path / "linkdir" / "absent"),
        str(tmp_path / "gone" / "absent"),
        str(tmp_path / "d"),
        str(tmp_path / "linkdir"),
        "/",
    ]
    real = _RealPaths()
    for _ in range(2):  # the second time from its cache
        assert [real.of(p) for p in paths] == [os.path.realpath(p) for p in paths]


@pytest.mark.parametrize(
    ("siblings", "others"),
    [(0, 0), (10, 0), (10, 200)],
    ids=["lstat-each", "one-listing", "listing-too-long"],
)
def test_intrusions_find_each_way_into_the_state_directory_among_many_files(
    tmp_path, siblings, others
):
    """A symlink to a file, a symlinked directory, a symlinked parent: each is refused,
    whether a directory's files are asked about one by one or read from one
    listing (issue 13), and only those are."""
    prefix = tmp_path / "state"
    prefix.mkdir()
    (prefix / "lock").write_text("")
    d = tmp_path / "d"
    d.mkdir()
    for i in range(others):  # unmanaged entries the listing reads past
        (d / f"other{i}").write_text("")
    (d / "evil").symlink_to(prefix / "lock")
    (tmp_path / "into").symlink_to(prefix)
    (tmp_path / "up").symlink_to(tmp_path)
    g = GraphBuilder("intrusions")
    wanted = [d / "evil", tmp_path / "into" / "x", tmp_path / "up" / "state"]
    innocent = [d / f"f{i}" for i in range(siblings)]
    for i in range(siblings):
        innocent[i].write_text("")
    for path in [*innocent[: siblings // 2], *wanted, *innocent[siblings // 2 :]]:
        g.add(File(name=str(path), content="x"))
    bad = intrusions(g.build(), prefix)
    assert [str(e).split(" manages ")[1].split(",")[0] for e in bad] == [str(p) for p in wanted]
    assert (prefix / "lock").read_text() == ""


# -- read_own: a file of the state directory that only the agent could have written ----------


def _own_file(prefix: Path, data: bytes, mode: int = 0o600) -> Path:
    prefix.mkdir(mode=0o700, exist_ok=True)
    path = prefix / "f"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_read_own_reads_the_agents_file_and_none_when_there_is_none(tmp_path):
    assert read_own(tmp_path / "absent", "f", 100) is None
    _own_file(tmp_path / "p", b"mine")
    assert read_own(tmp_path / "p", "f", 100) == b"mine"
    assert read_own(tmp_path / "p", "other", 100) is None


def test_read_own_refuses_what_another_user_could_have_written_or_too_much(tmp_path):
    prefix = tmp_path / "p"
    path = _own_file(prefix, b"x" * 101)
    with pytest.raises(StateFileRefused, match="larger than 100 bytes"):
        read_own(prefix, "f", 100)
    path.chmod(0o620)
    with pytest.raises(StateFileRefused, match="others may write it"):
        read_own(prefix, "f", 1000)
    path.chmod(0o600)
    prefix.chmod(0o770)
    with pytest.raises(StateFileRefused, match="writable by another user"):
        read_own(prefix, "f", 1000)
    prefix.chmod(0o700)
    path.unlink()
    path.mkdir()
    with pytest.raises(StateFileRefused, match="not a regular file"):
        read_own(prefix, "f", 1000)
