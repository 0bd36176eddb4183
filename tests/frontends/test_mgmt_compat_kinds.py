"""mgmt's graphs for the kinds of issue 15 run unchanged (user, group, kv, msg, exec as a user).

The fixtures in mgmt/ are written in the shape of mgmt's examples/yaml and
test/shell graphs, with mgmt's own param names and value spellings (a
user's ``gid`` and ``homedir``, a kv's ``key``, msg's ``priority: Err``).
`test_mgmt_compat.py` checks that every one of them validates; here they
run for real where that is safe (files under a temporary directory, exec
as ``nobody``, a kv in a real etcd), and are parsed where the kind would
change this machine (accounts, mounts, the hostname, systemd timers).
The graphs that mgmt itself would refuse, or that ask for what pymgmt does
not offer, are in bad/ (``kind_mgmt_print``, ``field_kv_skiplessthan``,
``resource_kv_one_key_twice``, ``field_user_gid_and_group``).
"""

from __future__ import annotations

import grp
import pwd
import subprocess
from pathlib import Path

import pytest
from etcdutil import EtcdProcess, world_on
from helpers import PYMGMT, run_async, run_once

from pymgmt.frontends.yamlgraph import parse
from pymgmt.resources.base import CONVERGED
from pymgmt.resources.kv import KeyValue
from pymgmt.resources.user import User
from pymgmt.world.base import keys

MGMT = Path(__file__).parent / "mgmt"
PLACEHOLDER = "/tmp/pymgmt-mgmt"
NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)


def _graph(name: str, root: Path, dest: Path) -> Path:
    """mgmt/NAME with its paths moved under `root`, written to `dest`."""
    dest.write_text((MGMT / name).read_text().replace(PLACEHOLDER, str(root)))
    return dest


