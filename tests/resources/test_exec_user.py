"""exec `user` and `group`: commands run with the privileges asked for, never more.

Real accounts of the machine are used read-only (``nobody``, ``nogroup``) and a
uid no account has; nothing is created. The commands write what they are into
a directory anyone may write to, as the unprivileged user must be able to.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import PYMGMT, graph_doc, pid_alive, recap_of, run_once, wait_for, write_graph

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid).gr_name

#: what the command reports: uid, gid, supplementary groups, HOME, USER, LOGNAME
REPORT = 'echo "$(id -u) $(id -g) [$(id -G)] $HOME $USER $LOGNAME" > {out}'


def _run(tmp_path: Path, **res: Any) -> subprocess.CompletedProcess[str]:
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("exec", execs=[{"name": "x", "shell": "/bin/sh", **res}]))
    return run_once(graph, tmp_path / "state", "--json")


def _report(out: Path) -> str:
    return out.read_text().strip()


def test_user_runs_the_command_as_that_user_with_its_home_and_names(tmp_path, shared):
    out = shared / "out"
    proc = _run(tmp_path, cmd=REPORT.format(out=shlex.quote(str(out))), user="nobody")
    assert proc.returncode == 2, proc.stderr
    groups = " ".join(map(str, os.getgrouplist("nobody", NOBODY.pw_gid)))
    want = f"{NOBODY.pw_uid} {NOBODY.pw_gid} [{groups}] {NOBODY.pw_dir} nobody nobody"
    assert _report(out) == want
    assert out.stat().st_uid == NOBODY.pw_uid


def test_env_overrides_the_users_home(tmp_path, shared):
    out = shared / "out"
    cmd = REPORT.format(out=shlex.quote(str(out)))
    proc = _run(tmp_path, cmd=cmd, user=str(NOBODY.pw_uid), env={"HOME": "/srv"})
    assert proc.returncode == 2, proc.stderr
    assert _report(out).split()[-3:] == ["/srv", "nobody", "nobody"]


def test_a_uid_without_an_account_gets_no_groups_and_no_home(tmp_path, shared):
    """No account: no supplementary groups, and HOME/USER/LOGNAME stay the agent's (env's here)."""
    uid = next(u for u in range(4242, 5000) if not _has_account(u))
    out = shared / "out"
    cmd = REPORT.format(out=shlex.quote(str(out)))
    proc = _run(
        tmp_path,
        cmd=cmd,
        user=str(uid),
        group=NOGROUP,
        env=dict.fromkeys(("HOME", "USER", "LOGNAME"), "-"),
    )
    assert proc.returncode == 2, proc.stderr
    gid = grp.getgrnam(NOGROUP).gr_gid
    assert _report(out) == f"{uid} {gid} [{gid}] - - -"


def test_group_alone_keeps_root_but_drops_its_groups(tmp_path, shared):
    out = shared / "out"
    proc = _run(tmp_path, cmd=REPORT.format(out=shlex.quote(str(out))), group=NOGROUP)
    assert proc.returncode == 2, proc.stderr
    gid = grp.getgrnam(NOGROUP).gr_gid
    uid, g, groups = _report(out).split()[:3]
    assert (int(uid), int(g), groups) == (os.geteuid(), gid, f"[{gid}]")


def test_ifcmd_runs_as_the_user_too(tmp_path, shared):
    """Puppet's onlyif/unless run as the exec's user: the guard sees what cmd would."""
    mark = shared / "ran"
    uid = NOBODY.pw_uid
    proc = _run(
        tmp_path,
        cmd=f"touch {shlex.quote(str(mark))}",
        ifcmd=f'test "$(id -u)" = {uid}',
        ifshell="/bin/sh",
        user="nobody",
    )
    assert proc.returncode == 2, proc.stderr
    assert mark.exists()


def test_an_unknown_user_fails_the_resource_and_runs_nothing(tmp_path, shared):
    mark = shared / "ran"
    proc = _run(tmp_path, cmd=f"touch {shlex.quote(str(mark))}", user="pymgmt-no-such-user")
    assert proc.returncode == 4, proc.stderr
    (err,) = recap_of(proc)["resources"]["Exec[x]"]["failures"]
    assert "user 'pymgmt-no-such-user' does not exist" in err
    assert not mark.exists()


@pytest.mark.parametrize("field", ["user", "group"])
def test_a_malformed_name_is_an_input_error_naming_the_field(tmp_path, field):
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("exec", execs=[{"name": "x", "cmd": "true", field: "a b"}]))
    proc = subprocess.run(
        [*PYMGMT, "validate", str(graph)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert f"{field}: not a {field} name or number: 'a b'" in proc.stderr


def test_a_command_run_as_a_user_still_dies_with_the_agent_on_kill_9(agent, tmp_path, shared):
    """Changing credentials must not lose the guard's parent-death signal."""
    pidfile = shared / "pid"
    res = {
        "name": "x",
        "shell": "/bin/sh",
        "cmd": f"echo $$ > {shlex.quote(str(pidfile))}; exec sleep 60",
        "user": "nobody",
    }
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("exec", execs=[res]))
    a = agent(graph)
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the pid"))
    assert os.stat(f"/proc/{pid}").st_uid == NOBODY.pw_uid
    a.send(signal.SIGKILL)
    a.wait_exit()
    wait_for(lambda: not pid_alive(pid), what="the command to die with the agent")


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
