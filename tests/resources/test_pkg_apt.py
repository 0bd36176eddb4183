"""pkg with the apt backend, against this machine's real apt and dpkg.

These install and remove small Debian packages (sl, cowsay, powertop) and
put the machine back as it found them. Transactions are counted from the
agent's own reports (its log line per apt-get run and its JSON `checked`
events), never from the machine-wide /var/log/apt/history.log, which any
other apt user on the machine also writes to.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    apt,
    installed,
    json_lines,
    pid_alive,
    recap_of,
    run_once,
    wait_for,
    without_packages,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.system,  # changes this machine's packages
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt (Debian)"),
]

PACKAGES = ["cowsay", "powertop", "sl"]
DPKG_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")


@pytest.fixture
def clean_packages() -> Iterator[None]:
    """Start with none of the test packages installed; leave none behind."""
    with without_packages(PACKAGES):
        yield


def _graph(path: Path, state: str = "installed", names: list[str] = PACKAGES) -> Path:
    body = "".join(f"  - name: {n}\n    state: {state}\n" for n in names)
    path.write_text(f"graph: pkgs\nresources:\n  pkg:\n{body}")
    return path


def _transactions(stderr: str) -> list[str]:
    """The apt-get runs the agent reported (one INFO line each) in its log."""
    return re.findall(r": (apt-get (?:install|remove) [^\n]*)", stderr)


def test_three_packages_install_in_one_transaction(tmp_path, clean_packages):
    proc = run_once(_graph(tmp_path / "g.yaml"), tmp_path / "p", "--json", timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert all(installed(p) for p in PACKAGES)
    # one apt-get for the whole group
    assert _transactions(proc.stderr) == ["apt-get install cowsay powertop sl"], proc.stderr
    applied = [e for e in json_lines(proc.stdout) if e.get("applied")]
    assert [e["vertex"] for e in applied] == ["Pkg[autogroup:(cowsay,powertop,sl)]"]
    assert sorted(c["field"] for c in applied[0]["changes"]) == PACKAGES
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
    proc = run_once(g, tmp_path / "p", "--json", timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert sorted(_transactions(proc.stderr)) == [
        "apt-get install cowsay",
        "apt-get install powertop",
    ]
    applied = sorted(e["vertex"] for e in json_lines(proc.stdout) if e.get("applied"))
    assert applied == ["Pkg[cowsay]", "Pkg[powertop]"]


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
    # said as it begins: a transaction may take minutes (issue 12)
    assert re.search(r" INFO  Pkg\[[^\]]*\]: applying .*\(a package transaction\)", proc.stderr)
    bad = run_once(
        _graph(tmp_path / "b.yaml", names=["no-such-package-pymgmt"]), tmp_path / "p", timeout=600
    )
    assert bad.returncode == 4
    assert "Unable to locate package no-such-package-pymgmt" in bad.stderr


# -- a stop never cuts a transaction in half (issue 8 item 17) -----------------------------


def _descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (children of every thread, recursively)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _dpkg_lock_free() -> bool:
    """Can we take dpkg's locks right now (as apt and dpkg themselves would)?"""
    for path in DPKG_LOCKS:
        with open(path, "w") as f:
            try:
                fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False
            fcntl.lockf(f, fcntl.LOCK_UN)
    return True


