"""The state directory is the agent's own (review findings 3 and 4).

3. Its path is walked like any path the agent touches as root: a symlink
   another user planted in it is refused, the directory it points to is left
   alone, and what the agent creates there is 0700.

The "user" is uid 65534 (nobody), as in tests/resources/test_file_symlinks.py.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from helpers import json_lines, run_once, snapshot

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


def test_a_users_symlink_inside_the_state_directory_is_not_followed(tmp_path):
    """Password state goes through the safe walk too: ``state/`` planted as a symlink."""
    victim = _victim(tmp_path)
    prefix = tmp_path / "prefix"
    prefix.mkdir(mode=0o700)
    _user_symlink(prefix / "state", victim)
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
