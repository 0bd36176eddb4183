"""pkg with the apt backend, against this machine's real apt and dpkg.

These install and remove small Debian packages (sl, cowsay, powertop) and
put the machine back as it found them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import apt, installed, json_lines, recap_of, run_once, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt (Debian)"),
]

PACKAGES = ["cowsay", "powertop", "sl"]
HISTORY = Path("/var/log/apt/history.log")


@pytest.fixture
def clean_packages() -> Iterator[None]:
    """Start with none of the test packages installed; leave none behind."""
    present = [p for p in PACKAGES if installed(p)]
    if present:
        apt("remove", *present)
    yield
    present = [p for p in PACKAGES if installed(p)]
    if present:
        apt("remove", *present)


def _graph(path: Path, state: str = "installed", names: list[str] = PACKAGES) -> Path:
    body = "".join(f"  - name: {n}\n    state: {state}\n" for n in names)
    path.write_text(f"graph: pkgs\nresources:\n  pkg:\n{body}")
    return path


def _history_runs() -> list[str]:
    """The Commandline of every apt run in the history log so far."""
    if not HISTORY.exists():
        return []
    return [ln for ln in HISTORY.read_text().splitlines() if ln.startswith("Commandline:")]


def test_three_packages_install_in_one_transaction(tmp_path, clean_packages):
    before = len(_history_runs())
    proc = run_once(_graph(tmp_path / "g.yaml"), tmp_path / "p", "--json", timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert all(installed(p) for p in PACKAGES)
    runs = _history_runs()[before:]
    assert len(runs) == 1, runs  # one apt-get for the whole group
    assert all(p in runs[0] for p in PACKAGES)
    applied = [e["vertex"] for e in json_lines(proc.stdout) if e.get("applied")]
    assert applied == ["Pkg[autogroup:(cowsay,powertop,sl)]"]
    # Converged now: a second run changes nothing.
    again = run_once(_graph(tmp_path / "g.yaml"), tmp_path / "p", "--json", timeout=600)
    assert again.returncode == 0, again.stderr
    assert recap_of(again)["totals"] == {"unchanged": 1}


def test_autogroup_false_installs_one_package_per_transaction(tmp_path, clean_packages):
    g = tmp_path / "g.yaml"
    g.write_text(
        "graph: pkgs\nresources:\n  pkg:\n"
        + "".join(f"  - name: {n}\n    meta: {{autogroup: false}}\n" for n in PACKAGES[:2])
    )
    before = len(_history_runs())
    proc = run_once(g, tmp_path / "p", timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert len(_history_runs()[before:]) == 2


def test_drift_is_repaired_when_apt_removes_a_package_behind_the_agents_back(
    tmp_path, clean_packages, agent
):
    a = agent(_graph(tmp_path / "g.yaml", names=["sl"]))
    a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("applied"),
        timeout=600,
        what="the first install",
    )
    assert installed("sl")
    since = a.mark()
    apt("remove", "sl")  # behind the agent's back
    a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("drift"),
        since=since,
        timeout=600,
        what="the repair",
    )
    wait_for(lambda: installed("sl"), timeout=60, what="sl to be installed again")


def test_uninstalled_removes_and_an_unknown_package_fails_clearly(tmp_path, clean_packages):
    apt("install", "sl")
    proc = run_once(_graph(tmp_path / "g.yaml", "uninstalled", ["sl"]), tmp_path / "p", timeout=600)
    assert proc.returncode == 2 and not installed("sl")
    bad = run_once(
        _graph(tmp_path / "b.yaml", names=["no-such-package-pymgmt"]), tmp_path / "p", timeout=600
    )
    assert bad.returncode == 4
    assert "Unable to locate package no-such-package-pymgmt" in bad.stdout
