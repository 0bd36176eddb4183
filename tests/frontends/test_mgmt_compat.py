"""Graphs in the shape of mgmt's own examples run unchanged (issue 8, item 18).

mgmt's examples/yaml/ and test/shell/ graphs carry things pymgmt once
refused although nothing is wrong with them: content on an absent file, a
resource declared twice identically. These are accepted with a warning that
says what is ignored; the fixtures in mgmt/ are written in mgmt's format
(``---``, quoted paths, ``edges: []``) with paths under /tmp/pymgmt-mgmt,
which each test moves to a fresh directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

MGMT = Path(__file__).parent / "mgmt"
PLACEHOLDER = "/tmp/pymgmt-mgmt"


def _instantiate(name: str, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    root.mkdir()
    graph = tmp_path / name
    graph.write_text((MGMT / name).read_text().replace(PLACEHOLDER, str(root)))
    return graph, root


def _run(pymgmt: Any, graph: Path, tmp_path: Path) -> Any:
    (proc,) = pymgmt(
        ["run", "--converged-timeout", "0", "--prefix", str(tmp_path / "state"), str(graph)]
    )
    return proc


@pytest.mark.parametrize("name", sorted(p.name for p in MGMT.glob("*.yaml")))
def test_mgmt_shaped_graph_validates(name: str, pymgmt: Any, tmp_path: Path) -> None:
    graph, _ = _instantiate(name, tmp_path)
    (proc,) = pymgmt(["validate", str(graph)])
    assert proc.returncode == 0, proc.stderr
    assert "is valid" in proc.stdout


def test_an_absent_file_with_content_is_removed_and_the_content_ignored_aloud(
    pymgmt: Any, tmp_path: Path
) -> None:
    graph, root = _instantiate("absent_with_content.yaml", tmp_path)
    (root / "gone").write_text("still here\n")
    proc = _run(pymgmt, graph, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert not (root / "gone").exists()
    assert (root / "first").read_text() == "the first\n"
    assert (root / "second").read_text() == "the second\n"
    assert f"{graph}:21:14: content: ignored: the file is to be absent (content, mode)" in (
        proc.stderr
    )


def test_a_file_below_its_directory_runs_in_order(pymgmt: Any, tmp_path: Path) -> None:
    graph, root = _instantiate("autoedge_nested.yaml", tmp_path)
    proc = _run(pymgmt, graph, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert (root / "top" / "inner").read_text() == "inside\n"


def test_a_resource_declared_twice_identically_runs_once(pymgmt: Any, tmp_path: Path) -> None:
    graph, root = _instantiate("identical_twice.yaml", tmp_path)
    proc = _run(pymgmt, graph, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "duplicate resource File[twin], identical to the one at line 6: merged" in proc.stderr
    # the warning, its change, and its line in the recap
    assert proc.stderr.count("File[twin]") == 3, proc.stderr
    assert (root / "twin").read_text() == "same\n"


def test_validate_json_lists_the_warnings(pymgmt: Any, tmp_path: Path) -> None:
    import json

    graph, _ = _instantiate("absent_with_content.yaml", tmp_path)
    (proc,) = pymgmt(["validate", "--json", str(graph)])
    assert proc.returncode == 0, proc.stderr
    (warning,) = json.loads(proc.stdout)["warnings"]
    assert (warning["line"], warning["field"]) == (21, "content")
    assert warning["message"] == "ignored: the file is to be absent (content, mode)"


def test_an_exported_resource_is_applied_here_after_its_local_edge(
    pymgmt: Any, tmp_path: Path
) -> None:
    graph, root = _instantiate("edge_to_exported.yaml", tmp_path)
    proc = _run(pymgmt, graph, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert (root / "f1").read_text() == "hello\n"
