"""user and group: real shadow tools, in a mount namespace with a private copy of /etc.

Nothing of the machine's own accounts is touched: each test copies /etc,
and the agent runs under ``unshare --mount`` with the copy bound over
/etc, so useradd and friends (and the C library's lookups) see the copy.
The test reads the copy's files directly; drift is made by the same tools,
entered into the agent's namespace with ``nsenter``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    PYMGMT,
    checked,
    etc_entries,
    etc_wrapper,
    in_mounts_of,
    json_lines,
    recap_of,
    wait_for,
    write_graph,
)

from pymgmt.frontends.compile import compile_graph
from pymgmt.graph.model import Graph
from pymgmt.resources.base import Resource
from pymgmt.resources.group import Group
from pymgmt.resources.user import User


@pytest.fixture
def etc(private_etc: Path) -> Path:
    return private_etc


def wrapper(etc: Path) -> list[str]:
    return etc_wrapper(etc)


def run(etc: Path, tmp_path: Path, graph: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*wrapper(etc), str(etc), *PYMGMT, "run", "--prefix", str(tmp_path / "state")]
    argv += ["--converged-timeout", "0", "--json", *args, str(graph)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def entries(etc: Path, name: str) -> dict[str, list[str]]:
    return etc_entries(etc, name)


def graph(tmp_path: Path, **kinds: list[dict[str, Any]]) -> Path:
    """A graph file of these resources, by kind (``files`` for file)."""
    resources = {("file" if k == "files" else k): v for k, v in kinds.items()}
    g = tmp_path / "graph.yaml"
    write_graph(g, {"graph": "accounts", "resources": resources})
    return g


def test_a_group_a_user_in_it_and_a_file_it_owns_converge_in_one_run(tmp_path, etc):
    home = tmp_path / "home"
    home.mkdir()
    g = graph(
        tmp_path,
        files=[{"name": "owned", "path": str(home / "f"), "content": "x\n", "owner": "webu"}],
        user=[
            {
                "name": "webu",
                "group": "webg",
                "groups": ["adm"],
                "home": str(home),
                "shell": "/usr/sbin/nologin",
                "comment": "Web user",
                "system": True,
            }
        ],
        group=[{"name": "webg", "gid": 2345}],
    )
    first = run(etc, tmp_path, g)
    assert first.returncode == 2, first.stderr
    # AutoEdges ordered group -> user -> file: nothing failed for want of another
    assert not [e for e in json_lines(first.stdout) if e.get("event") == "failed"], first.stdout
    user = entries(etc, "passwd")["webu"]
    assert user[3] == "2345" and user[4:] == ["Web user", str(home), "/usr/sbin/nologin"]
    assert int(user[2]) < 1000  # a system account
    assert entries(etc, "group")["webg"][2] == "2345"
    assert "webu" in entries(etc, "group")["adm"][3].split(",")
    assert (home / "f").stat().st_uid == int(user[2])  # AutoEdges: the user came first
    again = run(etc, tmp_path, g)
    assert again.returncode == 0, again.stderr
    outcomes = {k: v["outcome"] for k, v in recap_of(again)["resources"].items()}
    assert set(outcomes.values()) == {"unchanged"}, outcomes


def test_groups_are_exact_and_fields_are_changed_in_place(tmp_path, etc):
    start = graph(tmp_path, user=[{"name": "u1", "groups": ["adm", "staff"], "uid": 3001}])
    assert run(etc, tmp_path, start).returncode == 2
    later = graph(tmp_path, user=[{"name": "u1", "groups": ["staff"], "shell": "/bin/bash"}])
    done = run(etc, tmp_path, later)
    assert done.returncode == 2, done.stderr
    changed = [e for e in json_lines(done.stdout) if checked("User[u1]", applied=True)(e)]
    assert {c["field"] for c in changed[0]["changes"]} == {"groups", "shell"}
    group = entries(etc, "group")
    assert "u1" not in group["adm"][3].split(",") and "u1" in group["staff"][3].split(",")
    assert entries(etc, "passwd")["u1"][2] == "3001"  # uid unmanaged now: left as it was


def test_absent_removes_the_account_and_not_its_home(tmp_path, etc):
    home = tmp_path / "h"
    home.mkdir()
    made = run(etc, tmp_path, graph(tmp_path, user=[{"name": "gone", "home": str(home)}]))
    assert made.returncode == 2, made.stderr
    done = run(etc, tmp_path, graph(tmp_path, user=[{"name": "gone", "state": "absent"}]))
    assert done.returncode == 2, done.stderr
    assert "gone" not in entries(etc, "passwd")
    assert home.is_dir()


def test_accounts_changed_behind_the_agents_back_are_repaired(agent, tmp_path, etc):
    g = graph(
        tmp_path,
        user=[{"name": "drifty", "uid": 3100, "group": "drift"}],
        group=[{"name": "drift", "gid": 3200}],
    )
    a = agent(g, wrapper=[*wrapper(etc), str(etc)])
    a.wait_checked(["Group[drift]", "User[drifty]"])
    wait_for(lambda: "drifty" in entries(etc, "passwd"), what="the user to be made")

    def inside(*argv: str) -> None:
        in_mounts_of(a.proc.pid, *argv)

    since = a.mark()
    inside("userdel", "drifty")
    wait_for(lambda: "drifty" in entries(etc, "passwd"), what="the user to be made again")
    i = a.wait_event(checked("User[drifty]", applied=True), since=since, what="the repair")
    assert a.events[i]["drift"], a.describe()
    assert entries(etc, "passwd")["drifty"][2:4] == ["3100", "3200"]

    since = a.mark()
    inside("groupmod", "--gid", "3999", "drift")
    wait_for(lambda: entries(etc, "group")["drift"][2] == "3200", what="the gid repaired")
    a.wait_event(checked("Group[drift]", applied=True), since=since, what="the group repair")
    assert a.stop() == 0


@pytest.mark.parametrize(
    ("kind", "res", "message"),
    [
        ("user", {"name": "a:b"}, "name: not a valid user name: 'a:b'"),
        ("user", {"name": "123"}, "name: a user name must not be a number"),
        ("user", {"name": "u", "groups": ["ok", "no way"]}, "groups: not a valid group name"),
        ("user", {"name": "u", "shell": "sh"}, "shell: must be an absolute path"),
        ("user", {"name": "u", "comment": "a:b"}, "comment: must not contain ':'"),
        ("user", {"name": "u", "home": "/srv/a:0:0"}, "home: must not contain ':'"),
        ("user", {"name": "u", "shell": "/bin/sh\nroot"}, "shell: must not contain ':'"),
        ("user", {"name": ".."}, "name: a user name must not be '..'"),
        ("group", {"name": "."}, "name: a group name must not be '.'"),
        ("group", {"name": "g", "gid": -1}, "gid: "),
    ],
)
def test_bad_accounts_are_input_errors(tmp_path, kind, res, message):
    proc = subprocess.run(
        [*PYMGMT, "validate", str(graph(tmp_path, **{kind: [res]}))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr


def test_minimum_membership_adds_groups_and_leaves_the_others(tmp_path, etc):
    start = graph(tmp_path, user=[{"name": "u2", "groups": ["staff"]}])
    assert run(etc, tmp_path, start).returncode == 2
    more = graph(tmp_path, user=[{"name": "u2", "groups": ["adm"], "membership": "minimum"}])
    done = run(etc, tmp_path, more)
    assert done.returncode == 2, done.stderr
    group = entries(etc, "group")
    assert "u2" in group["adm"][3].split(",") and "u2" in group["staff"][3].split(",")
    assert run(etc, tmp_path, more).returncode == 0  # in at least adm: converged


def test_a_tool_waits_for_the_account_files_lock_held_by_another_program(tmp_path, etc):
    """vipw (or any shadow tool) holding /etc/passwd.lock: useradd waits, then runs.

    The lock is shadow's own: a file naming a live process, which every
    shadow tool honours ("cannot lock /etc/passwd; try again later").
    Released without a change to /etc/passwd (vipw quit unchanged), no
    watch fires: the tool itself must try again.
    """
    holder = subprocess.Popen(["sleep", "infinity"])
    try:
        (etc / "passwd.lock").write_text(str(holder.pid))
        log = tmp_path / "agent.log"
        g = graph(tmp_path, user=[{"name": "waiter", "shell": "/bin/sh"}])
        argv = [*wrapper(etc), str(etc), *PYMGMT, "run", "--prefix", str(tmp_path / "state")]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*argv, "--converged-timeout", "0", str(g)], stdout=out, stderr=out
            )
        try:
            wait_for(lambda: "locked" in log.read_text(), what="the agent to meet the lock")
            assert proc.poll() is None, log.read_text()
            (etc / "passwd.lock").unlink()  # the other program is done
            assert proc.wait(timeout=60) == 2, log.read_text()
        finally:
            proc.kill()
            proc.wait()
    finally:
        holder.kill()
        holder.wait()
    assert entries(etc, "passwd")["waiter"][6] == "/bin/sh"


def test_a_user_without_group_joins_the_existing_group_of_its_name(tmp_path, etc):
    """useradd alone refuses ("group web exists - use -g") where USERGROUPS_ENAB is on."""
    assert run(etc, tmp_path, graph(tmp_path, group=[{"name": "samename"}])).returncode == 2
    both = graph(tmp_path, group=[{"name": "samename"}], user=[{"name": "samename"}])
    done = run(etc, tmp_path, both)
    assert done.returncode == 2, done.stdout + done.stderr
    assert entries(etc, "passwd")["samename"][3] == entries(etc, "group")["samename"][2]
    assert run(etc, tmp_path, both).returncode == 0


def test_a_user_without_group_comes_after_the_group_of_its_name():
    g: Graph[Resource] = Graph(name="t")
    g.add(Group(name="web"))
    g.add(User(name="web"))
    g.add(User(name="other", group="web"))
    edges = {(e.src, e.dst) for e in compile_graph(g).autoedges}
    assert edges == {
        (("group", "web"), ("user", "web")),
        (("group", "web"), ("user", "other")),
    }


def test_fifty_users_in_one_graph_converge_in_one_run(tmp_path, etc):
    """Their tools run at once and wait for each other (the C library's lckpwdf): none fails."""
    names = [f"many{i}" for i in range(50)]
    users = [{"name": n, "groups": ["adm"], "shell": "/bin/sh"} for n in names]
    g = graph(tmp_path, user=users, group=[{"name": f"manyg{i}"} for i in range(10)])
    first = run(etc, tmp_path, g)
    assert first.returncode == 2, first.stdout[-3000:] + first.stderr
    outcomes = {v["outcome"] for v in recap_of(first)["resources"].values()}
    assert outcomes == {"changed"}, recap_of(first)
    passwd, group = entries(etc, "passwd"), entries(etc, "group")
    assert all(passwd[n][6] == "/bin/sh" for n in names)
    assert set(names) <= set(group["adm"][3].split(","))
    assert run(etc, tmp_path, g).returncode == 0


def test_a_read_only_etc_fails_at_once_without_waiting_for_a_lock(tmp_path, etc):
    """useradd says "cannot lock" there too, but no program holds the lock: no wait."""
    read_only = 'mount --bind "$0" /etc && mount -o remount,bind,ro /etc && exec "$@"'
    argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", read_only]
    argv += [str(etc), *PYMGMT, "run", "--prefix", str(tmp_path / "state"), "--json"]
    g = graph(tmp_path, user=[{"name": "rofs"}])
    done = subprocess.run(
        [*argv, "--converged-timeout", "0", str(g)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 4, done.stdout + done.stderr
    (failed,) = [e for e in json_lines(done.stdout) if e.get("event") == "failed"]
    assert "cannot lock /etc/passwd" in failed["error"], failed
    assert "still locked" not in failed["error"], failed


# -- a user removed while the graph keeps the group of its name ------------------------------


def test_a_removed_user_leaves_the_group_of_its_name_the_graph_keeps(tmp_path, etc):
    """userdel (USERGROUPS_ENAB yes) would delete it, and the group resource make it again."""
    assert "USERGROUPS_ENAB yes" in (etc / "login.defs").read_text()
    both = graph(tmp_path, group=[{"name": "keptg"}], user=[{"name": "keptg"}])
    assert run(etc, tmp_path, both).returncode == 2
    before = entries(etc, "group")["keptg"]
    assert entries(etc, "passwd")["keptg"][3] == before[2]  # its primary group: userdel's prey

    absent = graph(tmp_path, group=[{"name": "keptg"}], user=[{"name": "keptg", "state": "absent"}])
    done = run(etc, tmp_path, absent)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "keptg" not in entries(etc, "passwd")
    assert entries(etc, "group")["keptg"] == before  # the very group: same gid, never removed
    outcomes = {k: v["outcome"] for k, v in recap_of(done)["resources"].items()}
    assert outcomes == {"User[keptg]": "changed", "Group[keptg]": "unchanged"}, outcomes
    assert not [e for e in json_lines(done.stdout) if e.get("drift")], done.stdout
    # login.defs itself was never touched: the setting lived in userdel's namespace only
    assert "USERGROUPS_ENAB yes" in (etc / "login.defs").read_text()
    again = run(etc, tmp_path, absent)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_removed_user_takes_its_group_along_when_the_graph_does_not_keep_it(tmp_path, etc):
    """userdel's own default, as Puppet leaves it: the private group goes with the user."""
    assert run(etc, tmp_path, graph(tmp_path, user=[{"name": "loneu"}])).returncode == 2
    assert "loneu" in entries(etc, "group")
    done = run(etc, tmp_path, graph(tmp_path, user=[{"name": "loneu", "state": "absent"}]))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "loneu" not in entries(etc, "passwd") and "loneu" not in entries(etc, "group")


def test_only_an_absent_user_learns_that_the_graph_keeps_its_group():
    """A compile-time fact, on the compiled copy: the declaration is left as it was."""
    g: Graph[Resource] = Graph(name="t")
    g.add(Group(name="a"))
    g.add(User(name="a", state="absent"))
    g.add(Group(name="b", state="absent"))
    g.add(User(name="b", state="absent"))
    g.add(User(name="c", state="absent"))
    g.add(Group(name="d"))
    g.add(User(name="d"))
    compiled = compile_graph(g).graph.vertices
    keeps = {n: compiled[("user", n)].keeps_own_group for n in "abcd"}  # type: ignore[attr-defined]
    assert keeps == {"a": True, "b": False, "c": False, "d": False}
    assert not g.vertices[("user", "a")].keeps_own_group  # type: ignore[attr-defined]
    assert not compiled[("user", "a")].same_as(g.vertices[("user", "a")])
