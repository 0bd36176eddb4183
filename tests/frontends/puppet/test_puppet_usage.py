"""The Puppet flags of `pymgmt run`: usage errors exit 1 and change nothing (no Puppet run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import PYMGMT, snapshot

CASES = {
    "the frontend word without --puppet": (
        ["puppet", "site.pp"],
        "mgmt's puppet frontend word needs --puppet MANIFEST",
    ),
    "a graph file and --puppet": (
        ["--puppet", "site.pp", "graph.yaml"],
        "give a graph file or --puppet, not both",
    ),
    "an empty --puppet": (["--puppet", ""], "--puppet needs a manifest file"),
    "--puppet-conf alone": (
        ["--puppet-conf", "p.conf", "graph.yaml"],
        "--puppet-conf, --puppet-node, --puppet-collect-dir and --puppet-allow-unsupported "
        "go with --puppet",
    ),
    "--puppet-collect-dir alone": (
        ["--puppet-collect-dir", "/srv/share", "graph.yaml"],
        "--puppet-collect-dir and --puppet-allow-unsupported go with --puppet",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_puppet_usage_errors(tmp_path: Path, case: str) -> None:
    words, message = CASES[case]
    (tmp_path / "graph.yaml").write_text("graph: g\nresources: {}\n")
    before = snapshot(tmp_path)
    proc = subprocess.run(
        [*PYMGMT, "run", "--tmp-prefix", *words],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
    assert snapshot(tmp_path) == before


def test_a_missing_manifest_is_refused_before_puppet_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*PYMGMT, "run", "--tmp-prefix", "--puppet", str(tmp_path / "nope.pp")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert f"{tmp_path}/nope.pp: no such manifest" in proc.stderr
