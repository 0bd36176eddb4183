"""The mgmt YAML graph format, read strictly, with file:line:column errors.

Files of mgmt's own examples run unchanged::

    graph: mygraph
    comment: optional, ignored
    resources:
      file:
      - name: file1
        path: /tmp/f1
        mode: 0644          # unquoted (YAML 1.1 octal) and '0644' mean the same
        meta: {noop: true}
    edges:
    - name: e1
      from: {kind: exec, name: exec1}
      to: {kind: file, name: file1}
      notify: false
    collect:
    - kind: file
      pattern: /tmp/

Unlike mgmt (whose parser ignores unknown keys) every key is checked, and
every problem in the file is reported in one pass, each with its location and
a "did you mean" for misspelt kinds and fields. The document is composed
with libyaml into nodes (which keep line marks); scalars for string params
keep their literal text, which is what makes ``mode: 0644`` mean "0644".
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

import yaml

from ..errors import InputError, InputErrors, Location
from ..graph.model import Edge, Graph, Key, key_str
from ..graph.toposort import CycleError, toposort
from ..metaparams import MetaParams
from ..resources.base import Resource, kinds
from ..types import check_value, describe, suggest, unwrap_optional

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_TOP_KEYS = ("graph", "comment", "resources", "edges", "collect", "remote", "hostname")
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"


@dataclass
class Collect:
    kind: str
    pattern: str


@dataclass(eq=False)
class YamlGraph(Graph[Resource]):
    """A graph plus what the YAML says about the World."""

    exported: list[Resource] = field(default_factory=list)
    collect: list[Collect] = field(default_factory=list)


def load(path: str) -> YamlGraph:
    """Read and fully validate a graph file; raise InputErrors on any problem."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise InputError(
            f"cannot read the graph file: {e.strerror}", location=Location(path)
        ) from None
    return parse(text, path)


def parse(text: bytes | str, filename: str) -> YamlGraph:
    return _Builder(filename).build(text)


