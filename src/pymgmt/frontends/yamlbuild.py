"""The YAML graph builder: mgmt's format, read strictly, into a declared graph.

Every key is checked, and every problem in the file is reported in one
pass, each with its location and a "did you mean" for misspelt kinds and
fields. Scalars for string params keep their literal text, which is what
makes ``mode: 0644`` mean "0644". A value of the wrong type is named as
YAML gave it (``refresh_only: 1`` is "an integer", not "a string").

Only YAML's own plain tags are read (``!!str``, ``!!int``, ``!!float``,
``!!bool``, ``!!null``, a timestamp, lists and mappings). Any other tag on a
param's value (``!!binary``, ``!!set``, a local ``!secret``) is refused with
its place, not ignored: until now ``content: !!binary aGVsbG8=`` wrote the
base64 text itself into the file, silently. It is refused rather than
decoded because every text param is a ``str`` that reaches a file, an argv
or a path: decoded bytes are not text (a NUL, invalid UTF-8), and a tag
that means one thing for ``content`` would have to mean something for
``cmd`` and ``path`` too. Binary content comes from a file (``source``).

Only what one resource, edge, metaparameter
or collect entry shows on its own is checked here; what needs the whole
graph (cycles, semaphore sizes, Send/Recv, AutoEdges) is `compile.accept`'s.
When a piece is refused, the graph of the valid pieces still goes through
`compile.problems`, so the user sees every problem of the file at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
from collections.abc import Iterator
from typing import Any, get_args, get_origin

import yaml

from ..errors import InputError, InputErrors, Location
from ..graph.model import Collect, Edge, Key, key_str
from ..metaparams import MetaParams, parse_sema
from ..resources.base import Resource, kinds
from ..types import (
    MAX_PROBLEMS,
    check_value,
    describe,
    is_optional,
    nul_problem,
    suggest,
    text_problem,
    unwrap_optional,
)
from .compile import problems
from .hints import field_hint, kind_hint, value_hint
from .yamlmodel import YamlGraph
from .yamlsyntax import compose

#: above this many names of one kind, "did you mean" only looks for case slips
_FUZZY_NAMES = 2000

#: The keys of the format, each with what it means: the builder accepts exactly
#: these, and `pymgmt docs` and `pymgmt schema` are generated from them.
TOP_KEYS: dict[str, str] = {
    "graph": "the graph's name (required)",
    "comment": "free text, ignored",
    "resources": "the resources, by kind: a list of resources under each kind's name",
    "edges": "a list of edges: what must come before what",
    "collect": "what this host takes in of other hosts' exported ('@@') resources",
    "remote": "with 'pymgmt run --remote': the host this graph runs on, ssh://user@host[:port]",
    "hostname": "with --remote: the name the remote agent uses (default: the URL's host)",
    "remotes": "with --remote: graph files, relative to this one, that the remote host "
    "runs on further hosts",
}
EDGE_KEYS: dict[str, str] = {
    "name": "the edge's name, used in messages",
    "from": "the resource that comes first: {kind: KIND, name: NAME}",
    "to": "the resource that comes after it: {kind: KIND, name: NAME}",
    "notify": "true: 'to' gets a refresh notification whenever 'from' changed something",
    "send": "Send/Recv: the output of 'from' carried along the edge (a password's 'password')",
    "recv": "Send/Recv: the param of 'to' that receives it (vars.NAME: one variable of a"
    " file's template)",
}
COLLECT_KEYS: dict[str, str] = {
    "kind": "the kind collected (file)",
    "pattern": "the absolute directory collected files land in",
    "mode": "the most permissive mode a collected file may ask for (default '0644')",
    "owners": "the only owners a collected file may ask for (default: none)",
    "groups": "the only groups a collected file may ask for (default: none)",
}
_EDGE_KEYS = tuple(EDGE_KEYS)
_TOP_KEYS = tuple(TOP_KEYS)
_COLLECT_KEYS = tuple(COLLECT_KEYS)
#: kinds another host's exports may be collected as: each needs a confinement rule
COLLECTABLE = ("file",)
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_YAML_TAG = "tag:yaml.org,2002:"
#: the tags a param's value may carry: those YAML itself gives plain values
#: (a timestamp and `=` included: a text param keeps their text as written)
_READ_TAGS = frozenset(
    _YAML_TAG + t
    for t in ("null", "str", "int", "float", "bool", "timestamp", "value", "seq", "map")
) | {_YAML_TAG + "merge"}


def declare(text: bytes | str, filename: str) -> YamlGraph:
    """The declared graph: every piece checked on its own; InputErrors on any problem."""
    with _collector_paused():
        return _Builder(filename).build(text)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a graph is read.

    Reading allocates a node per scalar and keeps them all: the collector
    then rescans the growing heap again and again, which made a 10 MB graph
    take three times as long (issue 8, fuzzing). A node tree has no cycles,
    so there is nothing for it to find; it runs again afterwards.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclasses.dataclass(frozen=True)
class _KindPlan:
    """A kind's fields as `_Builder.resource` checks them (100k resources: 100k lookups)."""

    a_kind: str  # "a file resource"
    known: dict[str, dataclasses.Field[Any]]
    #: the params without a default
    required: list[dataclasses.Field[Any]]
    #: the params whose type is str (or str | None): a scalar's text as written
    text: frozenset[str]


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.errors: list[InputError] = []
        self.warnings: list[InputError] = []
        self.kinds = kinds()
        #: resources declared but refused; edges to them are not errors of their own
        self.refused: set[Key] = set()
        #: kinds declared under resources: but unknown; edges to them add no error
        self.unknown_kinds: set[str] = set()
        self._constructor = yaml.constructor.SafeConstructor()
        #: built on first use, once every resource is known (edges come after)
        self._names: dict[str, dict[str, str]] | None = None
        self._plans: dict[type[Resource], _KindPlan] = {}

    # -- helpers ------------------------------------------------------------------

    def loc(self, node: yaml.Node) -> Location:
        m = node.start_mark
        return Location(self.filename, m.line + 1, m.column + 1)

    def error(
        self, node: yaml.Node, message: str, *, field: str | None = None, hint: str | None = None
    ) -> None:
        self.errors.append(InputError(message, location=self.loc(node), field=field, hint=hint))

    def warn(
        self, node: yaml.Node, message: str, *, field: str | None = None, hint: str | None = None
    ) -> None:
        self.warnings.append(InputError(message, location=self.loc(node), field=field, hint=hint))

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[yaml.ScalarNode, yaml.Node]] | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return []
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping, got {_node_kind(node)}")
            return None
        out: list[tuple[yaml.ScalarNode, yaml.Node]] = []
        seen: set[str] = set()
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.error(k, f"keys in {what} must be plain names")
                continue
            if k.tag == "tag:yaml.org,2002:merge":
                self.error(
                    k,
                    f"YAML merge keys ('<<') are not supported in {what}",
                    hint="write the fields out",
                )
                continue
            if k.value in seen:
                self.error(k, f"duplicate key {k.value!r} in {what}")
                continue
            seen.add(k.value)
            out.append((k, v))
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node] | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{what} must be a list, got {_node_kind(node)}")
            return None
        return list(node.value)

    def value(self, node: yaml.Node, tp: Any) -> tuple[bool, Any]:
        """Convert a node to a value of type `tp`: (ok, value); errors are recorded by caller."""
        inner = unwrap_optional(tp)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _NULL:
                return True, None
            if inner is str or (
                node.tag == _STR
                and get_origin(inner) is not None
                and get_origin(inner) is not list
                and get_origin(inner) is not dict
            ):
                # Strings keep the literal text: `mode: 0644` is "0644"; so do the
                # words of a Literal (one that YAML reads as a number or a boolean,
                # `state: 1`, is constructed below, so its error names that type).
                return True, node.value
            # Constructed for every other type, bool too: `refresh_only: 1` is then
            # refused as the integer it is (it used to be kept as text: "a string").
            constructed, v = self.construct(node)
            if not constructed:
                return False, node.value  # `!!int three`: the caller names the tag
            if inner is float and node.tag == _STR and node.value.lower() in ("inf", "infinity"):
                return True, math.inf
            return True, v
        if isinstance(node, yaml.SequenceNode):
            if get_origin(inner) is list:
                (item_t,) = get_args(inner)
                out = []
                for item in node.value:
                    _, v = self.value(item, item_t)
                    out.append(v)
                return True, out
            return True, [None] * len(node.value)  # type error reported by check_value
        if isinstance(node, yaml.MappingNode):
            if get_origin(inner) is dict:
                out_d: dict[Any, Any] = {}
                for k, v in node.value:
                    # a list or mapping as a key becomes None: check_value refuses it
                    _, kv = self.value(k, str) if isinstance(k, yaml.ScalarNode) else (True, None)
                    _, vv = self.value(v, str) if isinstance(v, yaml.ScalarNode) else (True, [])
                    out_d[kv] = vv
                return True, out_d
            return True, {}
        return False, None

    def tag_error(self, node: yaml.Node, field: str) -> None:
        """A tag the builder does not read, on `field`'s value (see the module docstring)."""
        self.error(
            node,
            f"the YAML tag {_short_tag(node.tag)} is refused: the value is read as written,"
            " and the tag would be ignored",
            field=field,
            hint="remove the tag; binary content comes from a file: source: PATH"
            if node.tag == _YAML_TAG + "binary"
            else "remove the tag",
        )

    def construct(self, node: yaml.Node) -> tuple[bool, Any]:
        """The YAML value of a node: (False, text) when its tag does not fit (`!!int x`)."""
        try:
            return True, self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, KeyError, TypeError):
            return False, getattr(node, "value", None)

    # -- the document ----------------------------------------------------------------

    def build(self, text: bytes | str) -> YamlGraph:
        root = compose(text, self.filename)
        if root is None:
            raise InputError(
                "the file is empty: expected a mapping with 'graph' and 'resources'",
                location=Location(self.filename, 1, 1),
            )
        top = self.mapping(root, "the document")
        if top is None:
            raise InputErrors(self.errors)
        graph = YamlGraph(name="", source=self.filename)
        keys = {k.value: (k, v) for k, v in top}
        for k, _ in top:
            if k.value not in _TOP_KEYS:
                self.error(
                    k,
                    f"unknown top-level key {k.value!r}",
                    hint=self.did_you_mean(k.value, _TOP_KEYS),
                )
        if "graph" not in keys:
            self.error(root, "missing the graph name: add 'graph: <name>'", field="graph")
        else:
            _, v = keys["graph"]
            if not (isinstance(v, yaml.ScalarNode) and v.tag != _NULL and v.value.strip()):
                self.error(
                    v,
                    f"the graph name must be a non-empty string, got {_node_kind(v)}",
                    field="graph",
                )
            else:
                graph.name = v.value
        for opt in ("comment", "remote", "hostname"):
            if opt in keys:
                _, v = keys[opt]
                if not isinstance(v, yaml.ScalarNode):
                    self.error(v, f"expected a string, got {_node_kind(v)}", field=opt)
                elif opt != "comment":
                    setattr(graph, opt, v.value)
                    graph.header_locations[opt] = self.loc(v)
        if "remotes" in keys:
            self.remotes(keys["remotes"][1], graph)
        if "resources" in keys:
            self.resources(keys["resources"][1], graph)
        if "collect" in keys:
            self.collect(keys["collect"][1], graph)
        if "edges" in keys:
            self.edges(keys["edges"][1], graph)
        if self.errors:
            # what was valid on its own is checked as a graph too: every
            # problem in one go, not a cycle only once the typos are fixed
            raise InputErrors([*self.errors, *problems(graph)])
        graph.warnings = sorted(self.warnings, key=lambda w: _line_col(w.location))
        return graph

    def remotes(self, node: yaml.Node, graph: YamlGraph) -> None:
        """``remotes: [FILE, ...]``: graph files the remote host runs further on."""
        items = self.sequence(node, "remotes")
        if items is None:
            return
        graph.header_locations["remotes"] = self.loc(node)
        for item in items:
            if not (isinstance(item, yaml.ScalarNode) and item.tag == _STR and item.value):
                self.error(item, f"expected a graph file name, got {_node_kind(item)}",
                           field="remotes")  # fmt: skip
                continue
            graph.remotes.append(item.value)
            graph.header_locations[f"remotes[{len(graph.remotes) - 1}]"] = self.loc(item)

    def resources(self, node: yaml.Node, graph: YamlGraph) -> None:
        by_kind = self.mapping(node, "resources")
        if by_kind is None:
            return
        seen: dict[Key, tuple[Location, Resource, bool]] = {}
        for kind_node, items_node in by_kind:
            kind = kind_node.value
            cls = self.kinds.get(kind)
            if cls is None:
                self.unknown_kinds.add(kind.lower())
                self.error(
                    kind_node,
                    f"unknown resource kind {kind!r}",
                    hint=kind_hint(kind)
                    or self.did_you_mean(kind, self.kinds)
                    or self._misplaced(kind)
                    or self._known(),
                )
                continue
            items = self.sequence(items_node, f"the {kind} resources")
            for item in items or []:
                built = self.resource(cls, item)
                if built is None:
                    continue
                res, exported = built
                if res.key in seen:
                    line, twin, twin_exported = seen[res.key]
                    if exported == twin_exported and res.same_as(twin):
                        # mgmt collapses identical duplicates; so do we, aloud
                        self.warn(
                            item,
                            f"duplicate resource {key_str(res.key)}, identical to the one "
                            f"at line {line.line}: merged into it",
                        )
                    else:
                        self.error(
                            item,
                            f"duplicate resource {key_str(res.key)}",
                            hint=f"first defined at line {line.line}",
                        )
                    continue
                where = self.loc(item)
                seen[res.key] = (where, res, exported)
                graph.add(res, where)
                first, end = item.start_mark, item.end_mark
                # a block mapping ends where the next token starts (a later line)
                last = end.line - 1 if end.line > first.line else first.line
                graph.item_lines[res.key] = (first.line, last, first.column)
                if exported:  # applied here, and published for other hosts to collect
                    graph.exported.add(res.key)

    def did_you_mean(self, word: str, choices: Any) -> str | None:
        """A hint, while it can still be shown: past MAX_PROBLEMS errors none is.

        difflib costs ~0.1 ms a word; 300k misspelt keys cost half a minute
        of hints that nobody would read (issue 8, fuzzing).
        """
        if len(self.errors) >= MAX_PROBLEMS:
            return None
        return _did_you_mean(word, choices)

    def vertex_hint(self, graph: YamlGraph, kind: str, name: str) -> str | None:
        """ "did you mean" among the kind's names, from an index built once.

        Scanning every vertex for every edge made many bad edges quadratic
        (4,000 took 100 s); case slips are found in the index, and difflib
        only runs over kinds with a modest number of names.
        """
        if len(self.errors) >= MAX_PROBLEMS:
            return None
        if self._names is None:
            self._names = {}
            for k, n in graph.vertices:
                self._names.setdefault(k, {}).setdefault(n.lower(), n)
        names = self._names.get(kind, {})
        same = names.get(name.lower())
        if same is not None:
            return f"did you mean {same!r}?"
        return _did_you_mean(name, names.values()) if len(names) <= _FUZZY_NAMES else None

    def _known(self) -> str:
        return "known kinds: " + ", ".join(sorted(self.kinds))

    def _misplaced(self, word: str) -> str | None:
        """A hint for a key that is valid one level up or down, seen as a kind."""
        if word in _TOP_KEYS:
            return f"'{word}' is a top-level key: is it indented too far?"
        if any(word in ("name", "meta", *c.param_types) for c in self.kinds.values()):
            return f"'{word}' is a resource field: is it indented too little?"
        return None

    def _plan(self, cls: type[Resource]) -> _KindPlan:
        """What `resource` asks of a kind for every resource of it, worked out once."""
        kind = cls.kind
        fields = cls.params_fields()
        plan = self._plans[cls] = _KindPlan(
            a_kind=f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} resource",
            known={f.name: f for f in fields},
            required=[
                f
                for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ],
            text=frozenset(n for n, tp in cls.param_types.items() if unwrap_optional(tp) is str),
        )
        return plan

    def resource(self, cls: type[Resource], node: yaml.Node) -> tuple[Resource, bool] | None:
        """The resource and whether it is exported (``@@name``), or None after errors."""
        kind = cls.kind
        plan = self._plans.get(cls) or self._plan(cls)
        a_kind = plan.a_kind
        fields = self.mapping(node, a_kind)
        if fields is None:
            return None
        before = len(self.errors)
        known = plan.known
        values: dict[str, Any] = {}
        name: str | None = None
        meta = MetaParams()
        value_nodes: dict[str, yaml.Node] = {}
        wrong: set[str] = set()
        spelt = {k.value for k, _ in fields}
        spelt_as: dict[str, str] = {}  # param -> the alias the entry wrote it as
        for k, v in fields:
            key = k.value
            if key == "name":
                if isinstance(v, yaml.ScalarNode) and v.tag != _NULL and v.value.removeprefix("@@"):
                    name = v.value
                elif isinstance(v, yaml.ScalarNode) and v.value.startswith("@@"):
                    self.error(
                        v, "expected a name after '@@'", field="name", hint="'@@' marks it exported"
                    )
                else:
                    self.error(v, "expected a non-empty string", field="name")
                continue
            if key == "meta":
                meta = self.meta(v) or meta
                continue
            if key in cls.param_aliases:
                key = self.spelling(k, key, cls.param_aliases[key], spelt)
                if key is None:
                    continue
                spelt_as[key] = k.value
            if key not in known:
                self.error(
                    k,
                    f"unknown field for {kind}",
                    field=key,
                    hint=field_hint(kind, key) or self.did_you_mean(key, [*known, "name", "meta"]),
                )
                continue
            tp = cls.param_types[key]
            # a scalar of a plain tag is the common case: no call for it (100k files)
            plain = v.tag in _READ_TAGS and isinstance(v, yaml.ScalarNode)
            if not plain and (tagged := _foreign_tag(v)) is not None:
                self.tag_error(tagged, key)
                wrong.add(key)
                continue
            other = cls.param_spellings.get(key)  # mgmt's `priority: Err` for `error`
            if key in plan.text and isinstance(v, yaml.ScalarNode) and v.tag != _NULL:
                val = v.value  # what `value` and `check_value` make of a string, sooner
                if other:
                    val = other.get(val, val)
                err = None if key in cls.binary_params else text_problem(val)
            else:
                read, val = self.value(v, tp)
                if other and isinstance(val, str):
                    val = other.get(val, val)
                if val is None and not _is_optional_field(tp):
                    continue  # `key:` with no value: keep the default, as mgmt does
                err = check_value(tp, val) if read else _unreadable(v, tp)
                if not err and key not in cls.binary_params:
                    err = nul_problem(val)
            if err:
                habit = value_hint(kind, key, val)
                if habit:  # the habit's own hint, not difflib's nearest word
                    given = v.value if isinstance(v, yaml.ScalarNode) else val  # `yes`, not True
                    err = f"expected {describe(unwrap_optional(tp))}, got {given!r}"
                self.error(v, err, field=key, hint=habit)
                wrong.add(key)
                continue
            values[key] = val
            value_nodes[key] = v
        if name is None:
            if not any(e.field == "name" for e in self.errors[before:]):
                self.error(node, f"{a_kind} needs a name", field="name")
            return None
        missing = [
            f
            for f in plan.required
            if f.name not in values and f.name not in wrong  # given, with a value already reported
        ]
        for f in missing:
            self.error(
                node,
                f"missing required field for {kind} {name!r}",
                field=f.name,
                hint=f"{f.metadata.get('doc', '')}; {describe(cls.param_types[f.name])}",
            )
        if len(self.errors) > before:
            self.refused.add((kind, name.removeprefix("@@")))
            return None
        # `@@name` exports the resource; the name it is known by has no `@@`.
        exported = name.startswith("@@")
        res = cls(name=name.removeprefix("@@") if exported else name, meta=meta, **values)
        for fname, msg in res.problems():
            habit = value_hint(kind, fname, getattr(res, fname, None))
            where = value_nodes.get(fname, node)
            self.error(where, msg, field=spelt_as.get(fname, fname), hint=habit)
        for fname, msg in res.warnings():
            self.warn(value_nodes.get(fname, node), msg, field=spelt_as.get(fname, fname))
        if len(self.errors) > before:
            self.refused.add(res.key)
            return None
        return res, exported

    def spelling(self, node: yaml.Node, alias: str, name: str, spelt: set[str]) -> str | None:
        """The param an alias spells, or None (an error) when the entry gives both."""
        if name in spelt:
            self.error(
                node,
                f"{alias!r} is another spelling of {name!r}, which is given too",
                field=alias,
                hint="keep one of them",
            )
            return None
        return name

    def meta(self, node: yaml.Node) -> MetaParams | None:
        fields = self.mapping(node, "meta")
        if fields is None:
            return None
        known = {f.name: f for f in dataclasses.fields(MetaParams)}
        hints = _meta_types()
        values: dict[str, Any] = {}
        nodes: dict[str, yaml.Node] = {}
        ok = True
        for k, v in fields:
            if k.value not in known:
                self.error(
                    k,
                    "unknown metaparameter",
                    field=f"meta.{k.value}",
                    hint=self.did_you_mean(k.value, known),
                )
                ok = False
                continue
            tp = hints[k.value]
            if (tagged := _foreign_tag(v)) is not None:
                self.tag_error(tagged, f"meta.{k.value}")
                ok = False
                continue
            read, val = self.value(v, tp)
            if val is None:
                continue
            err = check_value(tp, val) if read else _unreadable(v, tp)
            if err:
                self.error(v, err, field=f"meta.{k.value}")
                ok = False
                continue
            values[k.value] = float(val) if tp is float else val
            nodes[k.value] = v
        # Each semaphore id is checked here, to point at the bad id itself.
        sema_node = nodes.get("sema")
        if isinstance(sema_node, yaml.SequenceNode):
            for item, spec in zip(sema_node.value, values["sema"], strict=True):
                try:
                    parse_sema(spec)
                except ValueError as e:
                    self.error(item, str(e), field="meta.sema")
        if not ok:
            return None
        meta = MetaParams(**values)
        for fname, msg in meta.problems():
            if fname != "sema":
                self.error(nodes.get(fname, node), msg, field=f"meta.{fname}")
        return meta

    def collect(self, node: yaml.Node, graph: YamlGraph) -> None:
        """``collect:`` entries: what this host takes in of other hosts' exports.

        Data from other hosts is untrusted input, so only kinds with a
        confinement rule may be collected (files, into one directory), and
        the limits a collected file must keep within are checked here.
        """
        for item in self.sequence(node, "collect") or []:
            fields = self.mapping(item, "a collect entry")
            if fields is None:
                continue
            before = len(self.errors)
            d = {k.value: v for k, v in fields}
            for k, _ in fields:
                if k.value not in _COLLECT_KEYS:
                    self.error(
                        k,
                        "unknown field in collect",
                        field=k.value,
                        hint=self.did_you_mean(k.value, _COLLECT_KEYS),
                    )
            kind_node = d.get("kind")
            if not isinstance(kind_node, yaml.ScalarNode) or kind_node.tag == _NULL:
                self.error(item, "a collect entry needs a kind", field="kind")
                continue
            kind = kind_node.value
            if kind not in self.kinds:
                self.error(
                    kind_node,
                    f"unknown resource kind {kind!r}",
                    field="kind",
                    hint=self.did_you_mean(kind, self.kinds) or self._known(),
                )
                continue
            if kind not in COLLECTABLE:
                self.error(
                    kind_node,
                    f"collecting {kind} from other hosts is not supported: only "
                    + ", ".join(COLLECTABLE),
                    field="kind",
                )
                continue
            pattern = self.collect_pattern(item, d.get("pattern"), before)
            mode = self.collect_mode(d.get("mode"))
            owners = self.name_list(d.get("owners"), "owners")
            groups = self.name_list(d.get("groups"), "groups")
            if len(self.errors) > before or pattern is None:
                continue
            twin = next((c for c in graph.collect if c.kind == kind), None)
            if twin is not None:
                # one directory and one set of limits per kind: a second entry
                # would be ignored, and its files silently never come
                at = f" at line {twin.location.line}" if twin.location else ""
                self.error(
                    kind_node,
                    f"{kind} is already collected by the entry{at}: one entry per kind",
                    field="kind",
                )
                continue
            graph.collect.append(
                Collect(kind, pattern, mode, owners, groups, location=self.loc(item))
            )

    def collect_pattern(self, item: yaml.Node, node: yaml.Node | None, before: int) -> str | None:
        """The directory collected files land in, ending in '/'."""
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            if len(self.errors) == before:  # one problem per entry is enough to read
                self.error(
                    item,
                    "a collect entry needs a pattern: the directory collected files go into",
                    field="pattern",
                )
            return None
        text = node.value if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(text, str) or not text.startswith("/"):
            self.error(
                node,
                f"expected an absolute directory path, got {_node_kind(node)}",
                field="pattern",
            )
            return None
        problem = nul_problem(text)
        if problem:
            self.error(node, problem, field="pattern")
            return None
        normal = os.path.normpath(text)
        if normal.startswith("//"):
            normal = normal[1:]
        if normal.rstrip("/") != text.rstrip("/"):
            self.error(
                node,
                f"the directory must be written in its normal form: {normal + '/'!r}",
                field="pattern",
            )
            return None
        return normal if normal.endswith("/") else normal + "/"

    def collect_mode(self, node: yaml.Node | None) -> str:
        """The most permissive mode a collected file may ask for ('0644' unless given)."""
        default = "0644"
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            return default
        text = node.value if isinstance(node, yaml.ScalarNode) else ""
        if text.isascii() and text.isdigit() and set(text) <= set("01234567"):
            value = int(text, 8)
            if value <= 0o777:
                return f"{value:04o}"
        self.error(
            node,
            f"expected an octal mode like '0644', at most 0777, got {_node_kind(node)}",
            field="mode",
        )
        return default

    def name_list(self, node: yaml.Node | None, what: str) -> tuple[str, ...]:
        """owners/groups: a list of user or group names (or numbers)."""
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            return ()
        items = self.sequence(node, what)
        if items is None:
            return ()
        out: list[str] = []
        for it in items:
            if (
                isinstance(it, yaml.ScalarNode)
                and it.tag != _NULL
                and it.value.strip()
                and not nul_problem(it.value)
            ):
                out.append(it.value)
            else:
                self.error(it, f"expected a user or group name, got {_node_kind(it)}", field=what)
        return tuple(out)

    def edges(self, node: yaml.Node, graph: YamlGraph) -> None:
        for item in self.sequence(node, "edges") or []:
            fields = self.mapping(item, "an edge")
            if fields is None:
                continue
            d = {k.value: v for k, v in fields}
            for k, _ in fields:
                if k.value not in _EDGE_KEYS:
                    self.error(
                        k,
                        "unknown field in edge",
                        field=k.value,
                        hint=self.did_you_mean(k.value, _EDGE_KEYS),
                    )
            sendrecv: dict[str, str] = {}
            for key in ("send", "recv"):
                v = d.get(key)
                if v is None or (isinstance(v, yaml.ScalarNode) and v.tag == _NULL):
                    continue
                if isinstance(v, yaml.ScalarNode) and v.value:
                    sendrecv[key] = v.value
                else:
                    self.error(v, f"expected a name, got {_node_kind(v)}", field=key)
            ends: list[Key] = []
            for end in ("from", "to"):
                ref = d.get(end)
                if ref is None:
                    self.error(item, f"an edge needs '{end}: {{kind: ..., name: ...}}'", field=end)
                    continue
                found = self.vertex_ref(ref, end, graph)
                if found is not None:
                    ends.append(found)
            notify = False
            if "notify" in d:
                v = d["notify"]
                flag = (
                    self.construct(v)[1]
                    if isinstance(v, yaml.ScalarNode) and v.tag == _BOOL
                    else None
                )
                if isinstance(flag, bool):
                    notify = flag
                elif not (isinstance(v, yaml.ScalarNode) and v.tag == _NULL):
                    self.error(
                        v, f"expected a boolean (true/false), got {_node_kind(v)}", field="notify"
                    )
            ename = d.get("name")
            if len(ends) == 2:
                if ends[0] == ends[1]:
                    self.error(item, f"an edge from {key_str(ends[0])} to itself is a cycle")
                    continue
                graph.connect(
                    Edge(
                        ends[0],
                        ends[1],
                        ename.value
                        if isinstance(ename, yaml.ScalarNode) and ename.tag != _NULL
                        else "",
                        notify,
                        self.loc(item),
                        send=sendrecv.get("send", ""),
                        recv=sendrecv.get("recv", ""),
                    )
                )

    def vertex_ref(self, node: yaml.Node, end: str, graph: YamlGraph) -> Key | None:
        fields = self.mapping(node, f"edge '{end}'")
        if fields is None:
            return None
        d = {k.value: v for k, v in fields}
        for k, _ in fields:
            if k.value not in ("kind", "name"):
                self.error(
                    k,
                    f"unknown field in edge '{end}'",
                    field=f"{end}.{k.value}",
                    hint=self.did_you_mean(k.value, ["kind", "name"]),
                )
        kind_n, name_n = d.get("kind"), d.get("name")
        if (
            not isinstance(kind_n, yaml.ScalarNode)
            or not isinstance(name_n, yaml.ScalarNode)
            or kind_n.tag == _NULL
            or name_n.tag == _NULL
        ):
            self.error(node, f"edge '{end}' needs both kind and name", field=end)
            return None
        kind = kind_n.value.lower()
        if kind in self.unknown_kinds:
            return None  # reported once, where its resources are declared
        if kind not in self.kinds:
            self.error(
                kind_n,
                f"unknown resource kind {kind_n.value!r}",
                field=f"{end}.kind",
                hint=self.did_you_mean(kind, self.kinds) or self._known(),
            )
            return None
        key = (kind, name_n.value)
        if key in self.refused:
            return None  # its own errors are reported where it is declared
        if key not in graph.vertices:
            bare = (kind, name_n.value.removeprefix("@@"))
            self.error(
                name_n,
                f"edge '{end}' names {key_str(key)}, which is not in the graph",
                field=f"{end}.name",
                hint=f"an exported resource is named without '@@': {bare[1]!r}"
                if bare != key and bare in graph.vertices
                else self.vertex_hint(graph, kind, name_n.value),
            )
            return None
        return key


