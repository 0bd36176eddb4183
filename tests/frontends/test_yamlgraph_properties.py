"""Properties of the YAML frontend, over generated graphs and generated garbage.

* Any graph (random resources, a random DAG of edges, random metaparams)
  written out with a YAML emitter reads back as the same graph.
* No input whatsoever makes `parse` raise anything but an `InputError`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pymgmt.errors import InputError
from pymgmt.frontends.yamlgraph import parse

# Text that a YAML file can hold: no surrogates, and no characters YAML 1.1
# forbids or reads as line breaks inside a scalar.
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85\u2028\u2029\ufeff")
    | st.sampled_from("\n\t"),
    max_size=30,
)
_NAME = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufeff"),
    min_size=1,
    max_size=12,
).filter(lambda s: not s.startswith("@@") and s.strip() == s and s != "")
_SEGMENT = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)


@st.composite
def _meta(draw: st.DrawFn) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if draw(st.booleans()):
        meta["noop"] = draw(st.booleans())
    if draw(st.booleans()):
        meta["retry"] = draw(st.integers(-1, 10))
        meta["delay"] = draw(st.integers(0, 10_000))
    if draw(st.booleans()):
        meta["limit"] = draw(st.floats(0.01, 1000, allow_nan=False))
        meta["burst"] = draw(st.integers(1, 100))
    if draw(st.booleans()):
        # One size per id across the graph (two sizes for one id is an input error).
        meta["sema"] = draw(
            st.lists(
                st.builds(lambda i: f"{i}:{_sema_size(i)}", _SEGMENT)
                | _SEGMENT.filter(lambda i: _sema_size(i) == 1),
                max_size=3,
            )
        )
    return meta


def _sema_size(sid: str) -> int:
    return len(sid) % 9 + 1


@st.composite
def _resource(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    res: dict[str, Any] = {"name": draw(_NAME)}
    if kind == "file":
        res["path"] = "/tmp/" + "/".join(draw(st.lists(_SEGMENT, min_size=1, max_size=3)))
        if draw(st.booleans()):
            res["content"] = draw(_TEXT)
        if draw(st.booleans()):
            res["mode"] = draw(st.sampled_from(["0644", "0600", "0755", "644", "1777"]))
    elif kind == "exec":
        res["cmd"] = "true " + draw(_SEGMENT)
        if draw(st.booleans()):
            res["env"] = draw(st.dictionaries(_SEGMENT, _TEXT, max_size=3))
        if draw(st.booleans()):
            res["timeout"] = draw(st.integers(0, 3600))
    meta = draw(_meta())
    if meta:
        res["meta"] = meta
    return res


@st.composite
def _graph(draw: st.DrawFn) -> dict[str, Any]:
    resources: dict[str, list[dict[str, Any]]] = {}
    keys: list[tuple[str, str]] = []
    for kind in ("noop", "file", "exec"):
        items = draw(
            st.lists(
                _resource(kind),
                max_size=5,
                # one path is one thing to manage: two files for it are refused
                unique_by=(lambda r: r["name"], lambda r: r.get("path", r["name"])),  # type: ignore[arg-type]
            )
        )
        if items:
            resources[kind] = items
            keys += [(kind, r["name"]) for r in items]
    edges = []
    if len(keys) >= 2:
        # i < j keeps it a DAG; kinds are written in any case
        pairs = draw(
            st.lists(
                st.tuples(st.integers(0, len(keys) - 1), st.integers(0, len(keys) - 1)).filter(
                    lambda p: p[0] < p[1]
                ),
                max_size=8,
            )
        )
        for n, (i, j) in enumerate(pairs):
            case = draw(st.sampled_from([str.lower, str.upper, str.capitalize]))
            edge: dict[str, Any] = {
                "name": f"e{n}",
                "from": {"kind": case(keys[i][0]), "name": keys[i][1]},
                "to": {"kind": keys[j][0], "name": keys[j][1]},
            }
            if draw(st.booleans()):
                edge["notify"] = draw(st.booleans())
            edges.append(edge)
    return {"graph": draw(_SEGMENT), "resources": resources, "edges": edges}


@settings(max_examples=40, deadline=None, database=None)
@given(_graph())
def test_an_emitted_graph_reads_back_as_the_same_graph(doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    g = parse(text, "gen.yaml")

    assert g.name == doc["graph"]
    want_keys = {(k, r["name"]) for k, items in doc["resources"].items() for r in items}
    assert set(g.vertices) == want_keys
    for kind, items in doc["resources"].items():
        for r in items:
            res = g.vertices[(kind, r["name"])]
            for field, value in r.items():
                if field == "meta":
                    assert res.meta.non_default() == {
                        k: v for k, v in value.items() if getattr(type(res.meta)(), k) != v
                    }
                elif field != "name":
                    assert getattr(res, field) == value, field
    # AutoEdges may add edges (a file under a managed directory): compare the user's.
    got_edges = [(e.src, e.dst, e.name, e.notify) for e in g.edges if not e.auto]
    want_edges = [
        (
            (e["from"]["kind"].lower(), e["from"]["name"]),
            (e["to"]["kind"], e["to"]["name"]),
            e["name"],
            e.get("notify", False),
        )
        for e in doc["edges"]
    ]
    assert got_edges == want_edges


_PIECES = st.sampled_from(
    [
        "graph: g\n",
        "resources:\n",
        "  file:\n",
        "  - name: /tmp/x\n",
        "    mode: 0644\n",
        "    meta: {sema: ['a:1'], limit: .inf}\n",
        "edges:\n",
        "- from: {kind: file, name: /tmp/x}\n",
        "  to: {kind: noop, name: n}\n",
        "collect: [{kind: file}]\n",
        "&a ",
        "*a",
        "<<: ",
        "!!int ",
        "!!bool ",
        "!!binary ",
        "? ",
        "[",
        "]",
        "{",
        "}",
        ": ",
        "'",
        '"',
        "\t",
        "~",
        "@@",
        "\n",
        "  ",
        "- ",
    ]
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(_PIECES | st.text(max_size=5), max_size=25).map("".join))
def test_no_input_raises_anything_but_an_input_error(text: str) -> None:
    with contextlib.suppress(InputError):  # anything else fails the test
        parse(text, "fuzz.yaml")


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=200))
def test_no_bytes_raise_anything_but_an_input_error(data: bytes) -> None:
    with contextlib.suppress(InputError):  # anything else fails the test
        parse(data, "fuzz.yaml")
