"""The example graphs in examples/: each validates, reads as intended, and runs.

Examples manage paths under /tmp/pymgmt-examples/; the run tests replace that
prefix with a fresh directory, run ``pymgmt run --converged-timeout 0`` and
look at the result on disk. A second run of a converged graph must change
nothing (exit code 0).
"""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path

import pytest

from pymgmt.frontends.yamlgraph import Collect, YamlGraph, load
from pymgmt.resources.exec import Exec
from pymgmt.resources.file import File

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALL = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
PLACEHOLDER = "/tmp/pymgmt-examples"
#: exit codes of `run --converged-timeout`
CHANGED, UNCHANGED = 2, 0

#: The examples this suite knows (demo.yaml belongs to the README and only validates).
OURS = [
    "exported.yaml",
    "fan-in-fan-out.yaml",
    "files.yaml",
    "hello-world.yaml",
    "limit.yaml",
    "modes.yaml",
    "retry.yaml",
    "semaphores.yaml",
]


def _graph(name: str) -> YamlGraph:
    return load(str(EXAMPLES / name))


def _edges(g: YamlGraph) -> set[tuple[str, str]]:
    return {(e.src[1], e.dst[1]) for e in g.edges}


def _instantiate(name: str, tmp_path: Path) -> tuple[Path, Path]:
    """The example with its paths moved under tmp_path/root (not yet created)."""
    root = tmp_path / "root"
    graph = tmp_path / name
    graph.write_text((EXAMPLES / name).read_text().replace(PLACEHOLDER, str(root)))
    return graph, root


def _run(pymgmt, graph: Path, tmp_path: Path) -> int:
    (proc,) = pymgmt(
        ["run", "--converged-timeout", "0", "--prefix", str(tmp_path / "state"), str(graph)]
    )
    assert "0 failed" in proc.stderr, proc.stdout + proc.stderr
    return proc.returncode


# -- every example ----------------------------------------------------------------


def test_the_suite_knows_every_example_of_ours() -> None:
    assert set(OURS) <= set(ALL)


def test_every_example_validates_from_the_command_line(pymgmt) -> None:
    procs = pymgmt(*(["validate", str(EXAMPLES / name)] for name in ALL))
    for name, proc in zip(ALL, procs, strict=True):
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        # mgmt's remote examples carry a password in their ssh:// URL: warned of
        warning = "a password in an ssh:// URL is readable by anyone"
        assert proc.stderr == "" or (name.startswith("remote") and warning in proc.stderr)
        assert "is valid" in proc.stdout


@pytest.mark.parametrize("name", OURS)
def test_example_manages_only_paths_under_the_placeholder(name: str) -> None:
    g = _graph(name)
    for r in g.vertices.values():
        if isinstance(r, File):
            assert r.target.startswith(PLACEHOLDER + "/"), r
        if isinstance(r, Exec):
            for path in (r.creates, r.cwd):
                assert not path or path.startswith(PLACEHOLDER + "/"), r


# -- what each example says ---------------------------------------------------------


def test_hello_world_is_a_noop_before_a_file_with_a_comment() -> None:
    g = _graph("hello-world.yaml")
    assert g.name == "hello-world"
    assert ("noop1", "file1") in _edges(g)
    f = g.vertices[("file", "file1")]
    assert isinstance(f, File)
    assert f.content == "hello world from pymgmt\n"
    assert "comment:" in (EXAMPLES / "hello-world.yaml").read_text()


def test_files_is_a_chain_of_three_plus_one_absent() -> None:
    g = _graph("files.yaml")
    assert {("file1", "file2"), ("file2", "file3")} <= _edges(g)
    states = {r.name: r.state for r in g.vertices.values() if isinstance(r, File)}
    assert states == {
        "dir": "exists",
        "file1": "exists",
        "file2": "exists",
        "file3": "exists",
        "file4": "absent",
    }
    assert ("noop", "noop1") in g.vertices


def test_fan_in_fan_out_shape_with_mgmts_obsolete_exec_keys() -> None:
    g = _graph("fan-in-fan-out.yaml")
    parents: dict[str, set[str]] = {}
    children: dict[str, set[str]] = {}
    for src, dst in _edges(g):
        parents.setdefault(dst, set()).add(src)
        children.setdefault(src, set()).add(dst)
    assert parents["exec4"] == {"exec1", "exec2", "exec3"}
    assert children["exec4"] == {"exec5", "exec6", "exec7"}
    assert "exec8" not in parents and "exec8" not in children
    for r in g.vertices.values():
        assert isinstance(r, Exec)
        assert (r.timeout, r.pollint, r.state, r.shell, r.watchcmd, r.ifcmd) == (
            0,
            0,
            "present",
            "",
            "",
            "",
        )


def test_semaphores_carry_their_ids() -> None:
    g = _graph("semaphores.yaml")
    sema = {r.name: r.meta.sema for r in g.vertices.values()}
    assert sema["sleep1"] == ["mylock:1", "otherlock:42"]
    assert all("mylock:1" in s for s in sema.values())


