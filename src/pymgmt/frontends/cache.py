"""The parsed graph, kept in the state directory: an unchanged graph is not parsed again.

A one-shot run of an unchanged graph spent most of its time importing
PyYAML and the builder and checking every node again (issue 13; Puppet
caches its catalog for the same reason). After a successful parse, `pymgmt
run` keeps the *declared* graph, every resource's params as they were
checked, in ``<state dir>/graph-cache.json``; the next run with the very
same file reads that instead and builds the resources from it directly.
Compiling (`compile.accept`: AutoEdges, AutoGroup, the graph-wide checks)
still runs on every start, but for its slowest part: a graph whose
AutoEdges follow from the graph alone (no kind in it asks the system, as
pkg asks ``dpkg -L``: `autoedge.from_graph_alone`) keeps the AutoEdges
found in it with the parse, and the next start adds those instead of
searching again (3.6 of 5.5 s of compiling 100,000 files).

The cache is only a faster way to the same graph:

* the key is a SHA-256 over the file's bytes, the name it is shown under,
  pymgmt's version, Python's version and the size and mtime of pymgmt's
  parsing and resource modules (a developer's edit changes it too); any
  difference is a miss, and the file is parsed and the cache replaced;
* the content is JSON of plain values (no pickle: a file in a state
  directory must never be able to run code), and it is used only if it is
  a regular file, reached without following a symlink (``O_NOFOLLOW`` in
  the directory's fd), owned by this user, not writable by group or world,
  in a directory that only this user (or root) may write; otherwise, or if
  it is unreadable, corrupt or stale, it is ignored and replaced;
* it is written after the state directory is locked, once the graph has
  settled or the run stops (`cli.run._ParseKeeper`: the next start needs
  it, this one does not), with a temporary file mode 0600 from its first
  byte, fsync, rename (`fsutil.atomic_write_at`), and
  a graph is stored only if building it back from the JSON gives exactly
  the graph that was parsed; an invalid graph is never stored;
* what a parse says is kept with it: its warnings are shown on a hit too.

``pymgmt run --no-cache`` neither reads nor writes it; ``pymgmt validate``
always parses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import InputError, Location
from ..graph.autoedge import auto_edge, from_graph_alone
from ..graph.model import Collect, Edge, Key
from ..metaparams import MetaParams
from ..resources.base import Resource
from .yamlmodel import YamlGraph

log = logging.getLogger("pymgmt.cache")

#: the file in the state directory
CACHE_NAME = "graph-cache.json"
#: bumped when the layout below changes: an older file is then stale
FORMAT = 2
#: a cache larger than this is not read (a graph file is at most 64 MiB)
_MAX_BYTES = 256 << 20
#: the fields of a YamlGraph this module stores; a graph with others is not stored
_GRAPH_FIELDS = frozenset(
    {
        "name",
        "vertices",
        "edges",
        "locations",
        "source",
        "exported",
        "export_only",
        "collect",
        "warnings",
        "remote",
        "hostname",
        "remotes",
        "header_locations",
        "item_lines",  # each entry's lines: a later live edit re-reads one entry
        "edited_from",  # a live edit's link to the graph before: None once parsed, not stored
    }
)
#: the packages whose code decides what a file declares
_CODE_DIRS = ("", "frontends", "resources", "graph")


def cache_key(text: bytes, source: str) -> str:
    """The SHA-256 of everything a parse depends on (see the module's docstring)."""
    h = hashlib.sha256()
    for part in (f"pymgmt {__version__}", sys.version, source, _code_fingerprint()):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    h.update(text)
    return h.hexdigest()


def _code_fingerprint() -> str:
    """Name, size and mtime of every module that parsing or a resource kind runs."""
    from ..oneshot.plan import code_fingerprint

    return code_fingerprint(_CODE_DIRS)


# -- reading ---------------------------------------------------------------------------


def read(prefix: Path, key: str) -> tuple[YamlGraph, list[Edge] | None] | None:
    """The declared graph stored under `key` in `prefix`, and its AutoEdges if kept.

    None if there is none to trust; the AutoEdges are None when the graph's
    depend on the system (they are searched for again then).

    Never raises for what is found on disk: a missing, foreign, unsafe,
    corrupt or stale file is a miss (said at debug level), and the caller
    parses the graph file.
    """
    data = _read_trusted(prefix)
    if data is None:
        return None
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            log.debug("graph cache: another format: not used")
            return None
        if doc.get("key") != key:
            log.debug("graph cache: made from another file or version: not used")
            return None
        graph = _decode(doc["graph"])
        autoedges = _decode_autoedges(doc["autoedges"], graph)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, ImportError) as e:
        log.debug("graph cache: unreadable (%s): not used", e)
        return None
    log.debug("graph cache: %d resources read from %s", len(graph.vertices), prefix / CACHE_NAME)
    return graph, autoedges