def _run_in_root(name: str, tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run mgmt/NAME once with its paths under a fresh ``root``: (root, the run)."""
    root = tmp_path / "root"
    root.mkdir()
    return root, run_once(_graph(name, root, tmp_path / name), tmp_path / "state")


def test_mgmt_account_spellings_fill_pymgmt_params(tmp_path: Path) -> None:
    text = (MGMT / "accounts_mgmt_spelling.yaml").read_text().replace(PLACEHOLDER, str(tmp_path))
    g = parse(text, "accounts.yaml")
    worker = g.vertices[("user", "pmc-worker")]
    twin = g.vertices[("user", "pmc-twin")]
    assert isinstance(worker, User) and isinstance(twin, User)
    assert (worker.group, worker.groups) == ("23001", ["pmc-extra"])
    assert worker.home == f"{tmp_path}/home/"
    assert (twin.uid, twin.allow_duplicate_uid) == (23001, True)
    # the named groups still come first (AutoEdges), as in mgmt's autoedges4
    edges = {(e.src, e.dst) for e in g.edges}
    assert (("group", "pmc-extra"), ("user", "pmc-worker")) in edges
    assert (("group", "pmc-staff"), ("user", "pmc-twin")) in edges
    # and, as in mgmt, a user's primary group given by number finds the group with that gid
    assert (("group", "pmc-staff"), ("user", "pmc-worker")) in edges
    (warning,) = g.warnings  # gid on an absent user, named as the graph spelt it
    assert warning.location is not None
    assert (warning.field, warning.location.line) == ("gid", 28)


def test_a_homedir_with_mgmts_trailing_slash_is_the_home_it_names() -> None:
    """root's account, read only: ``/root/`` and ``/root`` are one directory."""
    home = pwd.getpwnam("root").pw_dir
    assert run_async(User(name="root", home=home.rstrip("/") + "/").check()) == CONVERGED
    plan = run_async(User(name="root", home=home + "-elsewhere/").check())
    assert [c.field for c in plan.changes] == ["home"]


def test_mgmts_priority_spelling_logs_at_that_priority(tmp_path: Path) -> None:
    root, proc = _run_in_root("msg_mgmt.yaml", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert (root / "note").read_text() == "a change worth a message\n"
    (line,) = [ln for ln in proc.stderr.splitlines() if "Msg[msg1]" in ln]
    assert line.split()[1:] == ["ERROR", "Msg[msg1]:", "pymgmt", "logged", "this", "message"]
    # the message is not a change (only the file is)
    assert "Msg[msg1]  changed" not in proc.stderr


def test_mgmts_frag1_builds_the_file_after_its_fragments(tmp_path: Path) -> None:
    root, proc = _run_in_root("fragments_frag1.yaml", tmp_path)
    assert proc.returncode == 2, proc.stderr
    want = "i am f1\ni am f2\ni am f3\ni am a bonus file\n"
    assert (root / "whole1").read_text() == want
    again = run_once(tmp_path / "fragments_frag1.yaml", tmp_path / "state")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("drop", "owner", "group"),
    [
        ((), NOBODY.pw_uid, NOGROUP.gr_gid),  # exec-usergroup-nogroup.yaml
        (("group",), NOBODY.pw_uid, NOBODY.pw_gid),  # exec-usergroup-user.yaml
        (("user",), 0, NOGROUP.gr_gid),  # exec-usergroup-group-nogroup.yaml
    ],
    ids=["user-and-group", "user", "group"],
)
def test_mgmts_exec_usergroup_runs_as_asked(
    drop: tuple[str, ...], owner: int, group: int, tmp_path: Path, shared: Path
) -> None:
    graph = _graph("exec_usergroup.yaml", shared, tmp_path / "exec.yaml")
    lines = graph.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if not any(ln.startswith(f"    {f}: ") for f in drop)]
    text = "".join(kept).replace("group: nogroup", f"group: {NOGROUP.gr_name}")
    graph.write_text(text)
    # mgmt's command line from exec-usergroup.sh (a --prefix in place of
    # --tmp-prefix, which would leave a directory in /tmp), and its exit status
    argv = ["run", "--converger-timeout=0", "--converged-exit", "--no-watch"]
    argv += ["--prefix", str(tmp_path / "state"), "yaml", str(graph)]
    proc = subprocess.run([*PYMGMT, *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = shared / "result-exec-usergroup"
    assert result.read_text() == "this is a test\n"
    st = result.stat()
    assert (st.st_uid, st.st_gid) == (owner, group)


async def _etcd_value(node: EtcdProcess, key: str) -> bytes | None:
    async with world_on([node.client_url], "tester") as w:
        found, _ = await w.get_prefix(key)
        return next((kv.value for kv in found if kv.key == key), None)


@pytest.mark.slow
def test_mgmts_kv_key_is_the_key_stored(tmp_path: Path, etcd_node: EtcdProcess) -> None:
    async def put_leftover() -> None:
        async with world_on([etcd_node.client_url], "other-host") as w:
            await w.put(keys.kv("leftover"), b"from an earlier run")

    run_async(put_leftover())
    graph = _graph("kv_mgmt_key.yaml", tmp_path, tmp_path / "kv.yaml")
    flags = ["--seeds", etcd_node.client_url, "--no-server", "--hostname", "h1"]
    proc = run_once(graph, tmp_path / "state", *flags)
    assert proc.returncode == 2, proc.stderr
    assert run_async(_etcd_value(etcd_node, keys.kv("greeting"))) == b"hello world"
    assert run_async(_etcd_value(etcd_node, keys.kv("leftover"))) is None
    assert run_async(_etcd_value(etcd_node, keys.kv("kv1"))) is None
    again = run_once(graph, tmp_path / "state", *flags)
    assert again.returncode == 0, again.stderr


def test_a_kv_named_otherwise_reports_its_key_problem_under_key_name() -> None:
    assert KeyValue(name="kv1", key_name="../etc").problems()[0][0] == "key_name"
    assert KeyValue(name="fine", key_name="a/b").problems() == []


def test_an_id_finds_the_account_that_has_it(tmp_path: Path) -> None:
    """mgmt matches a group by gid as by name; pymgmt does so for users' uids too."""
    g = parse(
        "graph: ids\nresources:\n"
        "  user:\n  - name: pmc-owner\n    uid: 23010\n"
        "  group:\n  - name: pmc-crew\n    gid: 23011\n"
        f"  file:\n  - name: {tmp_path}/owned\n    owner: '23010'\n    group: '23011'\n"
        "  exec:\n  - name: as-ids\n    cmd: 'true'\n    user: '23010'\n    group: '23011'\n",
        "ids.yaml",
    )
    edges = {(e.src, e.dst) for e in g.edges}
    for dst in (("file", f"{tmp_path}/owned"), ("exec", "as-ids")):
        assert (("user", "pmc-owner"), dst) in edges
        assert (("group", "pmc-crew"), dst) in edges
