"""`pymgmt install-service`: the unit, the configuration and the graph it writes."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import PYMGMT


def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYMGMT, "install-service", *args], capture_output=True, text=True, check=False
    )


def unit_settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")


def test_the_unit_runs_this_pymgmt_as_a_notify_service_with_watchdog_and_reload(tmp_path):
    proc = install("--root", str(tmp_path), "--watchdog", "20")
    assert proc.returncode == 0, proc.stderr
    unit = tmp_path / "etc/systemd/system/pymgmt.service"
    u = unit_settings(unit.read_text())
    assert u["ExecStart"] == f"{PYMGMT[0]} run --config /etc/pymgmt/pymgmt.yaml"
    assert (u["Type"], u["NotifyAccess"], u["WatchdogSec"]) == ("notify", "main", "20s")
    assert u["ExecReload"] == "/bin/sh -c 'kill -HUP \"$MAINPID\"'"
    assert u["KillMode"] == "mixed"  # only the agent is signalled: its applies finish
    assert u["SyslogLevelPrefix"] == "yes"
    assert u["WantedBy"] == "multi-user.target"
    for path in (unit, tmp_path / "etc/pymgmt/pymgmt.yaml", tmp_path / "etc/pymgmt/graph.yaml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    config = (tmp_path / "etc/pymgmt/pymgmt.yaml").read_text()
    assert "\ngraph: /etc/pymgmt/graph.yaml\n" in config


def test_an_existing_configuration_and_graph_are_kept(tmp_path):
    assert install("--root", str(tmp_path)).returncode == 0
    config = tmp_path / "etc/pymgmt/pymgmt.yaml"
    graph = tmp_path / "etc/pymgmt/graph.yaml"
    config.write_text("graph: /srv/site.yaml\n")
    graph.write_text("mine\n")
    proc = install("--root", str(tmp_path), "--watchdog", "0")
    assert proc.returncode == 0, proc.stderr
    assert f"kept {config} (it exists)" in proc.stdout
    assert (config.read_text(), graph.read_text()) == ("graph: /srv/site.yaml\n", "mine\n")
    unit = (tmp_path / "etc/systemd/system/pymgmt.service").read_text()
    assert "WatchdogSec" not in unit_settings(unit)  # the unit is pymgmt's: rewritten


def test_another_configuration_path_goes_into_the_unit_with_its_graph_beside(tmp_path):
    proc = install("--root", str(tmp_path), "--config", "/opt/my conf/agent.yaml")
    assert proc.returncode == 0, proc.stderr
    u = unit_settings((tmp_path / "etc/systemd/system/pymgmt.service").read_text())
    assert u["ExecStart"].endswith(' run --config "/opt/my conf/agent.yaml"')
    config = (tmp_path / "opt/my conf/agent.yaml").read_text()
    assert "\ngraph: /opt/my conf/graph.yaml\n" in config
    assert (tmp_path / "opt/my conf/graph.yaml").is_file()


def test_print_writes_nothing(tmp_path):
    proc = install("--print", "--root", str(tmp_path))
    assert proc.returncode == 0 and "Type=notify" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_shipped_graph_is_valid(tmp_path):
    assert install("--root", str(tmp_path)).returncode == 0
    graph = tmp_path / "etc/pymgmt/graph.yaml"
    proc = subprocess.run([*PYMGMT, "validate", str(graph)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_the_files_are_in_the_wheel(tmp_path):
    """Packagers find them in the wheel's data (share/pymgmt); install-service in the package."""
    repo = Path(__file__).resolve().parents[2]
    tree = tmp_path / "tree"  # a copy: building in place would leave build/ in the repo
    shutil.copytree(repo / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(repo / "bin", tree / "bin")  # the command (bin/pymgmt)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, tree / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(tree)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("pymgmt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert any(n.endswith(".data/scripts/pymgmt") for n in names), names  # the command
    for name in ("pymgmt.service", "pymgmt.yaml", "graph.yaml"):
        assert f"pymgmt/data/{name}" in names
        assert any(n.endswith(f".data/data/share/pymgmt/{name}") for n in names), names
