"""password: one secret per resource, kept across runs (issue 8, item 9)."""

from __future__ import annotations

from pathlib import Path

from helpers import run_async

from pymgmt.frontends.api import GraphBuilder
from pymgmt.frontends.api import run_async as run_graph
from pymgmt.resources.file import File
from pymgmt.resources.password import Password


def _graph(tmp_path: Path, *names: str) -> GraphBuilder:
    """Each password sent into a file of its own: the file shows the secret."""
    g = GraphBuilder("pw")
    for i, name in enumerate(names):
        pw = g.add(Password(name=name, length=32))
        f = g.add(File(name=str(tmp_path / f"out{i}"), mode="0600"))
        g.edge(pw, f, send="password", recv="content")
    return g


def test_names_that_sanitise_alike_get_different_secrets(tmp_path):
    names = ("db/pw", "db_pw", "db pw", "x" * 120 + "a", "x" * 120 + "b")
    result = run_async(run_graph(_graph(tmp_path, *names), state_dir=tmp_path / "state"))
    assert result.exit_code == 2
    secrets = [(tmp_path / f"out{i}").read_text() for i in range(len(names))]
    assert all(len(s) == 32 for s in secrets)
    assert len(set(secrets)) == len(names), "two password resources share one secret"
    # and each keeps its own on the next run
    again = run_async(run_graph(_graph(tmp_path, *names), state_dir=tmp_path / "state"))
    assert again.exit_code == 0
    assert [(tmp_path / f"out{i}").read_text() for i in range(len(names))] == secrets


def test_a_password_stored_under_the_old_name_is_kept(tmp_path):
    """State written before issue 8 (``state/password-<name>``) survives the upgrade."""
    legacy = tmp_path / "state" / "state" / "password-db_pw"
    legacy.mkdir(parents=True, mode=0o700)
    old = "A" * 16 + "b" * 16
    (legacy / "password").write_text(old)
    result = run_async(run_graph(_graph(tmp_path, "db_pw"), state_dir=tmp_path / "state"))
    assert result.exit_code == 2  # the file receives it for the first time
    assert (tmp_path / "out0").read_text() == old
    assert not legacy.exists()
