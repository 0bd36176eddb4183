"""A managed path under a directory a user controls: the attacks of issue 8, item 13.

The agent runs as root (so do these tests). The "user" is uid 65534
(nobody): it owns a home directory and the symlinks it plants there, exactly
as a real unprivileged user could. Each test tries one attack for real and
checks that nothing outside the user's reach was read, written or changed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    graph_doc,
    json_lines,
    resource_context,
    run_async,
    run_once,
    snapshot,
    write_graph,
)

from pymgmt.errors import ResourceError
from pymgmt.resources.file import File

NOBODY = 65534
SECRET = "TOPSECRET root-only content\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play both sides")


def _user_dir(path: Path) -> Path:
    path.mkdir()
    os.chown(path, NOBODY, NOBODY)
    return path


def _user_symlink(link: Path, target: Path) -> None:
    """A symlink planted by the user: it owns the link."""
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)


def _victim(tmp_path: Path) -> Path:
    """A root-only directory with a root-only file the user would like to read or own."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (victim / "authorized_keys").write_text(SECRET)
    os.chmod(victim / "authorized_keys", 0o600)
    return victim


def _run(tmp_path: Path, *res: dict[str, Any], args: tuple[str, ...] = ("--json",)) -> Any:
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("attack", files=list(res)))
    return run_once(graph, tmp_path / "state", *args)


def _failures(proc: Any) -> list[str]:
    return [e["error"] for e in json_lines(proc.stdout) if e.get("event") == "failed"]


def test_a_parent_symlinked_by_a_user_is_refused_and_nothing_is_written(tmp_path):
    home = _user_dir(tmp_path / "home")
    victim = _victim(tmp_path)
    _user_symlink(home / "ssh", victim)
    before = snapshot(victim)
    target = home / "ssh" / "authorized_keys"
    proc = _run(tmp_path, {"name": "keys", "path": str(target), "content": "attacker key\n"})
    assert snapshot(victim) == before
    assert proc.returncode == 4, proc.stdout + proc.stderr
    (error,) = _failures(proc)
    assert f"refusing to follow {home / 'ssh'}" in error and "owned by uid 65534" in error


def test_a_directory_under_a_user_symlinked_parent_is_not_created(tmp_path):
    home = _user_dir(tmp_path / "home")
    victim = _victim(tmp_path)
    _user_symlink(home / "etc", victim)
    before = snapshot(victim)
    proc = _run(tmp_path, {"name": "d", "path": f"{home}/etc/sudoers.d/", "mode": "0777"})
    assert snapshot(victim) == before
    assert proc.returncode == 4 and "refusing to follow" in _failures(proc)[0]


def test_state_absent_does_not_delete_through_a_user_symlinked_parent(tmp_path):
    home = _user_dir(tmp_path / "home")
    victim = _victim(tmp_path)
    _user_symlink(home / "ssh", victim)
    proc = _run(tmp_path, {"name": "k", "path": f"{home}/ssh/authorized_keys", "state": "absent"})
    assert (victim / "authorized_keys").read_text() == SECRET
    assert proc.returncode == 4 and "refusing to follow" in _failures(proc)[0]


def test_noop_diff_never_shows_a_file_reached_through_a_user_symlink(tmp_path):
    home = _user_dir(tmp_path / "home")
    victim = _victim(tmp_path)
    _user_symlink(home / "ssh", victim)
    res = {"name": "k", "path": f"{home}/ssh/authorized_keys", "content": "x\n"}
    for args in (("--noop", "-v"), ("--noop", "--json"), ("-v",)):
        proc = _run(tmp_path, res, args=args)
        assert "TOPSECRET" not in proc.stdout + proc.stderr, args
        assert "refusing to follow" in proc.stdout + proc.stderr, args
    assert (victim / "authorized_keys").read_text() == SECRET


def test_a_final_symlink_is_never_followed_for_content_mode_or_owner(tmp_path):
    home = _user_dir(tmp_path / "home")
    victim = _victim(tmp_path)
    _user_symlink(home / "keys", victim / "authorized_keys")
    before = snapshot(victim)
    proc = _run(
        tmp_path,
        {"name": "k", "path": str(home / "keys"), "content": "x\n", "mode": "0666"},
        args=("--noop", "-v"),
    )
    assert "TOPSECRET" not in proc.stdout + proc.stderr
    proc = _run(tmp_path, {"name": "k", "path": str(home / "keys"), "mode": "0666", "owner": "0"})
    assert snapshot(victim) == before
    assert proc.returncode == 4 and "is a symlink (never followed" in _failures(proc)[0]
    assert os.path.islink(home / "keys")


def test_symlinks_owned_by_root_are_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to("real")  # root's own: trusted, like /var/run -> /run
    proc = _run(tmp_path, {"name": "f", "path": f"{tmp_path}/link/f", "content": "hi\n"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (real / "f").read_text() == "hi\n"


# -- a symlink swapped in between check and apply (in-process, deterministic) ----------------


@pytest.mark.parametrize(
    "params",
    [
        {"mode": "0666"},
        {"owner": str(NOBODY), "group": str(NOBODY)},
        {"content": "attacker key\n"},
    ],
    ids=["chmod", "chown", "content"],
)
def test_a_symlink_swapped_in_after_the_check_is_not_followed_by_apply(tmp_path, params):
    home = _user_dir(tmp_path / "home")
    victim = _victim(tmp_path)
    path = home / "keys"
    path.write_text("mine\n")
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)
    res = File(name="keys", path=str(path), **params)

    async def attack() -> None:
        await res.init(resource_context(tmp_path))
        plan = await res.check()
        assert plan, "the check must find something to change"
        # The user swaps the checked file for a symlink before the apply.
        path.unlink()
        _user_symlink(path, victim / "authorized_keys")
        with pytest.raises(ResourceError, match="is a symlink"):
            await res.apply(plan)

    before = snapshot(victim)
    run_async(attack())
    assert snapshot(victim) == before
    st = os.lstat(victim / "authorized_keys")
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 0)
    assert os.path.islink(path)


def test_a_root_symlink_does_not_launder_a_user_symlink_behind_it(tmp_path):
    home = _user_dir(tmp_path / "home")
    victim = _victim(tmp_path)
    _user_symlink(home / "ssh", victim)
    (tmp_path / "alias").symlink_to(home / "ssh")  # root's, but it leads to the user's
    before = snapshot(victim)
    res = {"name": "k", "path": f"{tmp_path}/alias/authorized_keys", "content": "x"}
    proc = _run(tmp_path, res)
    assert snapshot(victim) == before
    assert proc.returncode == 4 and f"refusing to follow {home / 'ssh'}" in _failures(proc)[0]
