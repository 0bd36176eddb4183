"""From a declared graph to the graph the engine runs: the one validation path.

Frontends check what they can see one piece at a time (each resource's
fields, each edge's ends, each metaparameter) and yield a *declared* graph.
`accept` does everything that needs the whole graph: semaphore sizes that
disagree, cycles (also those only AutoEdges create), Send/Recv types,
AutoEdges and AutoGroup. The Engine calls it for every graph it receives (in
a thread: AutoEdges may run dpkg-query), and so do ``pymgmt validate`` and
``pymgmt run`` before touching anything, so a graph is refused the same way
whichever way it was written or whenever it arrives; resources collected
from other hosts go through it too.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from ..errors import InputError, InputErrors, Location
from ..graph.autoedge import add_autoedges
from ..graph.autogroup import AutoGrouper, NonReachabilityGrouper, apply_groups
from ..graph.model import Edge, Graph, Key, key_str
from ..graph.toposort import CycleError, check_acyclic
from ..metaparams import sema_size_conflicts
from ..resources.base import Resource
from ..traits import Edgeable, Groupable, has
from ..types import describe, suggest, unwrap_optional

log = logging.getLogger("pymgmt.compile")


@dataclass
class Compiled:
    graph: Graph[Resource]
    autoedges: list[Edge] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)
    #: accepted, but worth telling the user (identical duplicates merged)
    warnings: list[InputError] = field(default_factory=list)
    #: the declared graph this was compiled from (`accept` sets it); the
    #: Engine compiles that very object no second time
    declared: Graph[Resource] | None = None
    #: the kinds resources of the graph learnt from (`teach`)
    learnt_from: frozenset[str] = frozenset()


def accept(
    declared: Graph[Resource],
    grouper: AutoGrouper | None = None,
    *,
    autoedges: Sequence[Edge] | None = None,
) -> Compiled:
    """The graph-wide checks, then `compile_graph`: the runnable graph, or InputError(s).

    `declared` is left as it was. Every problem is reported in one go, not
    stage by stage: a cycle, a semaphore of two sizes, two resources fighting
    over one file and a bad Send/Recv edge all come out together. Its own
    warnings (those the frontend found per resource) and compiling's are
    logged once, in file order, and kept on the compiled graph's `warnings`.

    `autoedges`: the AutoEdges an earlier compile of this very graph added,
    kept with its parse (frontends/cache.py, only for a graph whose AutoEdges
    follow from the graph alone): added as they are instead of searched for
    again, which was most of compiling 100,000 files (35 us a file).
    """
    errors: list[InputError] = []
    compiled = _checked_compile(declared, grouper, errors, autoedges)
    if compiled is None:
        raise InputErrors(errors)
    warnings = sorted([*declared.warnings, *compiled.warnings], key=lambda w: _line_col(w.location))
    compiled.graph.warnings = warnings
    compiled.declared = declared
    for w in warnings:
        log.warning("warning: %s", w)
    return compiled


def problems(declared: Graph[Resource]) -> list[InputError]:
    """Every graph-wide problem of `declared`; empty when it compiles.

    The YAML frontend runs this on the resources and edges that were valid
    on their own when others were not, so ``pymgmt validate`` lists a cycle
    together with a misspelt field, not after it has been fixed. Checking
    only what is valid never invents a problem: a refused resource and its
    edges are absent, so they can only hide one.
    """
    errors: list[InputError] = []
    _checked_compile(declared, None, errors, None)
    return errors


def _checked_compile(
    declared: Graph[Resource],
    grouper: AutoGrouper | None,
    errors: list[InputError],
    autoedges: Sequence[Edge] | None,
) -> Compiled | None:
    """`compile_graph` after the checks of the declared graph; problems go to `errors`."""
    cycles = _explicit_cycle(declared)
    errors += cycles
    errors += _sema_conflicts(declared)
    try:
        # an explicit cycle is named at its edges above: not a second time
        compiled = _compile(declared, grouper, errors, cycles=not cycles, autoedges=autoedges)
    except InputError as e:  # AutoGroup and AutoEdges refuse a graph on their own
        errors += e.errors if isinstance(e, InputErrors) else [e]
        return None
    return None if errors else compiled


def _explicit_cycle(graph: Graph[Resource]) -> list[InputError]:
    """A cycle of the user's own edges, reported at the edge written first in the file.

    Edges without a location (the Python API's) are left to `compile_graph`,
    whose message names them by their ends instead of their lines.
    """
    try:
        check_acyclic(graph.vertices, ((e.src, e.dst) for e in graph.edges))
    except CycleError as e:
        loop = e.cycle[:-1]
        by_ends: dict[tuple[Key, Key], Edge] = {}
        for ed in graph.edges:
            by_ends.setdefault((ed.src, ed.dst), ed)
        on_loop = [by_ends[a, b] for a, b in zip(loop, [*loop[1:], loop[0]], strict=True)]
        if any(ed.location is None for ed in on_loop):
            return [cycle_error(graph, e.cycle)]
        first = min(range(len(loop)), key=lambda i: _line_col(on_loop[i].location))
        loop = loop[first:] + loop[:first]
        on_loop = on_loop[first:] + on_loop[:first]
        path = " -> ".join(key_str(k) for k in [*loop, loop[0]])
        lines = ", ".join(str(_line_col(ed.location)[0]) for ed in on_loop)
        return [
            InputError(
                f"the edges form a cycle: {path}",
                location=on_loop[0].location,
                field="edges",
                hint=f"edges at lines {lines}: remove one to break the cycle",
            )
        ]
    return []


def _sema_conflicts(graph: Graph[Resource]) -> list[InputError]:
    """One semaphore id declared with two sizes: at the resource, or named without a file."""
    # only resources that name a semaphore can disagree (naming each cost 100k files 0.3 s)
    owners = {key_str(k): k for k, r in graph.vertices.items() if r.meta.sema}
    metas = ((owner, graph.vertices[k].meta) for owner, k in owners.items())
    out: list[InputError] = []
    for owner, msg in sema_size_conflicts(metas):
        loc = graph.locations.get(owners[owner])
        if loc is None:
            out.append(
                InputError(f"{owner}: {msg}", location=Location(graph.source), field="meta.sema")
            )
        else:
            out.append(InputError(msg, location=loc, field="meta.sema"))
    return out


def compile_graph(declared: Graph[Resource], grouper: AutoGrouper | None = None) -> Compiled:
    """AutoEdges, a DAG check, Send/Recv type checks, then AutoGroup.

    Pure: `declared` is left exactly as it was (STYLE 11). The result holds
    fresh copies of its resources, and every piece of runtime state (received
    params, taint, group members, a group's merged meta) lives on those
    copies, so the same declarations compile to the same graph every time.
    Raises InputErrors, with every problem found, before anything runs.
    """
    errors: list[InputError] = []
    compiled = _compile(declared, grouper, errors, cycles=True)
    if errors:
        raise InputErrors(errors)
    return compiled


def _compile(
    declared: Graph[Resource],
    grouper: AutoGrouper | None,
    errors: list[InputError],
    *,
    cycles: bool,
    autoedges: Sequence[Edge] | None = None,
) -> Compiled:
    """`compile_graph`, adding its problems to `errors` instead of raising at the first.

    `cycles`: report a cycle (False when the user's own edges are already
    known to form one, so that it is not named twice). `autoedges`: as `accept`.
    """
    graph = instantiate(declared)
    warnings = merge_duplicates(graph, errors)
    learnt_from = teach(graph)
    spare_managed(graph)
    errors += read_loops(graph)
    errors += sendrecv_problems(graph)
    errors += export_problems(graph)
    if autoedges is None:
        added = add_autoedges(graph, lambda r: r.meta.autoedge)
    else:
        added = list(autoedges)
        graph.edges += added
    try:
        check_acyclic(graph.vertices, ((e.src, e.dst) for e in graph.edges))
    except CycleError as c:
        if cycles:
            errors.append(cycle_error(graph, c.cycle))
    if errors:  # nothing further is worth computing: the graph will not run
        return Compiled(graph, added, [], warnings, learnt_from=learnt_from)
    for e in added:
        log.info("%s", autoedge_message(e))
    grouper = grouper or NonReachabilityGrouper()
    exported = graph.exported

    def may_group(a: Resource, b: Resource) -> bool:
        # An exported resource is published as declared: it stays a vertex of its own.
        return a.key not in exported and b.key not in exported and _may_group(a, b)

    groups = grouper.groups(graph, may_group)
    for members in groups:
        for m in members[1:]:
            log.info("Grouping: Success for: %s into %s", key_str(m), key_str(members[0]))
    if groups:
        graph = apply_groups(graph, groups, _merge)
    groups_shown = [[key_str(m) for m in g] for g in groups]
    return Compiled(graph, added, groups_shown, warnings, learnt_from=learnt_from)


def autoedge_message(e: Edge) -> str:
    """The line that tells of an AutoEdge (a one-shot plan keeps it to say it again)."""
    return f"Adding AutoEdge: {key_str(e.src)} -> {key_str(e.dst)}"


def instantiate(declared: Graph[Resource]) -> Graph[Resource]:
    """A new graph of fresh resource objects, with no runtime state yet.

    Copies are shallow: params are only ever replaced (Send/Recv assigns,
    AutoGroup swaps `meta`), never changed in place, so sharing them is safe.
    """
    out = declared.derive({})
    for key, res in declared.vertices.items():
        out.vertices[key] = _fresh(res)
    return out


def teach(graph: Graph[Resource]) -> frozenset[str]:
    """Let each resource of a kind with `learns_from` learn what it needs of the others.

    Returns the kinds learnt from: an edit of a resource of one of them must
    be compiled whole (`recompile`), or a learner would keep a stale fact.
    """
    learners = {cls for cls in {type(r) for r in graph.vertices.values()} if cls.learns_from}
    if not learners:
        return frozenset()
    for res in graph.vertices.values():
        if type(res) in learners:
            res.learn(graph.vertices)
    return frozenset().union(*(cls.learns_from for cls in learners))


def _fresh(res: Resource) -> Resource:
    fresh = object.__new__(type(res))  # copy.copy, without its reduce protocol (3x)
    fresh.__dict__.update(res.__dict__)
    fresh.members = []
    fresh.recv_fields = frozenset()
    fresh.tainted = frozenset()
    fresh.spares = frozenset()
    return fresh


def recompile(prev: Compiled, declared: Graph[Resource]) -> Compiled | None:
    """`accept(declared)` for an edit of one resource's params, from `prev`; None: accept it all.

    `declared.edited_from` says which graph it edits and which resource
    changed (`frontends.yamledit`). If that graph is the one `prev` was
    compiled from, and nothing compiling looks at changed (what the resource
    manages, its AutoEdges, its meta, Send/Recv and grouping, its export),
    the compiled graph is `prev`'s with that one vertex fresh: every graph-wide
    check would find what it found before. The other vertices are `prev`'s
    very objects, so a changeover keeps their workers without comparing them.
    """
    edit = declared.edited_from
    if edit is None or prev.declared is not edit[0]:
        return None
    key = edit[1]
    old, new = edit[0].vertices.get(key), declared.vertices.get(key)
    running = prev.graph.vertices.get(key)
    if old is None or new is None or running is None or running.members:
        return None  # unknown, or grouped (into another vertex, or leading a group)
    if not _compiles_alike(old, new) or key in declared.exported:
        return None
    if type(new).learns_from or new.kind in prev.learnt_from:
        return None  # what it learns, or what others learn of it, may have moved
    if any(e.send or e.recv for e in declared.edges if key in (e.src, e.dst)):
        return None
    if declared.warnings or prev.warnings or prev.graph.warnings:
        return None
    graph = prev.graph.derive()
    graph.vertices[key] = fresh = _fresh(new)
    fresh.spares = running.spares  # what the graph manages inside it did not change
    location = declared.locations.get(key)
    if location is not None:
        graph.locations[key] = location
    out = Compiled(graph, prev.autoedges, prev.groups, [], learnt_from=prev.learnt_from)
    out.declared = declared
    return out


def _compiles_alike(a: Resource, b: Resource) -> bool:
    """Whether compiling sees no difference between `a` and `b` (same key assumed)."""
    if type(a) is not type(b) or a.meta != b.meta or a.manages() != b.manages():
        return False
    if a.trees() != b.trees():
        return False  # what it spares is computed for trees only (`spare_managed`)
    if has(a, Groupable):
        return False  # whether it may join a group can depend on any param
    if has(a, Edgeable):
        assert has(b, Edgeable)
        if a.uids() != b.uids() or list(a.wants()) != list(b.wants()):
            return False
    return True


def spare_managed(graph: Graph[Resource]) -> None:
    """Tell each tree (`Resource.trees`) what other resources of its kind manage inside it.

    A directory that purges (or copies a source) leaves those paths to
    their own resources, and walks into their ancestors to purge around
    them: mgmt's and Puppet's ``purge``, where a file resource inside a
    purged directory is spared. The set is the graph's, not the tree's
    params, so it is set on the compiled vertex and
    compared at a changeover (`Resource.same_as`): a graph edit that adds
    or removes a managed file inside restarts the tree's vertex, and a file
    whose resource left the graph is then purged, as Puppet does. A path
    that is itself a tree is spelt with ``/**`` after it (`Resource.reads`'
    spelling): everything below it is that tree's, where below a plain
    directory resource the purge goes on.
    """
    trees: dict[str, list[tuple[str, Key]]] = {}  # kind -> (directory + "/", owner)
    for key, res in graph.vertices.items():
        for d in res.trees():
            trees.setdefault(res.kind, []).append((d.rstrip("/") + "/", key))
    if not trees:
        return
    found: dict[Key, set[str]] = {owner: set() for dirs in trees.values() for _, owner in dirs}
    for key, res in graph.vertices.items():
        dirs = trees.get(res.kind)
        if not dirs:
            continue
        own_trees = res.trees()
        for thing in res.manages():
            for d, owner in dirs:
                if owner != key and thing.startswith(d):
                    found[owner].add(f"{thing}/**" if thing in own_trees else thing)
    for owner, spared in found.items():
        graph.vertices[owner].spares = frozenset(spared)


def read_loops(graph: Graph[Resource]) -> list[InputError]:
    """Refuse resources that build themselves from each other's output, round and round.

    Two files each made of fragments that include the other's file (``a``
    from the directory ``b`` is in, ``b`` from ``a``'s) grow at every round:
    each write is the other's fragment event. Read it as an edge from what
    is read to the reader (`Resource.reads`); a cycle of them never settles.
    """
    patterns = {key: res.reads() for key, res in graph.vertices.items()}
    if not any(patterns.values()):
        return []  # the usual graph: nothing is indexed
    by_path: dict[tuple[str, str], Key] = {}
    by_parent: dict[tuple[str, str], list[tuple[str, Key]]] = {}
    trees = [
        (res.kind, t.rstrip("/") + "/", key)
        for key, res in graph.vertices.items()
        for t in res.trees()
    ]
    for key, res in graph.vertices.items():
        for thing in res.manages():
            by_path[res.kind, thing] = key
            by_parent.setdefault((res.kind, thing.rpartition("/")[0] + "/"), []).append(
                (thing, key)
            )
    edges: list[tuple[Key, Key]] = []
    for key, reads in patterns.items():
        kind = graph.vertices[key].kind
        for pattern in reads:
            if pattern.endswith("/**"):  # a tree: rare, a scan
                top = pattern[:-2]
                edges += [
                    (k, key) for (kd, t), k in by_path.items() if kd == kind and t.startswith(top)
                ]
            elif pattern.endswith("/"):
                edges += [(k, key) for _, k in by_parent.get((kind, pattern), [])]
            elif (owner := by_path.get((kind, pattern))) is not None:
                edges.append((owner, key))
            # what a tree copy makes below its directory
            inside = pattern.removesuffix("**")
            edges += [(k, key) for kd, top, k in trees if kd == kind and inside.startswith(top)]
    try:
        check_acyclic(graph.vertices, edges)
    except CycleError as c:
        first = min(c.cycle, key=lambda k: _line_col(graph.locations.get(k)))
        loop = c.cycle[:-1] if c.cycle[0] == c.cycle[-1] else c.cycle
        at = loop.index(first)
        path = " -> ".join(key_str(k) for k in [*loop[at:], *loop[:at], first])
        return [
            InputError(
                f"{key_str(first)} is built from what it makes, through {path}: each write "
                "would rebuild the next one for ever (a fragment or source that includes "
                "the file reading it)",
                location=_where(graph, first),
            )
        ]
    return []


def merge_duplicates(graph: Graph[Resource], errors: list[InputError]) -> list[InputError]:
    """Refuse two resources that manage one thing; merge identical ones (in place).

    Two file resources with one path and different content would rewrite the
    file in turn for ever, each converging the other away (issue 8, item 12).
    Identical ones are harmless and mgmt collapses them: the later one is
    dropped and its edges move to the first. Returns the warnings for merges;
    the refusals are added to `errors` (and then nothing is merged).
    """
    first: dict[tuple[str, str], Key] = {}
    errors_before = len(errors)
    warnings: list[InputError] = []
    merged: dict[Key, Key] = {}
    for key, res in graph.vertices.items():
        for thing in res.manages():
            seen = first.setdefault((res.kind, thing), key)
            if seen == key or key in merged:
                continue
            other = graph.vertices[seen]
            where = _where(graph, key)
            there = _where(graph, seen)
            at = f" at line {there.line}" if there and there.line else ""
            mine, theirs = res.params(), other.params()
            differ = [f for f in mine if mine[f] != theirs.get(f)]
            if res.meta != other.meta:
                differ.append("meta")
            if not differ:
                merged[key] = seen
                warnings.append(
                    InputError(
                        f"{res} manages {thing!r} exactly as {other}{at} does: merged into it",
                        location=where,
                    )
                )
                continue
            errors.append(
                InputError(
                    # field names only: the values may be secrets
                    f"{res} manages {thing!r}, and so does {other}{at}, with another "
                    + ", ".join(differ),
                    location=where,
                    hint="two resources that want different things of one "
                    f"{_THING.get(res.kind, 'thing')} would undo each other for ever: keep one",
                )
            )
    if len(errors) > errors_before:
        return warnings
    if merged:
        graph.exported = {merged.get(k, k) for k in graph.exported}
        for key in merged:
            del graph.vertices[key]
            graph.locations.pop(key, None)
        edges: dict[Edge, None] = {}  # ordered, and parallel twins collapse
        for e in graph.edges:
            src, dst = merged.get(e.src, e.src), merged.get(e.dst, e.dst)
            if src != dst:  # an edge between two identical twins orders nothing
                edges.setdefault(dataclasses.replace(e, src=src, dst=dst))
        graph.edges = list(edges)
    return warnings


#: what one resource of a kind manages, for messages
_THING = {"file": "path", "pkg": "package", "svc": "unit"}


def _where(graph: Graph[Resource], key: Key) -> Location | None:
    loc = graph.locations.get(key)
    if loc is None and graph.source:
        loc = Location(graph.source)
    return loc


def cycle_error(graph: Graph[Resource], cycle: list[Key]) -> InputError:
    """A cycle, naming every edge on it: the user's with their lines, the automatic ones.

    An explicit edge against an automatic one (a file before its own
    directory) is the usual case: both are named, so the user sees which of
    their edges fights which ordering pymgmt added (issue 8, item 6).
    """
    hops = list(itertools.pairwise(cycle))
    by_ends: dict[tuple[Key, Key], Edge] = {}
    for e in graph.edges:
        by_ends.setdefault((e.src, e.dst), e)
    on_loop = [by_ends[h] for h in hops]
    path = " -> ".join(key_str(k) for k in cycle)
    mine = [e for e in on_loop if not e.auto]
    auto = [e for e in on_loop if e.auto]
    located = [e.location for e in mine if e.location is not None]
    where = min(located, key=_line_col) if located else None
    if where is None and graph.source:
        where = Location(graph.source)
    if not auto:
        hint = f"{_describe_edges(mine)}: remove one to break the cycle"
    else:
        a = auto[0]
        fix = f"set 'meta: {{autoedge: false}}' on {key_str(a.src)} or {key_str(a.dst)}"
        if mine:
            fix = f"remove {_describe_edges(mine, short=True)}, or {fix}"
        hint = f"{_describe_edges(on_loop)}: {fix}"
    return InputError(
        f"the edges form a cycle: {path}",
        location=where,
        field="edges",
        hint=hint,
    )


def _describe_edges(edges: list[Edge], *, short: bool = False) -> str:
    """``edge 'e1' at line 8 is A -> B; the automatic edge is B -> A`` (short: names only)."""
    parts = []
    for e in edges:
        if e.auto:
            what = "the automatic edge"
        else:
            what = f"edge {e.name!r}" if e.name else "the edge"
            if e.location is not None and e.location.line:
                what += f" at line {e.location.line}"
        parts.append(what if short else f"{what} is {key_str(e.src)} -> {key_str(e.dst)}")
    return (" or " if short else "; ").join(parts)


def _line_col(location: Location | None) -> tuple[int, int]:
    return (location.line, location.column) if location else (0, 0)


def _may_group(a: Resource, b: Resource) -> bool:
    if a is b:
        return a.meta.autogroup and has(a, Groupable)
    if type(a) is not type(b) or not (a.meta.autogroup and b.meta.autogroup):
        return False
    return has(a, Groupable) and a.can_group(b)


def _merge(leader: Resource, others: list[Resource]) -> Resource:
    leader.absorb(others)
    # A group holds every semaphore any member asked for (mgmt's rule).
    sema = sorted({s for r in (leader, *others) for s in r.meta.sema})
    leader.meta = dataclasses.replace(leader.meta, sema=sema)
    return leader


def sendrecv_problems(graph: Graph[Resource]) -> list[InputError]:
    """Every send/recv edge names a real output and a param of the same type.

    Marks what each valid edge carries on the receiving resource (received
    and tainted params); returns a problem per bad edge.
    """
    errors: list[InputError] = []
    for e in graph.edges:
        if not (e.send or e.recv):
            continue
        where = e.location or Location(graph.source)
        if not (e.send and e.recv):
            errors.append(
                InputError(
                    "an edge needs both 'send' and 'recv'",
                    location=where,
                    field="recv" if e.send else "send",
                )
            )
            continue
        src, dst = graph.vertices[e.src], graph.vertices[e.dst]
        outputs = src.outputs
        if e.send not in outputs:
            have = ", ".join(sorted(outputs)) or "nothing"
            hint = suggest(e.send, outputs)
            errors.append(
                InputError(
                    f"{src} sends no value named {e.send!r} (it sends: {have})",
                    location=where,
                    field="send",
                    hint=f"did you mean {hint!r}?" if hint else None,
                )
            )
            continue
        name, dot, key = e.recv.partition(".")
        if dot:
            bad = _keyed_recv_problem(dst, name, key)
            if bad:
                errors.append(InputError(bad, location=where, field="recv"))
                continue
        elif e.recv not in dst.param_types:
            hint = suggest(e.recv, dst.param_types)
            errors.append(
                InputError(
                    f"{dst} has no param named {e.recv!r}",
                    location=where,
                    field="recv",
                    hint=f"did you mean {hint!r}?" if hint else None,
                )
            )
            continue
        want, got = _recv_type(dst, name, bool(dot)), outputs[e.send]
        if want != got:
            errors.append(
                InputError(
                    f"type mismatch: {src}.{e.send} is {describe(got)} but {dst}.{e.recv} "
                    f"expects {describe(want)}",
                    location=where,
                    field="recv",
                )
            )
            continue
        dst.recv_fields = dst.recv_fields | {e.recv}
        if e.send in src.secret_outputs:
            # A secret in one key makes the whole mapping secret (vars.NAME -> vars).
            dst.tainted = dst.tainted | {e.recv, name}
    return errors


def export_problems(graph: Graph[Resource]) -> list[InputError]:
    """Every exported resource can be published as other hosts will collect it.

    Run after `sendrecv_problems`, which marks what each resource receives:
    an exported file's template is rendered here for export, without them.
    """
    errors: list[InputError] = []
    exported = [graph.vertices[k] for k in sorted(graph.exported) if k in graph.vertices]
    for res in (*exported, *graph.export_only):
        bad = res.export_problem()
        if bad:
            where = graph.locations.get(res.key) or Location(graph.source)
            errors.append(InputError(f"{res}: {bad[1]}", location=where, field=bad[0]))
    return errors


def _keyed_recv_problem(dst: Resource, name: str, key: str) -> str | None:
    """Why ``recv: NAME.KEY`` cannot receive into `dst`, or None.

    Only the mapping params a kind lists in `recv_keyed` take one key over
    Send/Recv (a file's ``vars``), and the key must be a name a template
    can use.
    """
    if name not in dst.recv_keyed:
        keyed = ", ".join(f"'{n}.NAME'" for n in sorted(dst.recv_keyed))
        if keyed:
            why = f"a dotted recv names one key of a mapping param, and {dst.kind} has {keyed}"
        else:
            why = (
                f"no param of {dst.kind} takes one key over Send/Recv"
                " (a dotted recv is for a file's 'vars.NAME')"
            )
        return f"{dst} cannot receive into {name + '.' + key!r}: {why}"
    if not key.isidentifier():
        return (
            f"{dst} cannot receive into {name + '.' + key!r}: after {name + '.'!r} comes a"
            " variable name (letters, digits and '_', not starting with a digit)"
        )
    return None


def _recv_type(dst: Resource, name: str, keyed: bool) -> Any:
    """The type a received value must have: the param's, or its mapping's values'."""
    tp = unwrap_optional(dst.param_types[name])
    return get_args(tp)[1] if keyed else tp
