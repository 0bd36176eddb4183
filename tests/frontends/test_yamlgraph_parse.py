"""Unit tables for the YAML frontend: `parse(text)` -> graph, or structured errors."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import pytest

from pymgmt.errors import InputError, InputErrors, Location
from pymgmt.frontends.yamlgraph import Collect, YamlGraph, parse
from pymgmt.metaparams import MetaParams


def _parse(text: str) -> YamlGraph:
    return parse(textwrap.dedent(text), "g.yaml")


def _one(kind: str, fields: str, name: str = "/tmp/x") -> Any:
    """Parse a graph of one resource with `fields` (YAML lines) and return it."""
    body = textwrap.indent(fields, "    ")
    g = parse(f"graph: g\nresources:\n  {kind}:\n  - name: {name}\n{body}\n", "g.yaml")
    (res,) = g.vertices.values()
    return res


def _errors(text: str) -> list[InputError]:
    with pytest.raises(InputError) as info:
        _parse(text)
    e = info.value
    return e.errors if isinstance(e, InputErrors) else [e]


_IGNORED = "the value is read as written, and the tag would be ignored"


# -- value conversion -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "attr", "expected"),
    [
        # null keeps the default, whatever the spelling
        ("content:", "content", None),
        ("content: ~", "content", None),
        ("content: null", "content", None),
        ("state:", "state", "exists"),
        ("state: null", "state", "exists"),
        ("mode:", "mode", None),
        # an empty string is a value, not null
        ("content: ''", "content", ""),
        ("content: '~'", "content", "~"),
        # string params keep the literal text of unquoted scalars
        ("content: 123", "content", "123"),
        ("content: 1.50", "content", "1.50"),
        ("content: yes", "content", "yes"),
        ("content: 0x10", "content", "0x10"),
        ("content: 2001-01-01", "content", "2001-01-01"),
        ("owner: 0", "owner", "0"),
        # so an unquoted octal-looking mode is the mode as written (mgmt's file-mode test)
        ("mode: 0644", "mode", "0644"),
        ("mode: '0644'", "mode", "0644"),
        ('mode: "0644"', "mode", "0644"),
        ("mode: 0741", "mode", "0741"),
        ("mode: 644", "mode", "644"),
        ("content: |\n  two\n  lines\n", "content", "two\nlines\n"),
        ("content: >-\n  folded\n  text\n", "content", "folded text"),
        ('content: "tab\\there\\n"', "content", "tab\there\n"),
    ],
)
def test_file_param_conversion(fields: str, attr: str, expected: object) -> None:
    assert getattr(_one("file", fields), attr) == expected


@pytest.mark.parametrize(
    ("fields", "attr", "expected"),
    [
        ("timeout:", "timeout", 0),
        ("timeout: ~", "timeout", 0),
        ("timeout: 5", "timeout", 5),
        ("timeout: 1_000", "timeout", 1000),
        ("timeout: 0x10", "timeout", 16),
        ("timeout: 010", "timeout", 8),  # YAML 1.1 octal, as go-yaml v2 reads it
        ("env:", "env", {}),
        ("env: {A: 1, B: 'x y', C: yes}", "env", {"A": "1", "B": "x y", "C": "yes"}),
        ("state: present", "state", "present"),
        ("shell: ''", "shell", ""),
        ("shell: /bin/sh", "shell", "/bin/sh"),
    ],
)
def test_exec_param_conversion(fields: str, attr: str, expected: object) -> None:
    assert getattr(_one("exec", "cmd: 'true'\n" + fields, name="e"), attr) == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("timeout: '5'", "timeout: expected an integer, got a string"),
        ("timeout: 5.0", "timeout: expected an integer, got a float"),
        ("timeout: true", "timeout: expected an integer, got a boolean"),
        ("timeout: 0o10", "timeout: expected an integer, got a string"),  # not YAML 1.1
        ("env: [A=1]", "env: expected a mapping of strings to strings, got a list"),
        ("env: {A: ~}", "env: expected a mapping of strings to strings, got null for key 'A'"),
        ("cmd: [echo, hi]", "cmd: expected a string, got a list"),
        ("cmd: ''", "cmd: must not be empty"),
        ("cmd:", "cmd: missing required field for exec 'e'"),
    ],
)
def test_exec_param_type_errors(fields: str, message: str) -> None:
    if not fields.startswith("cmd"):
        fields = "cmd: 'true'\n    " + fields
    (e,) = _errors(f"graph: g\nresources:\n  exec:\n  - name: e\n    {fields}\n")
    assert f"{e.field}: {e.message}" == message


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ("{}", {}),
        ("", {}),
        ("{noop: ~}", {}),
        ("{limit: .inf}", {}),
        ("{limit: .Inf}", {}),
        ("{limit: inf}", {}),
        ("{limit: 2, burst: 1}", {"limit": 2.0, "burst": 1}),
        ("{limit: 0.2, burst: 5}", {"limit": 0.2, "burst": 5}),
        ("{noop: true}", {"noop": True}),
        ("{noop: yes}", {"noop": True}),  # YAML 1.1 booleans
        ("{autoedge: off}", {"autoedge": False}),
        ("{retry: -1, delay: 500}", {"retry": -1, "delay": 500}),
        ("{sema: []}", {}),
        ("{sema: [lock, 'other:3']}", {"sema": ["lock", "other:3"]}),
        ("{backoff: exponential, maxdelay: 1000}", {"backoff": "exponential", "maxdelay": 1000}),
    ],
)
def test_meta_conversion(meta: str, expected: dict[str, object]) -> None:
    res = _one("noop", f"meta: {meta}", name="n")
    assert res.meta.non_default() == expected


def test_limit_is_a_float_even_when_written_as_an_integer() -> None:
    res = _one("noop", "meta: {limit: 2, burst: 1}", name="n")
    assert type(res.meta.limit) is float


def test_absent_meta_is_the_zero_value() -> None:
    assert _one("noop", "", name="n").meta == MetaParams()
    assert math.isinf(MetaParams().limit)


# -- what the graph carries -------------------------------------------------------------


def test_exported_resources_are_vertices_and_collect_is_carried() -> None:
    g = _parse(
        """\
        graph: g
        resources:
          file:
          - name: "@@/tmp/exported"
            content: "x"
          - name: "@@f2"
            path: /tmp/f2
          - name: /tmp/local
          noop:
          - name: "@@n1"
        collect:
        - kind: file
          pattern: /tmp/
        """
    )
    assert list(g.vertices) == [
        ("file", "/tmp/exported"),
        ("file", "f2"),
        ("file", "/tmp/local"),
        ("noop", "n1"),
    ]
    assert g.exported == {("file", "/tmp/exported"), ("file", "f2"), ("noop", "n1")}
    # the name is known without '@@', and a file's name is its path
    assert g.vertices[("file", "/tmp/exported")].target == "/tmp/exported"
    assert g.collect == [Collect("file", "/tmp/")]
    assert g.collect[0].location == Location("g.yaml", 12, 3)


def test_edges_to_and_from_an_exported_resource_are_allowed() -> None:
    g = _parse(
        """\
        graph: g
        resources:
          noop:
          - name: "@@a"
          - name: b
          - name: c
        edges:
        - {from: {kind: noop, name: b}, to: {kind: noop, name: a}}
        - {from: {kind: noop, name: a}, to: {kind: noop, name: c}}
        """
    )
    assert {(e.src[1], e.dst[1]) for e in g.edges} == {("b", "a"), ("a", "c")}
    assert g.exported == {("noop", "a")}


def test_an_edge_naming_an_exported_resource_with_its_at_signs_gets_a_hint() -> None:
    (e,) = _errors(
        """\
        graph: g
        resources:
          noop:
          - name: "@@a"
          - name: b
        edges:
        - {from: {kind: noop, name: b}, to: {kind: noop, name: "@@a"}}
        """
    )
    assert e.field == "to.name"
    assert e.hint == "an exported resource is named without '@@': 'a'"


def test_an_exported_resource_is_never_grouped() -> None:
    g = _parse(
        """\
        graph: g
        resources:
          pkg:
          - name: "@@cowsay"
          - name: sl
          - name: powertop
        """
    )
    assert ("pkg", "cowsay") in g.vertices
    assert g.exported == {("pkg", "cowsay")}
    assert len(g.vertices) == 2  # sl and powertop grouped, cowsay alone


def test_collect_takes_mode_owners_and_groups() -> None:
    g = _parse(
        """\
        graph: g
        collect:
        - kind: file
          pattern: /srv/in
          mode: 0640
          owners: [root, www-data]
          groups: [adm]
        """
    )
    assert g.collect == [Collect("file", "/srv/in/", "0640", ("root", "www-data"), ("adm",))]
    g = _parse(
        """\
        graph: g
        collect:
        - kind: file
          pattern: /srv/other/
          mode: "600"
        """
    )
    assert g.collect == [Collect("file", "/srv/other/", "0600")]


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        (
            "{kind: noop, pattern: /tmp/}",
            "kind",
            "collecting noop from other hosts is not supported: only file",
        ),
        (
            "{kind: file, pattern: tmp/}",
            "pattern",
            "expected an absolute directory path, got the scalar 'tmp/'",
        ),
        (
            "{kind: file, pattern: [/tmp/]}",
            "pattern",
            "expected an absolute directory path, got a list",
        ),
        (
            "{kind: file, pattern: /tmp/../etc/}",
            "pattern",
            "the directory must be written in its normal form: '/etc/'",
        ),
        (
            "{kind: file}",
            "pattern",
            "a collect entry needs a pattern: the directory collected files go into",
        ),
        (
            "{kind: file, pattern: /tmp/, mode: 01777}",
            "mode",
            "expected an octal mode like '0644', at most 0777, got the scalar '01777'",
        ),
        (
            "{kind: file, pattern: /tmp/, mode: rw}",
            "mode",
            "expected an octal mode like '0644', at most 0777, got the scalar 'rw'",
        ),
        (
            "{kind: file, pattern: /tmp/, owners: root}",
            None,
            "owners must be a list, got the scalar 'root'",
        ),
        (
            "{kind: file, pattern: /tmp/, groups: [[adm]]}",
            "groups",
            "expected a user or group name, got a list",
        ),
    ],
)
def test_collect_entries_are_checked(entry: str, field: str | None, message: str) -> None:
    (e,) = _errors(f"graph: g\ncollect:\n- {entry}\n")
    assert (e.field, e.message) == (field, message)
    assert e.location is not None and e.location.line == 3


def test_an_exported_and_a_local_resource_may_not_share_a_name() -> None:
    (e,) = _errors(
        """\
        graph: g
        resources:
          noop:
          - name: n1
          - name: "@@n1"
        """
    )
    assert e.message == "duplicate resource Noop[n1]"
    assert e.location == Location("g.yaml", 5, 5)


@pytest.mark.parametrize("kind", ["file", "File", "FILE", "fIlE"])
def test_edge_kinds_are_case_insensitive(kind: str) -> None:
    g = _parse(
        f"""\
        graph: g
        resources:
          noop:
          - name: n1
          file:
          - name: /tmp/f1
        edges:
        - from: {{kind: noop, name: n1}}
          to: {{kind: {kind}, name: /tmp/f1}}
        """
    )
    (edge,) = g.edges
    assert (edge.src, edge.dst) == (("noop", "n1"), ("file", "/tmp/f1"))


def test_edge_names_are_case_sensitive() -> None:
    (e,) = _errors(
        """\
        graph: g
        resources:
          noop:
          - name: n1
          - name: n2
        edges:
        - from: {kind: noop, name: N1}
          to: {kind: noop, name: n2}
        """
    )
    assert e.field == "from.name"
    assert e.hint == "did you mean 'n1'?"


def test_resource_kinds_are_case_sensitive() -> None:
    (e,) = _errors("graph: g\nresources:\n  File:\n  - name: /tmp/f\n")
    assert (e.message, e.hint) == ("unknown resource kind 'File'", "did you mean 'file'?")


@pytest.mark.parametrize(
    ("notify", "expected"),
    [("", False), ("notify: true", True), ("notify: false", False), ("notify: ~", False)],
)
def test_edge_name_and_notify(notify: str, expected: bool) -> None:
    g = _parse(
        f"""\
        graph: g
        resources:
          noop:
          - name: a
          - name: b
        edges:
        - name: e1
          from: {{kind: noop, name: a}}
          to: {{kind: noop, name: b}}
          {notify}
        """
    )
    (edge,) = g.edges
    assert (edge.name, edge.notify) == ("e1", expected)
    assert edge.location == Location("g.yaml", 7, 3)


def test_the_same_name_in_two_kinds_is_two_resources() -> None:
    g = _parse(
        "graph: g\nresources:\n  noop:\n  - name: x\n  exec:\n  - name: x\n    cmd: 'true'\n"
    )
    assert set(g.vertices) == {("noop", "x"), ("exec", "x")}


def test_resource_locations_are_recorded() -> None:
    g = _parse("graph: g\nresources:\n  noop:\n  - name: a\n  - name: b\n")
    assert g.locations[("noop", "b")] == Location("g.yaml", 5, 5)
    assert g.source == "g.yaml"


def test_mgmt_top_level_keys_are_accepted() -> None:
    g = _parse(
        """\
        graph: g
        comment: ignored
        remote: ssh://ignored
        hostname: ignored
        resources: {}
        edges: []
        collect: []
        """
    )
    assert (g.name, g.vertices, g.edges, g.collect) == ("g", {}, [], [])


@pytest.mark.parametrize("text", [b"\xef\xbb\xbfgraph: g\n", "\ufeffgraph: g\n", "graph: g"])
def test_bytes_str_and_a_byte_order_mark_are_read(text: bytes | str) -> None:
    assert parse(text, "g.yaml").name == "g"


# -- errors are structured ------------------------------------------------------------


def test_errors_carry_location_field_and_hint() -> None:
    (e,) = _errors(
        """\
        graph: g
        resources:
          file:
          - name: /tmp/f
            contnet: x
        """
    )
    assert e.as_dict() == {
        "message": "unknown field for file",
        "file": "g.yaml",
        "line": 5,
        "column": 5,
        "field": "contnet",
        "hint": "did you mean 'content'?",
    }


def test_several_errors_come_back_in_line_order() -> None:
    errors = _errors(
        """\
        graph: g
        resources:
          noop:
          - name: n
            meta: {retyr: 1}
          file:
          - name: relative
        zzz: 1
        edges:
        - from: {kind: noop, name: missing}
          to: {kind: noop, name: n}
        """
    )
    assert [(e.location.line, e.field) for e in errors if e.location] == [
        (5, "meta.retyr"),
        (7, "name"),
        (8, None),
        (10, "from.name"),
    ]


def test_each_bad_semaphore_id_is_pointed_at() -> None:
    errors = _errors(
        "graph: g\nresources:\n  noop:\n  - name: n\n    meta: {sema: [ok, 'a:0', 'b:x']}\n"
    )
    assert [(e.location.column if e.location else 0, e.message) for e in errors] == [
        (23, "bad semaphore id 'a:0': size must be at least 1"),
        (30, "bad semaphore id 'b:x': expected 'name' or 'name:size'"),
    ]


def test_an_edge_to_a_refused_resource_is_not_a_second_error() -> None:
    (e,) = _errors(
        """\
        graph: g
        resources:
          noop:
          - name: n
          exec:
          - name: e
            cmd: 'true'
            timeout: soon
        edges:
        - from: {kind: noop, name: n}
          to: {kind: exec, name: e}
        """
    )
    assert e.field == "timeout"


def test_a_cycle_is_reported_at_its_first_edge_in_the_file() -> None:
    (e,) = _errors(
        """\
        graph: g
        resources:
          noop: [{name: a}, {name: b}, {name: c}]
        edges:
        - {from: {kind: noop, name: b}, to: {kind: noop, name: c}}
        - {from: {kind: noop, name: c}, to: {kind: noop, name: a}}
        - {from: {kind: noop, name: a}, to: {kind: noop, name: b}}
        """
    )
    assert e.message == "the edges form a cycle: Noop[b] -> Noop[c] -> Noop[a] -> Noop[b]"
    assert e.location == Location("g.yaml", 5, 3)


@pytest.mark.parametrize(
    ("text", "where", "message", "hint"),
    [
        (
            "graph: g\nresources:\n  file:\n  - name: 'x\n",
            (4, 11),
            "this quoted string is never closed",
            "the file ends before its closing quote",
        ),
        (
            "graph: [g\n",
            (1, 8),
            "this [...] list is never closed",
            "did not find expected ',' or ']' before the end of the file",
        ),
        (
            "graph: g\n\tresources: {}\n",
            (2, 1),
            "found a tab character that violates indentation",
            "YAML does not allow tabs for indentation: use spaces",
        ),
        (
            "graph: g\nresources:\n  noop:\n  - name: n\n     meta: {}\n",
            (5, 10),
            "mapping values are not allowed in this context",
            "is this line indented deeper than the key above it, "
            "or does a value contain ': ' and need quotes?",
        ),
        ("graph: g\x00\n", (1, 9), "control characters are not allowed: found U+0000", None),
    ],
)
def test_syntax_errors_point_at_the_mistake(
    text: str, where: tuple[int, int], message: str, hint: str | None
) -> None:
    (e,) = _errors(text)
    assert e.location is not None
    assert (e.location.line, e.location.column) == where
    assert (e.message, e.hint) == (f"YAML syntax error: {message}", hint)


def test_invalid_utf8_is_located() -> None:
    with pytest.raises(InputError) as info:
        parse(b"graph: g\ncomment: \xff\n", "g.yaml")
    assert info.value.location == Location("g.yaml", 2, 10)
    assert "not valid UTF-8" in info.value.message


def test_an_unknown_kind_without_a_close_match_lists_the_known_kinds() -> None:
    (e,) = _errors("graph: g\nresources:\n  frobnicator:\n  - name: x\n")
    assert e.message == "unknown resource kind 'frobnicator'"
    assert e.hint is not None and e.hint.startswith("known kinds: ")
    assert {"exec", "file", "noop"} <= set(e.hint.removeprefix("known kinds: ").split(", "))


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("edges", "'edges' is a top-level key: is it indented too far?"),
        ("path", "'path' is a resource field: is it indented too little?"),
    ],
)
def test_a_key_at_the_wrong_depth_read_as_a_kind_gets_a_hint(key: str, hint: str) -> None:
    (e,) = _errors(f"graph: g\nresources:\n  noop:\n  - name: n\n  {key}: []\n")
    assert (e.message, e.hint) == (f"unknown resource kind {key!r}", hint)


@pytest.mark.parametrize(
    ("yaml_value", "message"),
    [
        ("!!int three", "meta.retry: expected an integer, got !!int 'three', not a valid !!int"),
        ("!!float x", "meta.retry: expected an integer, got !!float 'x', not a valid !!float"),
        ("!!bool x", "meta.retry: expected an integer, got !!bool 'x', not a valid !!bool"),
        ("!!binary aGk=", f"meta.retry: the YAML tag !!binary is refused: {_IGNORED}"),
    ],
)
def test_a_tag_that_does_not_fit_its_value_is_an_input_error(yaml_value: str, message: str) -> None:
    (e,) = _errors(
        f"graph: g\nresources:\n  noop:\n  - name: n\n    meta: {{retry: {yaml_value}}}\n"
    )
    assert f"{e.field}: {e.message}" == message


def test_hints_stop_once_more_problems_are_found_than_are_shown() -> None:
    """difflib per problem made 300k misspelt keys cost half a minute (issue 8)."""
    from pymgmt.types import MAX_PROBLEMS

    fields = "\n".join(f"    contnet{i:03}: x" for i in range(MAX_PROBLEMS + 10))
    errors = _errors(f"graph: g\nresources:\n  file:\n  - name: /tmp/x\n{fields}\n")
    assert len(errors) == MAX_PROBLEMS + 10
    assert all(e.hint == "did you mean 'content'?" for e in errors[:MAX_PROBLEMS])
    assert all(e.hint is None for e in errors[MAX_PROBLEMS:])


def test_an_edge_to_a_name_in_another_case_is_hinted_among_many_names() -> None:
    names = "\n".join(f"  - name: n{i}" for i in range(3000))
    (e,) = _errors(
        f"graph: g\nresources:\n  noop:\n{names}\n"
        "edges:\n- {from: {kind: noop, name: n1}, to: {kind: noop, name: N2999}}\n"
    )
    assert e.hint == "did you mean 'n2999'?"


# -- a wrong type is named as YAML gave it; tags pymgmt does not read are refused -----------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # a bool param: every YAML type is named (an int was "a string" before)
        ("refresh_only: 1", "refresh_only: expected a boolean (true/false), got an integer"),
        ("refresh_only: 0", "refresh_only: expected a boolean (true/false), got an integer"),
        ("refresh_only: 1.5", "refresh_only: expected a boolean (true/false), got a float"),
        ("refresh_only: 'true'", "refresh_only: expected a boolean (true/false), got a string"),
        ("refresh_only: [true]", "refresh_only: expected a boolean (true/false), got a list"),
        ("refresh_only: {a: 1}", "refresh_only: expected a boolean (true/false), got a mapping"),
        (
            "refresh_only: 2024-01-02",
            "refresh_only: expected a boolean (true/false), got a timestamp",
        ),
        # an int param
        ("timeout: 1.5", "timeout: expected an integer, got a float"),
        ("timeout: yes", "timeout: expected an integer, got a boolean"),
        ("timeout: abc", "timeout: expected an integer, got a string"),
        ("timeout: {a: 1}", "timeout: expected an integer, got a mapping"),
        # a mapping param
        ("env: 3", "env: expected a mapping of strings to strings, got an integer"),
        ("env: 1.5", "env: expected a mapping of strings to strings, got a float"),
        ("env: true", "env: expected a mapping of strings to strings, got a boolean"),
        ("env: text", "env: expected a mapping of strings to strings, got a string"),
        # a text param: a scalar keeps its text; a list or a mapping is named
        ("shell: {a: b}", "shell: expected a string, got a mapping"),
        # a list param (of a user)
        ("groups: 3", "groups: expected a list of strings, got an integer"),
        ("groups: true", "groups: expected a list of strings, got a boolean"),
        ("groups: {a: b}", "groups: expected a list of strings, got a mapping"),
        ("groups: [[a]]", "groups: item 0: expected a string, got a list"),
        # a Literal param (of a user): a number or a boolean is named as one
        ("state: 1", "state: expected one of 'exists', 'absent', got an integer"),
        ("state: 1.0", "state: expected one of 'exists', 'absent', got a float"),
        ("state: off", "state: expected one of 'exists', 'absent', got a boolean"),
        ("state: [exists]", "state: expected one of 'exists', 'absent', got a list"),
        ("state: gone", "state: expected one of 'exists', 'absent', got 'gone'"),
    ],
)
def test_a_type_error_names_the_type_given(fields: str, message: str) -> None:
    of_user = fields.startswith(("groups", "state"))
    kind, head = ("user", "") if of_user else ("exec", "cmd: 'true'\n    ")
    (e,) = _errors(f"graph: g\nresources:\n  {kind}:\n  - name: e\n    {head}{fields}\n")
    assert f"{e.field}: {e.message}" == message


def test_a_null_bool_keeps_the_default_and_an_int_text_stays_text() -> None:
    res = _one("exec", "cmd: 'true'\nrefresh_only:\nshell: 12", name="e")
    assert (res.refresh_only, res.shell) == (False, "12")


@pytest.mark.parametrize(
    ("fields", "tag", "line", "column"),
    [
        ("content: !!binary aGVsbG8=", "!!binary", 5, 14),
        ("content: !secret s3cret", "!secret", 5, 14),
        ("mode: !!set {a: ~}", "!!set", 5, 11),
        ("vars: {a: !!binary aGk=}", "!!binary", 5, 15),
        ("vars: !!omap [a: b]", "!!omap", 5, 11),
    ],
)
def test_a_tag_on_a_param_that_would_be_ignored_is_refused_with_its_place(
    fields: str, tag: str, line: int, column: int
) -> None:
    """Until now ``content: !!binary aGVsbG8=`` wrote the base64 text itself, silently."""
    text = f"graph: g\nresources:\n  file:\n  - name: /tmp/x\n    {fields}\n"
    (e,) = _errors(text)
    assert e.message == f"the YAML tag {tag} is refused: {_IGNORED}"
    assert (e.field, e.location.line, e.location.column) == (fields.split(":")[0], line, column)


@pytest.mark.parametrize(
    "fields",
    [
        "content: !!str 12",
        "mode: !!str 0644",
        "content: 2024-01-02",  # an implicit timestamp: a text param keeps the text
        "vars: !!map {a: b}",
    ],
)
def test_yamls_own_plain_tags_are_read(fields: str) -> None:
    _one("file", fields)