def _read_trusted(prefix: Path) -> bytes | None:
    """The cache file's bytes, if this user alone could have written them (`statedir.read_own`)."""
    from .. import statedir

    try:
        return statedir.read_own(prefix, CACHE_NAME, _MAX_BYTES)
    except statedir.StateFileRefused as e:
        log.debug("graph cache: not used (%s)", e)
        return None


# -- writing ---------------------------------------------------------------------------


def encode(graph: YamlGraph, key: str, autoedges: list[Edge] | None = None) -> bytes | None:
    """The cache file for `graph`, or None when JSON cannot carry it exactly.

    `autoedges`: what compiling `graph` added; kept only if they follow from
    the graph alone (`autoedge.from_graph_alone`).

    Exactly: every param and metaparameter is declared with a type JSON
    keeps as it is (str, int, float, bool, None, Literals of those, and
    lists and str-keyed dicts of them), and resources are plain dataclasses
    built from their params, so the graph read back is the graph parsed
    (tests/cli/test_graph_cache.py checks it for every kind's example). A
    tuple, bytes or a kind defined outside pymgmt (a test's) is not stored.
    """
    pieces = encode_pieces(graph, key, autoedges)
    if pieces is None:
        return None
    try:
        return b"".join(pieces)
    except (TypeError, ValueError):
        return None


def encode_pieces(
    graph: YamlGraph, key: str, autoedges: list[Edge] | None = None
) -> Iterator[bytes] | None:
    """`encode`'s bytes as a lazy sequence of pieces, each a bounded amount of work.

    A running agent stores the cache once its graph has settled, and at
    100,000 resources one ``json.dumps`` of the whole held the GIL for
    0.1-0.4 s: the first drift repair after the start waited for it
    (issue 13). Taken a piece at a time on the event loop, with a yield
    between pieces, no repair waits for more than one piece (~1 ms). The
    bytes joined are exactly ``json.dumps`` of the whole document. A value
    JSON cannot carry raises TypeError or ValueError from the piece that
    meets it: the caller then stores nothing.
    """
    names = {f.name for f in dataclasses.fields(graph)}
    if names != _GRAPH_FIELDS:
        return None  # a field this module does not know: it would be lost
    if graph.export_only:
        return None  # no graph file says it (Puppet's): nothing here to read it back
    for cls in {type(r) for r in graph.vertices.values()}:
        if not _storable(cls):
            return None
    edges = None
    if autoedges is not None and from_graph_alone(graph.vertices.values()):
        edges = ([list(e.src), list(e.dst)] for e in autoedges)
    doc = {"format": FORMAT, "key": key, "graph": _encode(graph), "autoedges": edges}
    return (text.encode() for text in _json_pieces(doc))


#: how many list items one piece of `encode_pieces` encodes (~1 ms for resources)
PIECE_ITEMS = 100


def _json_pieces(value: Any) -> Iterator[str]:
    """``json.dumps(value)`` in pieces; a generator in it stands for a (long) list.

    Small values are encoded whole; a generator's items are encoded
    `PIECE_ITEMS` at a time, with ``json.dumps``'s own separators, so the
    pieces joined are the text ``json.dumps`` gives for the same document
    with lists in place of the generators (tested).
    """
    if isinstance(value, dict):
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            yield f"{', ' if i else ''}{json.dumps(k)}: "
            yield from _json_pieces(v)
        yield "}"
    elif isinstance(value, Iterator):
        yield "["
        sep = ""
        while batch := list(itertools.islice(value, PIECE_ITEMS)):
            yield sep + json.dumps(batch)[1:-1]
            sep = ", "
        yield "]"
    else:
        yield json.dumps(value)


#: kind class -> whether JSON carries its params exactly (computed once each)
_STORABLE: dict[type[Resource], bool] = {}


def _storable(cls: type[Resource]) -> bool:
    known = _STORABLE.get(cls)
    if known is None:
        import typing

        types = [*cls.param_types.values(), *typing.get_type_hints(MetaParams).values()]
        known = cls.__module__.startswith("pymgmt.resources.") and all(map(_exact, types))
        _STORABLE[cls] = known
    return known


def _exact(tp: Any) -> bool:
    """Whether JSON gives back a value of type `tp` as it was (no tuple, bytes, set)."""
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return all(isinstance(a, str | int | bool) for a in args)
    if origin is typing.Union or origin is types.UnionType:
        return all(map(_exact, args))
    if origin is list:
        return _exact(args[0])
    if origin is dict:
        return args[0] is str and _exact(args[1])
    return tp in (str, int, float, bool, type(None))


