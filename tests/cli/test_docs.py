"""The reference and the JSON schema are generated from the declarations (issue 12, "The manual").

Each kind's params (type, default, doc), its example and the metaparameters
come from the code; the files in docs/ are what ``scripts/docs`` writes,
and a test fails while they are stale or while any param has no doc. The
schema never refuses a graph the frontend accepts.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import jsonschema
import pytest
import yaml
from helpers import PYMGMT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymgmt import reference
from pymgmt.errors import InputError
from pymgmt.frontends.compile import accept
from pymgmt.frontends.yamlbuild import declare
from pymgmt.resources.base import Resource, param
from pymgmt.resources.base import shipped_kinds as kinds
from pymgmt.types import unwrap_optional

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REGENERATE = "run scripts/docs to regenerate it, and commit the result"


def _pymgmt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYMGMT, *args], capture_output=True, text=True, timeout=60, check=False)


def _validator() -> jsonschema.Draft7Validator:
    schema = reference.schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


# -- every param is documented, and the files say what the code says -------------------------


def test_every_param_kind_and_metaparameter_has_a_doc_and_every_kind_an_example() -> None:
    assert reference.missing_docs() == []


def test_a_param_without_a_doc_is_reported() -> None:
    class Undocumented(Resource):  # no kind=: never registered
        size: int = param(0, doc="")
        colour: str = param("", doc="what it looks like")

    assert reference.missing_docs([Undocumented]) == [
        "Undocumented: no docstring",
        "Undocumented: no example",
        "Undocumented.size",
    ]


def test_docs_reference_md_is_what_the_code_generates() -> None:
    assert (DOCS / "reference.md").read_text() == reference.markdown(), (
        f"docs/reference.md is stale: {REGENERATE}"
    )


def test_docs_graph_schema_json_is_what_the_code_generates() -> None:
    on_disk = json.loads((DOCS / "graph.schema.json").read_text())
    assert on_disk == reference.schema(), f"docs/graph.schema.json is stale: {REGENERATE}"


def test_the_commands_print_exactly_the_files_in_docs() -> None:
    md, schema = _pymgmt("docs", "--markdown"), _pymgmt("schema")
    assert md.returncode == schema.returncode == 0, md.stderr + schema.stderr
    assert md.stdout == (DOCS / "reference.md").read_text()
    assert schema.stdout == (DOCS / "graph.schema.json").read_text()


def test_the_reference_has_a_row_for_every_param_of_every_kind() -> None:
    text = reference.markdown()
    for kind, cls in kinds().items():
        section = text.split(f"\n## `{kind}`\n", 1)[1].split("\n## ", 1)[0]
        for f in cls.params_fields():
            assert f"\n| `{f.name}` | " in section, (kind, f.name)
        assert "```yaml\n" + cls.example in section


def test_the_readme_links_the_reference_and_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/reference.md)" in readme
    assert "(docs/graph.schema.json)" in readme


# -- pymgmt docs ------------------------------------------------------------------------------


def test_docs_kind_prints_its_params_with_type_default_and_doc_and_an_example() -> None:
    p = _pymgmt("docs", "pkg")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("PKG: A package in a wanted state.\n")
    assert "    state (string, default installed)\n" in p.stdout
    assert "    backend (auto | apt | packagekit, default auto)\n" in p.stdout
    assert "    name (string, required)\n" in p.stdout
    assert "  example:\n    graph: web\n" in p.stdout
    assert "AutoGroup" in p.stdout


def test_docs_without_a_kind_covers_the_graph_file_every_kind_and_the_metaparameters() -> None:
    p = _pymgmt("docs")
    assert p.returncode == 0, p.stderr
    for kind in kinds():
        assert f"\n{kind.upper()}: " in p.stdout
    assert "THE GRAPH FILE" in p.stdout and "METAPARAMETERS" in p.stdout
    assert "    notify\n" in p.stdout  # an edge's key


def test_docs_meta_prints_the_metaparameters() -> None:
    p = _pymgmt("docs", "meta")
    assert p.returncode == 0
    assert "    retry (integer, default 0)\n" in p.stdout
    assert "    limit (number, default no limit)\n" in p.stdout


def test_docs_of_an_unknown_kind_is_a_usage_error_with_a_suggestion() -> None:
    p = _pymgmt("docs", "fiel")
    assert p.returncode == 1
    assert p.stdout == ""
    assert "no resource kind 'fiel'; did you mean 'file'?" in p.stderr


# -- the examples and the schema -----------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_each_kinds_example_is_a_valid_graph_that_uses_it(kind: str) -> None:
    example = kinds()[kind].example
    compiled = accept(declare(example, f"{kind} example"))
    assert kind in {k for k, _ in compiled.declared.vertices}  # type: ignore[union-attr]
    _validator().validate(yaml.safe_load(example))


def _shipped_graphs() -> list[Path]:
    return sorted(
        [*(ROOT / "examples").glob("*.yaml"), *(ROOT / "tests/frontends/mgmt").glob("*.yaml")]
    )


@pytest.mark.parametrize("path", _shipped_graphs(), ids=lambda p: p.name)
def test_the_schema_accepts_every_shipped_graph_the_frontend_accepts(path: Path) -> None:
    text = path.read_text()
    try:
        declare(text, str(path))
    except InputError:
        pytest.skip("the frontend refuses it on its own")
    _validator().validate(yaml.safe_load(text))


_FILE = "  file:\n  - name: /srv/f\n"


@pytest.mark.parametrize(
    ("graph", "where"),
    [
        ("graph: g\nresorces: {}\n", "resorces"),
        ("graph: g\nresources:\n  fiel: []\n", "fiel"),
        ("graph: g\nresources:\n" + _FILE + "    contnet: x\n", "contnet"),
        ("graph: g\nresources:\n" + _FILE + "    state: present\n", "present"),
        ("graph: g\nresources:\n  exec:\n  - name: e\n", "cmd"),
        ("graph: g\nresources:\n  exec:\n  - {name: e, cmd: x, timeout: soon}\n", "soon"),
        ("graph: g\nresources:\n" + _FILE + "    meta: {retyr: 1}\n", "retyr"),
        ("graph: g\nresources:\n" + _FILE + "    meta: {noop: maybe}\n", "maybe"),
        ("resources: {}\n", "graph"),
        ("graph: g\nedges:\n- {from: {kind: file}, to: {kind: file, name: x}}\n", "name"),
    ],
)
def test_the_schema_refuses_what_the_frontend_refuses_in_one_place(graph: str, where: str) -> None:
    with pytest.raises(InputError):
        accept(declare(graph, "g.yaml"))
    errors = list(_validator().iter_errors(yaml.safe_load(graph)))
    assert errors, "the schema accepted it"
    assert any(where in e.message or where in e.json_path for e in errors), [
        e.message for e in errors
    ]


def test_the_schema_describes_every_param_for_an_editor() -> None:
    defs = reference.schema()["definitions"]
    exec_props = defs["kind.exec"]["properties"]
    assert exec_props["cwd"]["description"] == "working directory (absolute); empty: the agent's"
    assert exec_props["env"]["default"] == {}
    assert defs["kind.exec"]["required"] == ["name", "cmd"]
    assert defs["kind.svc"]["properties"]["state"]["enum"] == ["running", "stopped", "", None]


# A scalar as YAML would hold it, for any param: the frontend decides what it accepts.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.sampled_from(["", "0644", "yes", "inf", "exists", "absent", "running", "/srv/x", "a b"]),
    st.text(max_size=8),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=4), _SCALARS, max_size=3),
)


def _typed(tp: Any) -> st.SearchStrategy[Any]:
    """Values of the param's own type, as YAML holds them (mostly valid ones)."""
    tp = unwrap_optional(tp)
    origin = get_origin(tp)
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin is list:
        return st.lists(_SCALARS.filter(lambda v: v is not None), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text("ABCZ_", min_size=1, max_size=4), st.text(max_size=4))
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: st.one_of(
            st.text(max_size=6), st.integers(0, 999), st.sampled_from(["/srv/x", "0644"])
        ),
        int: st.integers(0, 100),
        float: st.floats(0.1, 100),
        bool: st.booleans(),
    }
    return simple[tp]


