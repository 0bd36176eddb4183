"""A translation as a declared pymgmt graph, checked like any frontend's.

Each resource keeps the manifest's file and line as its location, so a
value pymgmt refuses (a package name, an owner that does not parse) is
reported where the Puppet code says it, not in a YAML file nobody wrote.
Exported resources and collectors become the graph's ``exported`` keys and
``collect`` entries, as YAML's ``@@`` and ``collect:`` do.
"""

from __future__ import annotations

from ...errors import InputError, InputErrors, Location
from ...graph.model import Edge, Graph
from ...metaparams import MetaParams
from ...resources.base import Resource, kinds
from ..api import check_declared
from .translate import Translation


def declared_graph(tr: Translation) -> Graph[Resource]:
    """The declared graph of `tr`; InputErrors for what it could not translate or check."""
    errors: list[InputError] = [
        u.error() for u in tr.unsupported if not u.ignored and not _stood_in(tr, u.ref)
    ]
    errors += tr.errors
    if errors:
        raise InputErrors(errors)
    graph: Graph[Resource] = Graph(name=tr.name, source=tr.source)
    registry = kinds()
    for t in tr.resources:
        where = t.origin.location or Location(tr.source)
        try:
            res = registry[t.kind](name=t.name, meta=MetaParams(**t.meta), **t.params)
        except (TypeError, ValueError) as e:
            errors.append(InputError(f"{t.origin.ref}: {e}", location=where))
            continue
        if t.export_only:
            errors += [
                InputError(f"{t.origin.ref}: {field}: {msg}", location=where)
                for field, msg in res.problems()
            ]
            graph.export_only.append(res)  # published for the others, never applied here
            continue
        graph.add(res, where)
        if t.exported:
            graph.exported.add(res.key)
    graph.collect = list(tr.collect)
    for rel in tr.edges:
        graph.connect(Edge(rel.src, rel.dst, rel.why, rel.notify, None, "", ""))
    if errors:
        raise InputErrors(errors)
    graph.warnings = list(tr.notes)
    checked = check_declared(graph, Location(tr.source))
    checked.warnings = list(tr.notes) + checked.warnings
    return checked


def _stood_in(tr: Translation, ref: str) -> bool:
    return any(t.stand_in and t.origin.ref == ref for t in tr.resources)


__all__ = ["declared_graph"]