@pytest.mark.parametrize("state", ["installed", "uninstalled"])
def test_a_stop_during_a_transaction_waits_for_it_reports_it_and_reaps_it(
    tmp_path, clean_packages, agent, state
):
    if state == "uninstalled":
        apt("install", "sl")
    a = agent(_graph(tmp_path / "g.yaml", state, ["sl"]))
    apt_get = wait_for(
        lambda: next((p for p in _descendants(a.pid) if _comm(p) == "apt-get"), None),
        timeout=120,
        what="the agent's apt-get to start",
    )
    a.send(signal.SIGTERM)  # while apt-get runs
    a.wait_exit(timeout=600)
    # The agent waited for the transaction: it is over, not running on unreaped.
    assert not pid_alive(apt_get), f"apt-get (pid {apt_get}) outlived the agent"
    # Nothing it started lives on (orphans would be re-parented to this pytest,
    # a child subreaper).
    leftovers = [(p, _comm(p)) for p in _descendants(os.getpid())]
    assert not [p for p in leftovers if p[1] in ("apt-get", "dpkg", "http")], leftovers
    assert installed("sl") is (state == "installed")  # the whole transaction happened
    # A graceful stop starts nothing new but lets the running apply finish, and
    # says so; the transaction is then reported like any other (issue 8 item 3:
    # the packages changed, so the recap must count them).
    assert "waiting for 1 running resource to finish" in a.stderr, a.stderr
    applied = a.find(lambda e: e.get("event") == "checked" and e.get("applied"))
    assert [e["vertex"] for e in applied] == ["Pkg[sl]"], a.describe()
    recap = a.recap()
    assert recap["interrupted"] is True, recap
    assert recap["resources"]["Pkg[sl]"]["outcome"] == "changed", recap
    assert _dpkg_lock_free()
    # dpkg is consistent: nothing is left half-installed or unconfigured.
    audit = subprocess.run(["dpkg", "--audit"], capture_output=True, text=True, check=False)
    assert audit.stdout.strip() == "", audit.stdout


# -- AutoEdges follow the dpkg database (issue 8 item 16) ---------------------------------


def test_a_package_installed_after_start_gains_its_autoedges_on_the_next_reload(
    tmp_path, clean_packages, agent
):
    g = tmp_path / "g.yaml"

    def graph(version: str) -> None:
        g.write_text(
            "graph: pkgs\nresources:\n  pkg:\n  - name: sl\n"
            # a directory sl ships: creating it before dpkg does is harmless
            "  file:\n  - name: /usr/share/doc/sl/\n    state: exists\n"
            f"  noop:\n  - name: version-{version}\n"
        )

    graph("1")
    a = agent(g)
    a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("vertex") == "Pkg[sl]" and e["applied"],
        timeout=600,
        what="the agent to install sl",
    )
    edge = "Adding AutoEdge: Pkg[sl] -> File[/usr/share/doc/sl/]"
    assert edge not in a.stderr  # sl was not installed when the first graph was compiled
    since = a.mark()
    graph("2")  # a live reload: compiled again, now with sl installed
    a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("vertex") == "Noop[version-2]",
        since=since,
        timeout=60,
        what="the reloaded graph to run",
    )
    # logged (stderr) before the new graph ran (its events: stdout); the two
    # pipes are read by two threads, so the log line may still be on its way
    wait_for(lambda: edge in a.stderr, what=f"{edge!r} in the log")


def test_a_transaction_outlives_an_agent_killed_with_sigkill_and_completes(
    tmp_path, clean_packages, agent
):
    """No PDEATHSIG and no pipe to break: dpkg is never cut in half, even by kill -9."""
    a = agent(_graph(tmp_path / "g.yaml", "installed", ["sl"]))
    apt_get = wait_for(
        lambda: next((p for p in _descendants(a.pid) if _comm(p) == "apt-get"), None),
        timeout=120,
        what="the agent's apt-get to start",
    )
    a.send(signal.SIGKILL)
    a.wait_exit(timeout=60)
    # Orphaned (re-parented to this pytest, a child subreaper), it runs to its end.
    wait_for(lambda: not pid_alive(apt_get), timeout=600, what="the orphaned apt-get to finish")
    status = os.waitpid(apt_get, 0)[1]
    assert os.waitstatus_to_exitcode(status) == 0, "apt-get was killed or failed"
    assert installed("sl")
    assert _dpkg_lock_free()
    audit = subprocess.run(["dpkg", "--audit"], capture_output=True, text=True, check=False)
    assert audit.stdout.strip() == "", audit.stdout