def _required(f: Any) -> bool:
    return bool(f.default is MISSING and f.default_factory is MISSING)


@st.composite
def _graph_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A graph of one kind with values for random params and metaparameters.

    Values are mostly of the param's own type (so that many graphs are
    accepted), sometimes any YAML value at all.
    """
    kind, cls = draw(st.sampled_from(sorted(kinds().items())))
    res: dict[str, Any] = {"name": draw(st.sampled_from(["/srv/a", "web", "@@/srv/b", "nginx"]))}
    hints = {f.name: cls.param_types[f.name] for f in cls.params_fields()}
    hints |= {p.name: p.type for p in reference.meta_docs() if draw(st.booleans())}
    chosen = (
        draw(st.lists(st.sampled_from(sorted(hints)), unique=True, max_size=4)) if hints else []
    )
    for name in chosen:
        value = draw(st.one_of(_typed(hints[name]), _typed(hints[name]), _VALUES))
        if name in cls.param_types:
            res[name] = value
        else:
            res.setdefault("meta", {})[name] = value
    return {"graph": "random", "resources": {kind: [res]}}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_graph_docs())
def test_the_schema_never_refuses_a_graph_the_frontend_accepts(doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc)
    try:
        declare(text, "random.yaml")
    except InputError:
        return  # the schema may refuse it or not: validate has the last word
    errors = [e.message for e in _validator().iter_errors(yaml.safe_load(text))]
    assert errors == [], text


def test_docs_on_a_terminal_goes_through_the_pager(tmp_path: Path) -> None:
    import pty

    paged = tmp_path / "paged"
    master, slave = pty.openpty()
    try:
        p = subprocess.run(
            [*PYMGMT, "docs", "timer"],
            stdout=slave,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            # a pager that keeps what it got (and writes nothing to the terminal)
            env={**os.environ, "PAGER": f"sh -c 'cat > {paged}'"},
            timeout=60,
            check=False,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 0, p.stderr
    assert paged.read_text() == _pymgmt("docs", "timer").stdout
