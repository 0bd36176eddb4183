"""A live edit of one resource, re-read without reading the whole graph file again.

Saving a 10k-resource graph file used to mean reading all of it again (1 s
of YAML and building, every save) and compiling all of it (another second)
before the one changed file was touched (issue 13). Most live edits change a
value or two inside one resource's entry. `redeclare` finds the lines that
changed, and when they all lie inside one resource's entry, reads only that
entry (libyaml on those lines, at their own line numbers, so every location
is what a full read says) and builds the new graph from the old one with that
one resource replaced. The graph says which resource it was
(`Graph.edited_from`), so the Engine recompiles only that vertex
(`compile.recompile`).

Whenever that could differ from reading the whole file, it does not guess:
it returns None and the caller reads the file in full. That is the case for
an edit that adds or removes lines, spans two entries or touches anything
outside the resources, for YAML anchors, aliases and merge keys (an entry
may then depend on others), for an entry that now reads as anything but
one mapping, for a resource that changed its name, and for any error or
warning (the full read reports every problem of the file at once).
"""

from __future__ import annotations

import copy
import re

import yaml

from ..errors import InputError
from ..graph.model import Key
from .yamlbuild import _Builder
from .yamlmodel import YamlGraph
from .yamlsyntax import compose

#: anchors, aliases and merge keys tie entries together: never re-read alone
_LINKED = re.compile(rb"[&*]|<<")
#: what may stand before an entry's mapping on its first line: "  - "
_ENTRY_START = re.compile(rb"\s*-\s+")


def redeclare(old_text: bytes, new_text: bytes, old: YamlGraph) -> YamlGraph | None:
    """`new_text`'s declared graph made from `old` (`old_text`'s), or None: read it all."""
    if old.warnings:
        return None  # a full read placed them; which of them still hold is its business
    a, b = old_text.split(b"\n"), new_text.split(b"\n")
    if len(a) != len(b):
        return None
    changed = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if not changed:
        return None
    found = _entry_of(old, changed[0], changed[-1])
    if found is None:
        return None
    key, (first, last, column) = found
    if any(_LINKED.search(x) for x in (*a[first : last + 1], *b[first : last + 1])):
        return None
    if not all(_ENTRY_START.fullmatch(t[first][:column]) for t in (a, b)):
        return None
    return _rebuilt(old, key, b, first, last)


def _entry_of(old: YamlGraph, lo: int, hi: int) -> tuple[Key, tuple[int, int, int]] | None:
    """The resource whose entry holds lines `lo` to `hi`, if one does."""
    for key, span in old.item_lines.items():
        if span[0] <= lo and hi <= span[1]:
            return key, span
    return None


def _rebuilt(
    old: YamlGraph, key: Key, lines: list[bytes], first: int, last: int
) -> YamlGraph | None:
    """`old` with the resource `key` built again from `lines[first:last+1]`."""
    # Blank lines in front keep libyaml's line numbers those of the file.
    fragment = b"\n" * first + b"\n".join(lines[first : last + 1]) + b"\n"
    try:
        root = compose(fragment, old.source)
    except InputError:
        return None
    if not (isinstance(root, yaml.SequenceNode) and len(root.value) == 1):
        return None
    item = root.value[0]
    if not isinstance(item, yaml.MappingNode):
        return None
    builder = _Builder(old.source)
    cls = builder.kinds.get(key[0])
    if cls is None:
        return None
    built = builder.resource(cls, item)
    if built is None or builder.errors or builder.warnings:
        return None
    res, exported = built
    if res.key != key or exported != (key in old.exported):
        return None
    new = copy.copy(old)
    new.vertices = dict(old.vertices)
    new.vertices[key] = res
    new.locations = dict(old.locations)
    new.locations[key] = builder.loc(item)
    new.edges = list(old.edges)
    new.exported = set(old.exported)
    new.collect = list(old.collect)
    new.warnings = []
    new.edited_from = (old, key)
    return new
