"""AutoEdges as tables: input resources -> the edges added."""

from __future__ import annotations

import pytest

from pymgmt.errors import InputError
from pymgmt.frontends.compile import compile_graph
from pymgmt.graph.model import Edge, Graph
from pymgmt.metaparams import MetaParams
from pymgmt.resources.base import Resource
from pymgmt.resources.exec import Exec
from pymgmt.resources.file import File


def _graph(*names: str, edges: tuple[tuple[str, str], ...] = (), off: tuple[str, ...] = ()):
    g: Graph[Resource] = Graph(name="t")
    for n in names:
        g.add(File(name=n, meta=MetaParams(autoedge=n not in off)))
    for a, b in edges:
        g.connect(Edge(("file", a), ("file", b)))
    return g


def _added(g) -> set[tuple[str, str]]:
    return {(e.src[1], e.dst[1]) for e in compile_graph(g).autoedges}


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        # a file depends on its directory
        (["/a/", "/a/f"], {("/a/", "/a/f")}),
        # nested directories chain, each to its nearest managed parent only
        (["/a/", "/a/b/", "/a/b/c"], {("/a/", "/a/b/"), ("/a/b/", "/a/b/c")}),
        # a gap: /a/b/ is not managed, so /a/b/c/d falls back to /a/
        (["/a/", "/a/b/c/d"], {("/a/", "/a/b/c/d")}),
        # nearest wins over farther: no redundant edge to /a/
        (
            ["/a/", "/a/b/", "/a/b/x", "/a/y"],
            {("/a/", "/a/b/"), ("/a/b/", "/a/b/x"), ("/a/", "/a/y")},
        ),
        # siblings are independent
        (["/a/x", "/a/y"], set()),
        # the root directory
        (["/", "/etc/"], {("/", "/etc/")}),
    ],
)
def test_files_depend_on_their_nearest_managed_ancestor(names, expected):
    assert _added(_graph(*names)) == expected


def test_a_user_edge_in_the_same_direction_stands_for_the_automatic_one():
    g = _graph("/a/", "/a/f", edges=(("/a/", "/a/f"),))
    compiled = compile_graph(g)
    assert compiled.autoedges == []
    assert [(e.src[1], e.dst[1]) for e in compiled.graph.edges] == [("/a/", "/a/f")]


def test_a_user_edge_against_the_automatic_one_is_a_cycle_naming_both():
    # issue 8 item 6: the file before its own directory used to drop the
    # automatic edge without a word, and the run then failed.
    g = _graph("/a/", "/a/f")
    g.connect(Edge(("file", "/a/f"), ("file", "/a/"), name="mine"))
    with pytest.raises(InputError) as err:
        compile_graph(g)
    text = str(err.value)
    assert text.startswith("edges: the edges form a cycle: File[/a/f] -> File[/a/] -> File[/a/f]")
    assert "the automatic edge is File[/a/] -> File[/a/f]" in text
    assert "edge 'mine' is File[/a/f] -> File[/a/]" in text
    assert "remove edge 'mine', or set 'meta: {autoedge: false}'" in text


def test_autoedge_false_opts_out_both_ways():
    assert _added(_graph("/a/", "/a/f", off=("/a/f",))) == set()
    assert _added(_graph("/a/", "/a/b/", "/a/b/f", off=("/a/b/",))) == {("/a/", "/a/b/f")}


def test_a_cycle_made_by_an_automatic_edge_is_an_input_error_with_a_hint():
    g = _graph("/a/", "/a/f", "/b")
    g.connect(Edge(("file", "/a/f"), ("file", "/b")))
    g.connect(Edge(("file", "/b"), ("file", "/a/")))
    with pytest.raises(InputError) as err:
        compile_graph(g)
    assert "cycle" in str(err.value) and "autoedge: false" in str(err.value)


def test_kinds_without_the_trait_get_no_edges():
    g: Graph[Resource] = Graph(name="t")
    g.add(File(name="/a/"))
    g.add(Exec(name="/a/x", cmd="true"))
    assert compile_graph(g).autoedges == []
