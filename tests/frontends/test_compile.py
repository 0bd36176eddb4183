"""compile_graph is a pure function: declarations in, a new runtime graph out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pymgmt import GraphBuilder
from pymgmt.errors import InputErrors
from pymgmt.frontends.compile import compile_graph
from pymgmt.graph.model import Edge, Graph
from pymgmt.resources.base import Resource
from pymgmt.resources.file import File
from pymgmt.resources.password import Password
from pymgmt.resources.pkg import Pkg


def _photo(res: Resource) -> dict[str, Any]:
    """Everything a resource object holds, lists copied so later changes show."""
    return {k: list(v) if isinstance(v, list) else v for k, v in vars(res).items()}


def _builder() -> tuple[GraphBuilder, list[Resource]]:
    g = GraphBuilder("twice")
    declared: list[Resource] = [g.add(Pkg(name=n)) for n in ("sl", "cowsay", "powertop")]
    pw = g.add(Password(name="pw"))
    f = g.add(File(name="/nonexistent/pymgmt-compile/f"))
    g.edge(pw, f, send="password", recv="content")
    return g, [*declared, pw, f]


def test_building_twice_gives_the_same_graph_and_leaves_the_declarations_alone() -> None:
    g, declared = _builder()
    before = [_photo(r) for r in declared]
    first = g.build()
    second = g.build()
    names = [str(v) for v in first.vertices.values()]
    assert names == [str(v) for v in second.vertices.values()]
    assert "Pkg[autogroup:(cowsay,powertop,sl)]" in names
    assert [_photo(r) for r in declared] == before
    assert len(g.graph.edges) == 1  # no automatic edge was added to the declaration


def test_the_compiled_graph_holds_new_objects_carrying_the_runtime_state() -> None:
    g, declared = _builder()
    compiled = g.build()
    for r in compiled.vertices.values():
        assert all(r is not d for d in declared)
    f = compiled.vertices[("file", "/nonexistent/pymgmt-compile/f")]
    assert f.recv_fields == frozenset({"content"}) == f.tainted
    assert declared[-1].recv_fields == frozenset() == declared[-1].tainted


def test_compile_graph_does_not_touch_its_input_graph() -> None:
    graph: Graph[Resource] = Graph(name="t")
    for name in ("/a/", "/a/f", "/a/g"):
        graph.add(File(name=name))
    graph.connect(Edge(("file", "/a/"), ("file", "/a/f"), name="mine"))
    edges = list(graph.edges)
    vertices = dict(graph.vertices)
    out = compile_graph(graph)
    assert len(out.autoedges) == 1  # /a/ -> /a/g
    assert graph.edges == edges and graph.vertices == vertices
    assert out.graph is not graph


def test_an_explicit_edge_from_a_directory_to_its_file_keeps_the_ordering(
    tmp_path: Path, pymgmt: Any
) -> None:
    """The user's edge stands for the automatic one: the run creates both, in order."""
    d = tmp_path / "d"
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "graph: g\n"
        "resources:\n"
        "  file:\n"
        f"  - name: {d}/\n"
        f"  - name: {d}/f\n"
        '    content: "x\\n"\n'
        "edges:\n"
        "- name: dir-first\n"
        f"  from: {{kind: file, name: {d}/}}\n"
        f"  to: {{kind: file, name: {d}/f}}\n"
    )
    (run,) = pymgmt(
        ["run", "--converged-timeout", "0", "--prefix", str(tmp_path / "state"), str(graph)]
    )
    assert run.returncode == 2, run.stderr
    assert (d / "f").read_text() == "x\n"


def test_identical_resources_for_one_path_are_merged_with_a_warning(
    tmp_path: Path, pymgmt: Any
) -> None:
    """mgmt's habit: identical twins collapse into the first; edges follow."""
    f = tmp_path / "f"
    graph = tmp_path / "g.yaml"
    twin = f'    path: {f}\n    content: "x\\n"\n'
    graph.write_text(
        "graph: g\n"
        "resources:\n"
        "  file:\n"
        f"  - name: first\n{twin}"
        f"  - name: second\n{twin}"
        "  noop:\n"
        "  - name: after\n"
        "edges:\n"
        "- from: {kind: file, name: second}\n"
        "  to: {kind: noop, name: after}\n"
    )
    validate, run = pymgmt(
        ["validate", "--json", str(graph)],
        ["run", "--converged-timeout", "0", "--prefix", str(tmp_path / "state"), str(graph)],
    )
    assert validate.returncode == 0, validate.stderr
    shown = json.loads(validate.stdout)
    assert [r["name"] for r in shown["resources"]] == ["first", "after"]
    assert shown["edges"] == [{"from": ["file", "first"], "to": ["noop", "after"], "notify": False}]
    warning = f"{graph}:7:5: File[second] manages '{f}' exactly as File[first] at line 4"
    assert warning in validate.stderr
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("File[second]") == 1  # the warning; it never ran
    assert f.read_text() == "x\n"


def test_the_api_refuses_one_path_managed_twice_differently() -> None:
    g = GraphBuilder("twins")
    a = g.add(File(name="a", path="/nonexistent/pymgmt-twins", content="x"))
    b = g.add(File(name="b", path="/nonexistent//pymgmt-twins", content="x"))
    g.edge(a, b)
    with pytest.raises(InputErrors) as err:
        g.build()
    assert "File[b] manages '/nonexistent/pymgmt-twins', and so does File[a]" in str(err.value)
    assert "with another path" in str(err.value)


