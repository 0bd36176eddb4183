"""pkg through PackageKit over the real system bus (packagekitd, apt backend)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import installed, json_lines, run_once, without_packages

pytestmark = [pytest.mark.slow, pytest.mark.system]

PACKAGES = ["cowsay", "sl"]


@pytest.fixture(autouse=True)
def on_the_test_bus(packagekit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents use the test run's private system bus, where our packagekitd is."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", packagekit)


@pytest.fixture
def clean(packagekit: str) -> Iterator[None]:
    with without_packages(PACKAGES):
        yield


def _graph(path: Path, state: str, names: list[str] = PACKAGES) -> Path:
    body = "".join(f"  - name: {n}\n    state: {state}\n    backend: packagekit\n" for n in names)
    path.write_text(f"graph: pk\nresources:\n  pkg:\n{body}")
    return path


def test_grouped_install_and_remove_through_packagekit(tmp_path, clean):
    proc = run_once(_graph(tmp_path / "g.yaml", "installed"), tmp_path / "p", "--json", timeout=600)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert all(installed(p) for p in PACKAGES)
    applied = [e["vertex"] for e in json_lines(proc.stdout) if e.get("applied")]
    assert applied == ["Pkg[autogroup:(cowsay,sl)]"]
    again = run_once(_graph(tmp_path / "g.yaml", "installed"), tmp_path / "p", timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    gone = run_once(_graph(tmp_path / "g.yaml", "uninstalled"), tmp_path / "p", timeout=600)
    assert gone.returncode == 2, gone.stdout + gone.stderr
    assert not any(installed(p) for p in PACKAGES)


def test_an_unknown_package_is_a_clear_packagekit_failure(tmp_path, packagekit):
    proc = run_once(
        _graph(tmp_path / "g.yaml", "installed", ["no-such-package-pymgmt"]),
        tmp_path / "p",
        "--json",
        timeout=600,
    )
    assert proc.returncode == 4
    (fail,) = [e for e in json_lines(proc.stdout) if e["event"] == "failed"]
    assert "PackageKit cannot find no-such-package-pymgmt" in fail["error"]


def test_an_unreachable_packagekit_fails_clearly_and_recovers_with_retry(
    tmp_path, packagekit, monkeypatch, agent
):
    link = tmp_path / "bus"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={link}")
    g = tmp_path / "g.yaml"
    g.write_text(
        "graph: pk\nresources:\n  pkg:\n  - name: base-files\n    backend: packagekit\n"
        "    meta: {retry: -1, delay: 100}\n"
    )
    a = agent(g)
    i = a.wait_event(
        lambda e: e.get("event") == "failed" and e.get("retry_in") is not None,
        what="a failure that will be retried",
    )
    assert "cannot connect to D-Bus" in a.events[i]["error"]
    os.symlink(packagekit.removeprefix("unix:path="), link)  # PackageKit is back
    a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("vertex") == "Pkg[base-files]",
        timeout=120,
        what="a successful check through PackageKit",
    )