def _line_col(location: Location | None) -> tuple[int, int]:
    return (location.line, location.column) if location else (0, 0)


def _did_you_mean(word: str, choices: Any) -> str | None:
    s = suggest(word, list(choices))
    return f"did you mean {s!r}?" if s else None


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return f"the scalar {node.value!r}"


def _foreign_tag(node: yaml.Node) -> yaml.Node | None:
    """The first node in `node` with a tag the builder does not read (`_READ_TAGS`)."""
    todo = [node]
    while todo:
        n = todo.pop()
        if n.tag not in _READ_TAGS:
            return n
        if isinstance(n, yaml.SequenceNode):
            todo.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                todo += (k, v)
    return None


def _short_tag(tag: str) -> str:
    """A tag as written in YAML: ``!!binary`` for YAML's own, ``!name`` for a local one."""
    return "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag


def _unreadable(node: yaml.Node, tp: Any) -> str:
    """The problem of a scalar whose explicit tag does not fit its text (`!!int three`)."""
    tag = _short_tag(node.tag)
    value = getattr(node, "value", "")
    return f"expected {describe(unwrap_optional(tp))}, got {tag} {value!r}, not a valid {tag}"


def _is_optional_field(tp: Any) -> bool:
    # Not `tp is not unwrap_optional(tp)`: that cache answers an equal type with
    # the first such object it saw (file's `vars` and exec's `env` are two
    # `dict[str, str]`), and the identity test then took exec's env for optional.
    return is_optional(tp)


_META_TYPES: dict[str, Any] | None = None


def _meta_types() -> dict[str, Any]:
    global _META_TYPES
    if _META_TYPES is None:
        import typing

        _META_TYPES = typing.get_type_hints(MetaParams)
    return _META_TYPES