def test_the_api_refuses_what_the_yaml_frontend_refuses() -> None:
    from pymgmt.resources.exec import Exec

    g = GraphBuilder("absurd")
    g.add(Exec(name="nul", cmd="echo \0hi"))
    g.add(File(name="/nonexistent/pymgmt-owner", owner="-1"))
    with pytest.raises(InputErrors) as err:
        g.build()
    text = str(err.value)
    assert "Exec[nul]: must not contain a NUL character" in text
    assert "owner: File[/nonexistent/pymgmt-owner]: must be a user name or a whole number" in text


def test_accept_keeps_what_the_graph_says_of_the_world_and_leaves_it_alone() -> None:
    from pymgmt.frontends.compile import accept
    from pymgmt.graph.model import Collect

    graph: Graph[Resource] = Graph(name="t", source="t.yaml")
    for name in ("/a/", "/a/f"):
        graph.add(File(name=name))
    graph.exported = {("file", "/a/f")}
    graph.collect = [Collect("file", "/srv/in/")]
    out = accept(graph)
    assert out.declared is graph
    assert out.graph.exported == {("file", "/a/f")} and out.graph.exported is not graph.exported
    assert out.graph.collect == graph.collect and out.graph.collect is not graph.collect
    assert graph.edges == [] and len(out.graph.edges) == 1


def test_an_exported_twin_merged_into_another_keeps_it_exported() -> None:
    from pymgmt.frontends.compile import accept

    graph: Graph[Resource] = Graph(name="t", source="t.yaml")
    graph.add(File(name="a", path="/nonexistent/pymgmt-twin", content="x"))
    graph.add(File(name="b", path="/nonexistent/pymgmt-twin", content="x"))
    graph.exported = {("file", "b")}
    out = accept(graph)
    assert list(out.graph.vertices) == [("file", "a")]
    assert out.graph.exported == {("file", "a")}
    assert len(out.graph.warnings) == 1


# -- Send/Recv into one template var (issue 15) -------------------------------------------


def _vars_graph(vars: dict[str, str]) -> Graph[Resource]:
    graph: Graph[Resource] = Graph(name="t")
    graph.add(Password(name="pw"))
    graph.add(File(name="/nonexistent/t", template="{{ user }} {{ pw }}\n", vars=vars))
    graph.connect(
        Edge(
            ("password", "pw"), ("file", "/nonexistent/t"), "e", False, None, "password", "vars.pw"
        )
    )
    return graph


def test_a_var_received_from_a_secret_is_marked_and_taints_all_of_vars_and_the_content() -> None:
    f = compile_graph(_vars_graph({"user": "app"})).graph.vertices[("file", "/nonexistent/t")]
    assert f.recv_fields == frozenset({"vars.pw"})
    assert f.tainted == frozenset({"vars.pw", "vars"})
    assert f.is_secret("vars") and f.is_secret("content") and not f.is_secret("template")
    assert f.redact("vars", f.vars) == "<redacted>"


def test_a_received_var_is_no_difference_to_changeover_but_an_edited_var_is() -> None:
    running = compile_graph(_vars_graph({"user": "app"})).graph.vertices[("file", "/nonexistent/t")]
    declared = running.vars
    running.receive({"vars.pw": "s3cret"}, frozenset({"vars.pw"}))
    assert running.vars == {"user": "app", "pw": "s3cret"}
    assert declared == {"user": "app"}  # a copy was made: the graph's dict is unchanged
    assert running.params()["vars"] == {"user": "app"}
    same = compile_graph(_vars_graph({"user": "app"})).graph.vertices[("file", "/nonexistent/t")]
    assert running.same_as(same) and same.same_as(running)
    edited = compile_graph(_vars_graph({"user": "web"})).graph.vertices[("file", "/nonexistent/t")]
    assert not running.same_as(edited)
    # a var given in the graph under the received name is overridden, and ignored alike
    shadow = compile_graph(_vars_graph({"user": "app", "pw": "placeholder"}))
    assert running.same_as(shadow.graph.vertices[("file", "/nonexistent/t")])


def test_the_holds_of_a_received_var_is_its_key() -> None:
    f = compile_graph(_vars_graph({"user": "app"})).graph.vertices[("file", "/nonexistent/t")]
    assert f.holds("vars.pw") is None and f.holds("vars") == {"user": "app"}
    f.receive({"vars.pw": "x"}, frozenset({"vars.pw"}))
    assert f.holds("vars.pw") == "x"


def test_a_tree_is_told_what_the_graph_manages_inside_it_and_a_change_of_that_restarts_it() -> None:
    """`spare_managed`: derived from the graph, on the compiled copy, and part of `same_as`."""

    def graph(*names: str) -> Graph[Resource]:
        g: Graph[Resource] = Graph(name="t")
        g.add(File(name="top", path="/srv/top/", recurse=True, purge=True))
        g.add(File(name="/srv/top/inner/", source="/srv/src/", recurse=True))  # a tree: whole
        g.add(File(name="/srv/top/sub/"))  # a plain directory: walked into
        g.add(File(name="/srv/other"))  # outside: not the tree's business
        for name in names:
            g.add(File(name=name, content="x"))
        return g

    declared = graph("/srv/top/a", "/srv/top/sub/b")
    first = compile_graph(declared).graph
    top = first.vertices[("file", "top")]
    assert top.spares == {"/srv/top/inner/**", "/srv/top/sub", "/srv/top/a", "/srv/top/sub/b"}
    assert first.vertices[("file", "/srv/top/inner/")].spares == frozenset()
    assert declared.vertices[("file", "top")].spares == frozenset()  # the declaration untouched
    again = compile_graph(graph("/srv/top/a", "/srv/top/sub/b")).graph
    assert again.vertices[("file", "top")].same_as(top)
    dropped = compile_graph(graph("/srv/top/a")).graph
    assert not dropped.vertices[("file", "top")].same_as(top)  # a changeover restarts it