def test_limit_and_burst() -> None:
    meta = _graph("limit.yaml").vertices[("file", "limited")].meta
    assert (meta.limit, meta.burst) == (0.2, 5)
    assert math.isinf(_graph("limit.yaml").vertices[("file", "dir")].meta.limit)


def test_retry_and_delay() -> None:
    g = _graph("retry.yaml")
    for name in ("file1", "file2"):
        meta = g.vertices[("file", name)].meta
        assert (meta.retry, meta.delay) == (3, 100)


def test_exported_resources_are_managed_here_and_published(pymgmt) -> None:
    g = _graph("exported.yaml")
    assert g.exported == {("file", "file2")}
    assert ("file", "file2") in g.vertices  # applied here too
    assert g.collect == [Collect("file", PLACEHOLDER + "/")]
    (proc,) = pymgmt(["validate", "--json", str(EXAMPLES / "exported.yaml")])
    out = json.loads(proc.stdout)
    assert out["exported"] == [{"kind": "file", "name": "file2"}]
    assert out["collect"] == [
        {"kind": "file", "pattern": PLACEHOLDER + "/", "mode": "0644", "owners": [], "groups": []}
    ]


def test_quoted_and_unquoted_modes_are_the_same_string() -> None:
    g = _graph("modes.yaml")
    modes = {r.name: r.mode for r in g.vertices.values() if r.name != "dir"}
    assert modes == {
        "unquoted-0644": "0644",
        "quoted-0644": "0644",
        "unquoted-0741": "0741",
        "quoted-0741": "0741",
    }
    text = (EXAMPLES / "modes.yaml").read_text()
    assert "mode: 0644\n" in text and "mode: '0644'\n" in text


# -- running them ---------------------------------------------------------------------


def test_hello_world_runs(pymgmt, tmp_path: Path) -> None:
    graph, root = _instantiate("hello-world.yaml", tmp_path)
    assert _run(pymgmt, graph, tmp_path) == CHANGED
    assert (root / "hello-world").read_text() == "hello world from pymgmt\n"
    assert _run(pymgmt, graph, tmp_path) == UNCHANGED


def test_files_runs_and_removes_the_absent_one(pymgmt, tmp_path: Path) -> None:
    graph, root = _instantiate("files.yaml", tmp_path)
    root.mkdir()
    (root / "f2").write_text("drifted\n")
    (root / "f4").write_text("must go\n")
    assert _run(pymgmt, graph, tmp_path) == CHANGED
    assert sorted(p.name for p in root.iterdir()) == ["f1", "f2", "f3"]
    for n in (1, 2, 3):
        assert (root / f"f{n}").read_text() == f"i am f{n}\n"
    assert _run(pymgmt, graph, tmp_path) == UNCHANGED


def test_modes_give_the_same_permissions_for_both_spellings(pymgmt, tmp_path: Path) -> None:
    graph, root = _instantiate("modes.yaml", tmp_path)
    assert _run(pymgmt, graph, tmp_path) == CHANGED

    def mode(name: str) -> int:
        return stat.S_IMODE((root / name).stat().st_mode)

    assert mode("unquoted-0644") == mode("quoted-0644") == 0o644
    assert mode("unquoted-0741") == mode("quoted-0741") == 0o741
    assert _run(pymgmt, graph, tmp_path) == UNCHANGED


def test_limit_runs(pymgmt, tmp_path: Path) -> None:
    graph, root = _instantiate("limit.yaml", tmp_path)
    assert _run(pymgmt, graph, tmp_path) == CHANGED
    assert (root / "limit").read_text() == "repaired at most once every five seconds\n"
    assert _run(pymgmt, graph, tmp_path) == UNCHANGED


def test_retry_runs_the_execs_then_sets_the_modes(pymgmt, tmp_path: Path) -> None:
    graph, root = _instantiate("retry.yaml", tmp_path)
    assert _run(pymgmt, graph, tmp_path) == CHANGED
    assert stat.S_IMODE((root / "retry1").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "retry2").stat().st_mode) == 0o640
    # `creates:` guards the execs, so a second run has nothing to do.
    assert _run(pymgmt, graph, tmp_path) == UNCHANGED


def test_exported_runs_the_local_part(pymgmt, tmp_path: Path) -> None:
    graph, root = _instantiate("exported.yaml", tmp_path)
    assert _run(pymgmt, graph, tmp_path) == CHANGED
    assert (root / "local").read_text() == "managed on this host\n"


@pytest.mark.parametrize("name", ["fan-in-fan-out.yaml", "semaphores.yaml"])
def test_exec_example_runs_every_command_once(name: str, pymgmt, tmp_path: Path) -> None:
    graph, _ = _instantiate(name, tmp_path)
    (proc,) = pymgmt(
        ["run", "--converged-timeout", "0", "--prefix", str(tmp_path / "state"), str(graph)]
    )
    assert proc.returncode == CHANGED, proc.stdout + proc.stderr
    n = len(_graph(name).vertices)
    assert f"{n} resources: 0 unchanged, {n} changed, 0 failed" in proc.stderr