def write(prefix: Path, data: bytes | list[bytes]) -> None:
    """Store `data` (or its pieces) as the cache of `prefix` (locked by this run).

    A failure is only logged: the next start parses again.
    """
    from .. import fsutil

    try:
        with fsutil.opened_dir(os.path.abspath(prefix)) as dfd:
            fsutil.atomic_write_at(dfd, CACHE_NAME, data, 0o600, None, None)
    except OSError as e:
        log.debug("graph cache: not written (%s)", e.strerror or e)


# -- the layout ------------------------------------------------------------------------


def _loc(loc: Location | None) -> list[Any] | None:
    return None if loc is None else [loc.file, loc.line, loc.column]


def _unloc(v: Any) -> Location | None:
    if v is None:
        return None
    file, line, column = v
    return Location(str(file), int(line), int(column))


def _key(k: Any) -> Key:
    kind, name = k
    return (str(kind), str(name))


def _encode(g: YamlGraph) -> dict[str, Any]:
    """The graph's layout; its long lists are generators (`_json_pieces` writes them)."""
    default = MetaParams()  # most resources keep every default: no need to list them
    return {
        "name": g.name,
        "source": g.source,
        "resources": (
            [
                type(r).__module__,
                r.kind,
                r.name,
                r.params(),
                {} if r.meta == default else r.meta.non_default(),
                _loc(g.locations.get(k)),
            ]
            for k, r in g.vertices.items()
        ),
        "exported": (list(k) for k in g.exported),
        "edges": (
            [list(e.src), list(e.dst), e.name, e.notify, _loc(e.location), e.send, e.recv, e.auto]
            for e in g.edges
        ),
        "collect": [
            [c.kind, c.pattern, c.mode, list(c.owners), list(c.groups), _loc(c.location)]
            for c in g.collect
        ],
        "warnings": [[w.message, _loc(w.location), w.field, w.hint] for w in g.warnings],
        "remote": g.remote,
        "hostname": g.hostname,
        "remotes": g.remotes,
        "header_locations": {k: _loc(v) for k, v in g.header_locations.items()},
        "item_lines": ([*k, *span] for k, span in g.item_lines.items()),
    }


def _decode(d: dict[str, Any]) -> YamlGraph:
    g = YamlGraph(name=str(d["name"]), source=str(d["source"]))
    classes: dict[tuple[str, str], type[Resource]] = {}
    for module, kind, name, params, meta, loc in d["resources"]:
        cls = classes.get((module, kind))
        if cls is None:
            cls = classes[module, kind] = _kind_class(module, kind)
        g.add(cls(name=name, meta=MetaParams(**meta), **params), _unloc(loc))
    g.exported = {_key(k) for k in d["exported"]}
    for src, dst, name, notify, loc, send, recv, auto in d["edges"]:
        g.connect(Edge(_key(src), _key(dst), name, notify, _unloc(loc), send, recv, auto))
    for kind, pattern, mode, owners, groups, loc in d["collect"]:
        g.collect.append(Collect(kind, pattern, mode, tuple(owners), tuple(groups), _unloc(loc)))
    g.warnings = [
        InputError(message, location=_unloc(loc), field=field, hint=hint)
        for message, loc, field, hint in d["warnings"]
    ]
    g.remote, g.hostname, g.remotes = d["remote"], d["hostname"], list(d["remotes"])
    g.header_locations = {
        str(k): loc for k, v in d["header_locations"].items() if (loc := _unloc(v))
    }
    g.item_lines = {
        (str(kind), str(name)): (int(a), int(b), int(c))
        for kind, name, a, b, c in d.get("item_lines", [])
    }
    return g


def _decode_autoedges(data: Any, graph: YamlGraph) -> list[Edge] | None:
    """The kept AutoEdges, each between two vertices of `graph` (else the file is corrupt)."""
    if data is None:
        return None
    edges = []
    for src, dst in data:
        a, b = _key(src), _key(dst)
        if a not in graph.vertices or b not in graph.vertices:
            raise ValueError(f"an AutoEdge names no vertex of the graph: {a} -> {b}")
        edges.append(auto_edge(a, b))
    return edges


def _kind_class(module: str, kind: str) -> type[Resource]:
    """The class of `kind`, importing only its own module (of pymgmt's resource kinds).

    Importing every kind costs 10 ms; a graph of files needs one.
    """
    import importlib

    package, _, leaf = module.rpartition(".")
    if package != "pymgmt.resources" or not leaf.isidentifier():
        raise ValueError(f"not a module of pymgmt's resource kinds: {module!r}")
    mod = importlib.import_module(module)
    for value in vars(mod).values():
        if isinstance(value, type) and issubclass(value, Resource) and value.kind == kind:
            return value
    raise ValueError(f"{module} defines no kind {kind!r}")