class YamlFrontend:
    """Yields the file's graph, then a new one each time the file is saved."""

    def __init__(self, path: str, *, debounce: float = 0.05) -> None:
        self.path = os.path.abspath(path)
        self.debounce = debounce

    async def graphs(self, hub: Any) -> AsyncIterator[Graph[Resource] | InputError]:
        changed = asyncio.Event()
        sub = hub.subscribe(self.path, changed.set)  # before the first read: no gap
        try:
            last = _read_bytes(self.path)
            yield _parse_or_error(last, self.path)
            while True:
                await changed.wait()
                # Editors save in bursts (truncate, write, rename): wait for quiet.
                while True:
                    changed.clear()
                    try:
                        async with asyncio.timeout(self.debounce):
                            await changed.wait()
                    except TimeoutError:
                        break
                data = _read_bytes(self.path)
                if data == last:
                    continue
                last = data
                yield _parse_or_error(data, self.path)
        finally:
            hub.unsubscribe(sub)


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _parse_or_error(data: bytes | None, path: str) -> YamlGraph | InputError:
    if data is None:
        return InputError("cannot read the graph file", location=Location(path))
    try:
        return parse(data, path)
    except InputError as e:
        return e


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.errors: list[InputError] = []
        self.kinds = kinds()
        self._constructor = yaml.constructor.SafeConstructor()

    # -- helpers ------------------------------------------------------------------

    def loc(self, node: yaml.Node) -> Location:
        m = node.start_mark
        return Location(self.filename, m.line + 1, m.column + 1)

    def error(
        self, node: yaml.Node, message: str, *, field: str | None = None, hint: str | None = None
    ) -> None:
        self.errors.append(InputError(message, location=self.loc(node), field=field, hint=hint))

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
                get_origin(inner) is not None
                and get_origin(inner) is not list
                and get_origin(inner) is not dict
            ):
                # Strings and Literals keep the literal text: `mode: 0644` is "0644".
                return True, node.value
            if inner is bool and node.tag != _BOOL:
                return True, node.value
            try:
                v = self._constructor.construct_object(node, deep=True)
            except yaml.YAMLError:
                return True, node.value
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
                    _, kv = self.value(k, str)
                    _, vv = self.value(v, str) if isinstance(v, yaml.ScalarNode) else (True, [])
                    out_d[kv] = vv
                return True, out_d
            return True, {}
        return False, None

    # -- the document ----------------------------------------------------------------

    def build(self, text: bytes | str) -> YamlGraph:
        try:
            root = yaml.compose(text, Loader=_Loader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            loc = (
                Location(self.filename, mark.line + 1, mark.column + 1)
                if mark
                else Location(self.filename)
            )
            raise InputError(f"YAML syntax error: {e.problem or e.context}", location=loc) from None
        except yaml.YAMLError as e:
            raise InputError(f"YAML error: {e}", location=Location(self.filename)) from None
        except UnicodeDecodeError:
            raise InputError(
                "the file is not valid UTF-8 text", location=Location(self.filename)
            ) from None
        if root is None:
            raise InputError(
                "the file is empty: expected a mapping with 'graph' and 'resources'",
                location=Location(self.filename),
            )
        top = self.mapping(root, "the document")
        if top is None:
            raise InputErrors(self.errors)
        graph = YamlGraph(name="", source=self.filename)
        keys = {k.value: (k, v) for k, v in top}
        for k, _ in top:
            if k.value not in _TOP_KEYS:
                self.error(
                    k, f"unknown top-level key {k.value!r}", hint=_did_you_mean(k.value, _TOP_KEYS)
                )
        if "graph" not in keys:
            self.error(root, "missing the graph name: add 'graph: <name>'", field="graph")
        else:
            _, v = keys["graph"]
            if not (isinstance(v, yaml.ScalarNode) and v.tag != _NULL and v.value.strip()):
                self.error(v, "the graph name must be a non-empty string", field="graph")
            else:
                graph.name = v.value
        for opt in ("comment", "remote", "hostname"):
            if opt in keys:
                _, v = keys[opt]
                if not isinstance(v, yaml.ScalarNode):
                    self.error(v, f"expected a string, got {_node_kind(v)}", field=opt)
        if "resources" in keys:
            self.resources(keys["resources"][1], graph)
        if "collect" in keys:
            self.collect(keys["collect"][1], graph)
        if "edges" in keys:
            self.edges(keys["edges"][1], graph)
        if not self.errors:
            self.cycles(graph)
        if self.errors:
            raise InputErrors(self.errors)
        return graph

    def resources(self, node: yaml.Node, graph: YamlGraph) -> None:
        by_kind = self.mapping(node, "resources")
        if by_kind is None:
            return
        seen: dict[Key, Location] = {}
        for kind_node, items_node in by_kind:
            kind = kind_node.value
            cls = self.kinds.get(kind)
            if cls is None:
                self.error(
                    kind_node,
                    f"unknown resource kind {kind!r}",
                    hint=_did_you_mean(kind, self.kinds),
                )
                continue
            items = self.sequence(items_node, f"the list of {kind} resources")
            for item in items or []:
                res = self.resource(cls, item)
                if res is None:
                    continue
                exported = res.name.startswith("@@")
                if exported:
                    res.name = res.name[2:]
                if res.key in seen:
                    self.error(
                        item,
                        f"duplicate resource {key_str(res.key)}",
                        hint=f"first defined at line {seen[res.key].line}",
                    )
                    continue
                seen[res.key] = self.loc(item)
                if exported:
                    graph.exported.append(res)
                else:
                    graph.add(res, self.loc(item))

    def resource(self, cls: type[Resource], node: yaml.Node) -> Resource | None:
        kind = cls.kind
        fields = self.mapping(node, f"a {kind} resource")
        if fields is None:
            return None
        before = len(self.errors)
        known = {f.name: f for f in cls.params_fields()}
        values: dict[str, Any] = {}
        name: str | None = None
        meta = MetaParams()
        value_nodes: dict[str, yaml.Node] = {}
        for k, v in fields:
            key = k.value
            if key == "name":
                if isinstance(v, yaml.ScalarNode) and v.tag != _NULL and v.value:
                    name = v.value
                else:
                    self.error(v, "expected a non-empty string", field="name")
                continue
            if key == "meta":
                meta = self.meta(v) or meta
                continue
            if key not in known:
                self.error(
                    k,
                    f"unknown field for {kind}",
                    field=key,
                    hint=_did_you_mean(key, [*known, "name", "meta"]),
                )
                continue
            tp = cls.param_types[key]
            _, val = self.value(v, tp)
            if val is None and not _is_optional_field(tp):
                continue  # `key:` with no value: keep the default, as mgmt does
            err = check_value(tp, val)
            if err:
                self.error(v, err, field=key)
                continue
            values[key] = val
            value_nodes[key] = v
        if name is None:
            if not any(e.field == "name" for e in self.errors[before:]):
                self.error(node, f"a {kind} resource needs a name", field="name")
            return None
        missing = [
            f
            for f in cls.params_fields()
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        for f in missing:
            self.error(
                node,
                f"missing required field for {kind} {name!r}",
                field=f.name,
                hint=f"{f.metadata.get('doc', '')}; {describe(cls.param_types[f.name])}",
            )
        if len(self.errors) > before:
            return None
        res = cls(name=name, meta=meta, **values)
        for fname, msg in res.problems():
            self.error(value_nodes.get(fname, node), msg, field=fname)
        return res if len(self.errors) == before else None

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
                    hint=_did_you_mean(k.value, known),
                )
                ok = False
                continue
            tp = hints[k.value]
            _, val = self.value(v, tp)
            if val is None:
                continue
            err = check_value(tp, val)
            if err:
                self.error(v, err, field=f"meta.{k.value}")
                ok = False
                continue
            values[k.value] = float(val) if tp is float else val
            nodes[k.value] = v
        if not ok:
            return None
        meta = MetaParams(**values)
        for fname, msg in meta.problems():
            self.error(nodes.get(fname, node), msg, field=f"meta.{fname}")
        return meta

    def collect(self, node: yaml.Node, graph: YamlGraph) -> None:
        for item in self.sequence(node, "collect") or []:
            fields = self.mapping(item, "a collect entry")
            if fields is None:
                continue
            d = {k.value: v for k, v in fields}
            for k, _ in fields:
                if k.value not in ("kind", "pattern"):
                    self.error(
                        k,
                        "unknown field in collect",
                        field=k.value,
                        hint=_did_you_mean(k.value, ["kind", "pattern"]),
                    )
            kind_node = d.get("kind")
            if not isinstance(kind_node, yaml.ScalarNode) or kind_node.tag == _NULL:
                self.error(item, "a collect entry needs a kind", field="kind")
                continue
            if kind_node.value not in self.kinds:
                self.error(
                    kind_node,
                    f"unknown resource kind {kind_node.value!r}",
                    field="kind",
                    hint=_did_you_mean(kind_node.value, self.kinds),
                )
                continue
            pat = d.get("pattern")
            graph.collect.append(
                Collect(
                    kind_node.value,
                    pat.value if isinstance(pat, yaml.ScalarNode) and pat.tag != _NULL else "",
                )
            )

    def edges(self, node: yaml.Node, graph: YamlGraph) -> None:
        for item in self.sequence(node, "edges") or []:
            fields = self.mapping(item, "an edge")
            if fields is None:
                continue
            d = {k.value: v for k, v in fields}
            for k, _ in fields:
                if k.value not in ("name", "from", "to", "notify"):
                    self.error(
                        k,
                        "unknown field in edge",
                        field=k.value,
                        hint=_did_you_mean(k.value, ["name", "from", "to", "notify"]),
                    )
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
                if isinstance(v, yaml.ScalarNode) and v.tag == _BOOL:
                    notify = bool(self._constructor.construct_object(v))
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
                    hint=_did_you_mean(k.value, ["kind", "name"]),
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
        if kind not in self.kinds:
            self.error(
                kind_n,
                f"unknown resource kind {kind_n.value!r}",
                field=f"{end}.kind",
                hint=_did_you_mean(kind, self.kinds),
            )
            return None
        key = (kind, name_n.value)
        if key not in graph.vertices:
            names = [n for (k, n) in graph.vertices if k == kind]
            exported = any(r.key == key for r in graph.exported)
            self.error(
                name_n,
                f"edge '{end}' names {key_str(key)}, which is not in the graph",
                field=f"{end}.name",
                hint="exported resources (@@) cannot have local edges"
                if exported
                else _did_you_mean(name_n.value, names),
            )
            return None
        return key

    def cycles(self, graph: YamlGraph) -> None:
        try:
            toposort(graph.vertices, ((e.src, e.dst) for e in graph.edges))
        except CycleError as e:
            path = " -> ".join(key_str(k) for k in e.cycle)
            first = next(ed for ed in graph.edges if ed.src == e.cycle[0] and ed.dst == e.cycle[1])
            self.errors.append(
                InputError(
                    f"the edges form a cycle: {path}", location=first.location, field="edges"
                )
            )


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


def _is_optional_field(tp: Any) -> bool:
    return tp is not unwrap_optional(tp)


_META_TYPES: dict[str, Any] | None = None


def _meta_types() -> dict[str, Any]:
    global _META_TYPES
    if _META_TYPES is None:
        import typing

        _META_TYPES = typing.get_type_hints(MetaParams)
    return _META_TYPES
