"""Habits a shell user expects: ``-`` is standard input, a wrong path is named as such,
and every problem of a graph comes out in one go (issue 12, "Habits")."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import PYMGMT

from pymgmt import GraphBuilder
from pymgmt.errors import InputErrors
from pymgmt.resources.exec import Exec
from pymgmt.resources.file import File
from pymgmt.resources.noop import Noop
from pymgmt.resources.password import Password


def _pymgmt(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYMGMT, *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def _graph(path: Path) -> str:
    return f'graph: piped\nresources:\n  file:\n  - name: {path}\n    content: "from a pipe\\n"\n'


def test_validate_dash_reads_the_graph_from_standard_input(tmp_path: Path) -> None:
    p = _pymgmt("validate", "-", stdin=_graph(tmp_path / "f"))
    assert p.returncode == 0, p.stderr
    assert "<stdin>: graph 'piped' is valid: 1 resource (1 file), 0 edges" in p.stdout


def test_an_error_in_a_graph_from_standard_input_is_placed_in_stdin(tmp_path: Path) -> None:
    p = _pymgmt("validate", "-", stdin=_graph(tmp_path / "f") + "    mode: rw\n")
    assert p.returncode == 1
    assert "<stdin>:6:11: mode: expected an octal mode" in p.stderr


def test_run_dash_applies_the_graph_from_standard_input_once(tmp_path: Path) -> None:
    target = tmp_path / "f"
    p = _pymgmt(
        "run", "--converged-timeout", "0", "--prefix", str(tmp_path / "state"), "--json", "-",
        stdin=_graph(target),
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert target.read_text() == "from a pipe\n"
    assert not (tmp_path / "state" / "-").exists()


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_missing_graph_file_is_no_such_file_not_an_invalid_graph(
    command: str, tmp_path: Path
) -> None:
    extra = (
        ["--converged-timeout", "0", "--prefix", str(tmp_path / "state")]
        if command == "run"
        else []
    )
    p = _pymgmt(command, *extra, "missing.yaml", cwd=tmp_path)
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and last.endswith(
        "missing.yaml: no such file; nothing was changed"
    )
    assert "invalid" not in p.stderr


def test_a_missing_remote_graph_file_is_no_such_file(tmp_path: Path) -> None:
    p = _pymgmt(
        "run", "--converged-timeout", "0", "--prefix", str(tmp_path / "state"),
        "--remote", "gone.yaml", cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 1
    assert "error: gone.yaml: no such file; nothing was changed" in p.stderr
    assert "invalid" not in p.stderr


def test_a_directory_given_as_the_graph_is_named_as_such_not_as_an_invalid_graph(
    tmp_path: Path,
) -> None:
    p = _pymgmt("validate", str(tmp_path))
    assert p.returncode == 1
    assert p.stderr == (
        f"error: {tmp_path}: the graph file must be a regular file, and this is a directory; "
        "nothing was changed\n"
    )
    j = _pymgmt("validate", "--json", str(tmp_path))
    (err,) = json.loads(j.stdout)["errors"]
    assert err["message"] == "the graph file must be a regular file, and this is a directory"


def test_validate_lists_problems_of_every_stage_at_once(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "graph: stages\n"
        "resources:\n"
        "  noop:\n"
        "  - name: n1\n"
        "  - name: n2\n"
        "  file:\n"
        f"  - name: {tmp_path}/f\n"
        "    mode: rw\n"
        "edges:\n"
        "- {name: e1, from: {kind: noop, name: n1}, to: {kind: noop, name: n2}}\n"
        "- {name: e2, from: {kind: noop, name: n2}, to: {kind: noop, name: n1}}\n"
    )
    p = _pymgmt("validate", "--json", str(graph))
    assert p.returncode == 1
    errors = json.loads(p.stdout)["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [(8, "mode"), (10, "edges")]


def test_the_python_api_reports_every_graph_wide_problem_at_once(tmp_path: Path) -> None:
    g = GraphBuilder("all-at-once")
    a, b = g.add(Noop(name="a")), g.add(Noop(name="b"))
    g.edge(a, b)
    g.edge(b, a)  # a cycle
    g.add(File(name="one", path=str(tmp_path / "same"), content="1"))
    g.add(File(name="two", path=str(tmp_path / "same"), content="2"))  # a fight over one path
    pw, e = g.add(Password(name="pw")), g.add(Exec(name="e", cmd="true"))
    g.edge(pw, e, send="pasword", recv="cmd")  # no such output
    with pytest.raises(InputErrors) as err:
        g.build()
    text = str(err.value)
    assert "the edges form a cycle" in text
    assert "and so does File[one]" in text
    assert "sends no value named 'pasword'" in text
