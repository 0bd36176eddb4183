"""`pymgmt run --puppet`: a real agent running a real Puppet manifest, live.

The agent is started in mgmt's spelling, ``pymgmt run puppet --puppet
MANIFEST``; its JSON events say when a graph was swapped in or rejected.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Agent, event, run_once, wait_for, write_atomic

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("puppet") is None, reason="puppet-agent is not installed"),
]

#: Puppet compiles in seconds; loaded CI machines take several times longer
COMPILE = 180.0


def manifest(root: Path, b: str) -> str:
    return (
        f"file {{ '{root}': ensure => directory }}\n"
        f"file {{ '{root}/a': content => \"a\\n\" }}\n"
        f"file {{ '{root}/b': content => \"{b}\\n\", require => File['{root}/a'] }}\n"
    )


def test_an_edit_recompiles_and_swaps_and_a_broken_manifest_keeps_the_old_graph(
    tmp_path: Path, managed: Path, agent: Callable[..., Agent]
) -> None:
    site = tmp_path / "site.pp"
    root = managed / "out"
    site.write_text(manifest(root, "one"))
    a = agent(Path("puppet"), "--puppet", str(site))
    a.wait_event(event("settled"), timeout=COMPILE, what="the first graph settled")
    assert (root / "b").read_text() == "one\n"

    mark = a.mark()
    write_atomic(site, manifest(root, "two"))
    a.wait_event(event("graph_swapped"), since=mark, timeout=COMPILE, what="the new graph")
    wait_for(lambda: (root / "b").read_text() == "two\n", timeout=COMPILE, what="b rewritten")

    mark = a.mark()
    write_atomic(site, "file { 'broken':\n")
    rejected = a.wait_event(
        event("graph_rejected"), since=mark, timeout=COMPILE, what="the broken manifest refused"
    )
    errors = a.events[rejected]["errors"]
    assert errors[0]["file"] == str(site)
    assert "Syntax error" in errors[0]["message"]
    # the old graph still runs: drift is still repaired
    (root / "a").unlink()
    wait_for(lambda: (root / "a").exists(), timeout=COMPILE, what="a repaired")
    assert a.proc.poll() is None


def test_a_run_once_reports_translation_errors_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "out"
    site = tmp_path / "site.pp"
    site.write_text(
        f"file {{ '{root}': ensure => directory }}\n"
        "tidy { '/tmp/pymgmt-never-tidied': age => '1w' }\n"
    )
    done = run_once(Path("puppet"), tmp_path / "state", "--puppet", str(site))
    assert done.returncode == 1
    tidy = "Tidy[/tmp/pymgmt-never-tidied]: resource type 'Tidy' has no pymgmt kind"
    assert f"{site}:2: {tidy}" in done.stderr
    assert not root.exists()  # nothing was changed
    allowed = run_once(
        Path("puppet"), tmp_path / "state", "--puppet", str(site), "--puppet-allow-unsupported"
    )
    assert allowed.returncode == 2, allowed.stderr
    assert root.is_dir()
    assert "stands in as a noop" in allowed.stderr
