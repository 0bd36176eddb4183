"""The one-shot plan: what a fast path needs to know of a graph, kept in the state directory.

A full run that was asked in a form the fast path understands stores, next
to the parse cache, ``<state dir>/oneshot-plan``: for a graph made of files
alone, each file's wanted state (path, type, content, mode, owner, group)
as the compiler left it, the graph's name, size and source, and the lines
compiling it wrote (its AutoEdges). The fast path reads it back without
PyYAML, the compiler or the resource classes.

It is `marshal` of plain values (str, bytes, int, bool, None, tuples and
lists of them), not JSON: `json` imports `re`, which costs the fast path
more than its whole check of ten files. marshal is not meant for data an
attacker wrote, so the plan is read under the very rules of the parse cache
(frontends/cache.py): a regular file reached without following a symlink,
owned by this user and writable by nobody else, in a directory only this
user (or root) may write; its shape is checked before any value is used.
Whoever can write there could already rewrite the agent's lock and stored
secrets.

The key is a BLAKE2b over the graph file's bytes and shown name, pymgmt's
and Python's versions, and the size and mtime of every module whose code
decides the plan or the lines the fast path writes (`code_fingerprint`);
anything else is a miss, and the full run stores a new plan.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys

from .._version import __version__
from ..safepath import read_regular

TYPE_CHECKING = False  # typing, pathlib and the compiler cost the fast path its budget
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from ..frontends.compile import Compiled
    from ..metaparams import MetaParams

#: the file in the state directory
PLAN_NAME = "oneshot-plan"
#: bumped when the layout changes: an older plan is then a miss
FORMAT = 3
#: a plan larger than this is not read
_MAX_BYTES = 256 << 20
#: the subpackages whose code decides what a plan holds or what the fast path writes
CODE_DIRS = ("", "frontends", "resources", "graph", "oneshot", "report", "cli")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: one file of the plan: (path, is_dir, absent, content, mode, owner, group); None: unmanaged
FileWant = tuple[str, bool, bool, bytes | None, int | None, str | None, str | None]
#: one exec: (cmd, argv, shown, cwd, env pairs, timeout, creates, ifcmd argv, its shown)
ExecWant = tuple[str, list[str], str, str, list[tuple[str, str]], int, str, list[str] | None, str]
#: one package vertex (a group of them, as AutoGroup made it): (backend, [(name, state)])
PkgWant = tuple[str, list[tuple[str, str]]]


class Plan:
    """A plan read back: the graph's name, source and size, its compile lines, its files."""

    __slots__ = (
        "after",
        "applies",
        "dpkg",
        "edges",
        "execs",
        "files",
        "lines",
        "name",
        "names",
        "pkgs",
        "source",
        "vertices",
    )

    def __init__(self, name: str, source: str, vertices: int, edges: int, lines: list[str]) -> None:
        self.name = name
        self.source = source
        self.vertices = vertices
        self.edges = edges
        self.lines = lines
        #: each vertex's display name (``File[f1]``) and prerequisites (indices), and
        #: its wanted state: a file's in `files`, else None there and one in `execs` or `pkgs`
        self.files: list[FileWant | None] = []
        self.names: list[str] = []
        self.after: list[tuple[int, ...]] = []
        self.execs: dict[int, ExecWant] = {}
        self.pkgs: dict[int, PkgWant] = {}
        #: dpkg's database when the plan was made (`pkgstate.dpkg_stamp`); with packages,
        #: another one means AutoEdges may differ: the full run again
        self.dpkg: tuple[int, ...] = ()
        #: the fast path may make the changes too (no noop, retry, timeout, limit, notify)
        self.applies = False


def code_fingerprint(dirs: tuple[str, ...]) -> str:
    """Name, size and mtime of every module in `dirs` (subpackages of pymgmt).

    An upgrade changes the version, but a developer's edit (or a package
    rebuilt without a version bump) only changes these.
    """
    parts: list[str] = []
    for sub in dirs:
        try:
            with os.scandir(os.path.join(_ROOT, sub)) as it:
                for e in it:
                    if e.name.endswith(".py"):
                        st = e.stat(follow_symlinks=False)
                        parts.append(f"{sub}/{e.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            return "unknown"  # nothing to compare with: every run misses
    parts.sort()
    return ";".join(parts)


def plan_key(text: bytes, source: str) -> bytes:
    """The key of the plan of graph file bytes `text` shown as `source`."""
    from _blake2 import blake2b  # hashlib would load OpenSSL: 6 ms

    h = blake2b(digest_size=32)
    for part in (f"pymgmt {__version__}", sys.version, source, code_fingerprint(CODE_DIRS)):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    h.update(text)
    return h.digest()


# -- reading (the fast path) -------------------------------------------------------------


def read_at(dir_fd: int, key: bytes) -> Plan | None:
    """The plan stored under `key` in the state directory `dir_fd`; None: none to trust."""
    data = _read_trusted(dir_fd)
    if data is None:
        return None
    try:
        doc = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    return _decode(doc, key)


def _read_trusted(dir_fd: int) -> bytes | None:
    if not _only_mine(os.fstat(dir_fd), dir_=True):
        return None
    return read_regular(PLAN_NAME, limit=_MAX_BYTES, dir_fd=dir_fd, follow=False, accept=_mine)


def _mine(st: os.stat_result) -> bool:
    return _only_mine(st, dir_=False)


def _only_mine(st: os.stat_result, *, dir_: bool) -> bool:
    """Owned by this user (a directory: or root) and not writable by group or world."""
    owners = (os.geteuid(), 0) if dir_ else (os.geteuid(),)
    return st.st_uid in owners and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _decode(doc: object, key: bytes) -> Plan | None:
    """`doc` as a Plan if it has exactly the plan's shape and `key`; else None."""
    if not isinstance(doc, tuple) or len(doc) != 14:
        return None
    fmt, got, name, source, vertices, edges, lines, files, names, after, applies = doc[:11]
    execs, pkgs, dpkg = doc[11:]
    if fmt != FORMAT or got != key:
        return None
    if not (isinstance(execs, dict) and isinstance(pkgs, dict) and isinstance(dpkg, tuple)):
        return None
    if not (_all(str, (name, source)) and _all(int, (vertices, edges)) and type(applies) is bool):
        return None
    if not all(isinstance(x, list) for x in (lines, files, names, after)) or not _all(str, lines):
        return None
    n = len(files)
    if len(names) != n or len(after) != n or not _all(str, names):
        return None
    if not all(_file_shaped(f) for f in files) or not all(_indices(a, n) for a in after):
        return None
    others = {**execs, **pkgs}
    if len(others) != len(execs) + len(pkgs) or not _all(int, dpkg):
        return None
    if set(others) != {i for i, f in enumerate(files) if f is None}:
        return None  # every vertex is exactly one of a file, an exec, a package
    if not all(map(_exec_shaped, execs.values())) or not all(map(_pkg_shaped, pkgs.values())):
        return None
    plan = Plan(name, source, vertices, edges, lines)
    plan.files, plan.names, plan.after, plan.applies = files, names, after, applies
    plan.execs, plan.pkgs, plan.dpkg = execs, pkgs, dpkg
    return plan


def _indices(a: object, n: int) -> bool:
    return isinstance(a, tuple) and all(type(i) is int and 0 <= i < n for i in a)


def _all(kind: type, values: Any) -> bool:
    return all(type(v) is kind for v in values)


def _strs(v: object) -> bool:
    return isinstance(v, list) and bool(v) and _all(str, v)


def _exec_shaped(e: object) -> bool:
    if not isinstance(e, tuple) or len(e) != 9:
        return False
    cmd, argv, shown, cwd, env, timeout, creates, if_argv, if_shown = e
    return (
        _all(str, (cmd, shown, cwd, creates, if_shown))
        and _strs(argv)
        and isinstance(env, list)
        and all(isinstance(p, tuple) and len(p) == 2 and _all(str, p) for p in env)
        and type(timeout) is int
        and timeout >= 0
        and (if_argv is None or _strs(if_argv))
    )


def _pkg_shaped(p: object) -> bool:
    if not isinstance(p, tuple) or len(p) != 2 or type(p[0]) is not str:
        return False
    wanted = p[1]
    return isinstance(wanted, list) and all(
        isinstance(w, tuple) and len(w) == 2 and _all(str, w) for w in wanted
    )


def _file_shaped(f: object) -> bool:
    if f is None:
        return True  # another kind's vertex
    if not isinstance(f, tuple) or len(f) != 7:
        return False
    path, is_dir, absent, content, mode, owner, group = f
    return (
        type(path) is str
        and path.startswith("/")
        and type(is_dir) is bool
        and type(absent) is bool
        and (content is None or type(content) is bytes)
        and (mode is None or type(mode) is int)
        and all(v is None or type(v) is str for v in (owner, group))
    )


# -- writing (a full run) ----------------------------------------------------------------


def store(prefix: Path, text: bytes, source: str, compiled: Compiled) -> bool:
    """Store the plan of `compiled` (parsed from `text`) in `prefix`, locked by this run.

    Only a graph the fast path can check as a whole is stored: files,
    execs and packages (`_vertex_want` says which), nothing exported,
    collected or run remotely, no Send/Recv, no warning to show again.
    Returns whether a plan was written; a failure to write is no error
    (the next run is a full one again).
    """
    data = encode(text, source, compiled)
    if data is None:
        return False
    from ..fsutil import atomic_write_at, opened_dir

    try:
        with opened_dir(os.path.abspath(prefix)) as dfd:
            atomic_write_at(dfd, PLAN_NAME, data, 0o600, None, None)
    except OSError:
        return False
    return True


def encode(text: bytes, source: str, compiled: Compiled) -> bytes | None:
    """The plan file's bytes, or None if the fast path cannot stand in for this graph."""
    from ..frontends.compile import autoedge_message

    declared, graph = compiled.declared, compiled.graph
    if declared is None or compiled.warnings or getattr(declared, "warnings", None):
        return None
    if (
        graph.exported
        or graph.collect
        or graph.export_only
        or declared.exported
        or declared.collect
    ):
        return None
    if getattr(declared, "remote", None) or getattr(declared, "remotes", None):
        return None
    if any(e.send or e.recv for e in graph.edges):
        return None
    index = {key: i for i, key in enumerate(graph.vertices)}
    after: list[list[int]] = [[] for _ in index]
    for e in graph.edges:
        after[index[e.dst]].append(index[e.src])
    files: list[FileWant | None] = []
    execs: dict[int, ExecWant] = {}
    pkgs: dict[int, PkgWant] = {}
    for i, res in enumerate(graph.vertices.values()):
        want = _vertex_want(res)
        if want is None:
            return None
        kind, value = want
        files.append(value if kind == "file" else None)
        if kind == "exec":
            execs[i] = value
        elif kind == "pkg":
            pkgs[i] = value
    if execs and _after_a_command(files, pkgs, execs, after):
        return None
    applies = not any(e.notify for e in graph.edges) and all(
        _plain_apply(r.meta) for r in graph.vertices.values()
    )
    if (execs or pkgs) and not applies:
        return None
    groups = [f"Grouping: Success for: {m} into {g[0]}" for g in compiled.groups for m in g[1:]]
    lines = [autoedge_message(e) for e in compiled.autoedges] + groups
    names = [str(r) for r in graph.vertices.values()]  # the engine's (a group's members too)
    dpkg = _dpkg_stamp() if pkgs else ()
    head = (FORMAT, plan_key(text, source), graph.name, declared.source, len(graph.vertices))
    tail = (len(graph.edges), lines, files, names, [tuple(a) for a in after], applies)
    return marshal.dumps(head + tail + (execs, pkgs, dpkg))


def _vertex_want(res: Any) -> tuple[str, Any] | None:
    """(kind, wanted state) of a vertex the fast path can stand in for; else None."""
    from ..metaparams import MetaParams
    from ..resources.exec import Exec
    from ..resources.file import File
    from ..resources.pkg import Pkg

    if type(res) is File and not res.members:
        # a source's (a tree's, fragments') bytes are read at each check: a stored
        # plan would go stale; a template is rendered by the engine (the fast
        # path never imports Jinja2)
        if res.source is not None or res.fragments is not None or res.template is not None:
            return None
        if res.recurse:  # a purge without a source walks the tree: the engine's
            return None
        return "file", _want(res)
    if res.secrets or res.tainted or res.meta != MetaParams():
        return None  # the engine's retries, limits, semaphores...; a secret to redact
    if type(res) is Exec and not (
        res.watchcmd
        or res.pollint
        or res.members
        or res.nifcmd
        or res.refresh_only
        or res.user
        or res.group
    ):
        return "exec", _exec_want(res)
    if type(res) is Pkg and res.backend in ("auto", "apt"):
        wanted = [(p.name, p.state) for p in res.packages]
        if all(p.backend == res.backend and p.state != "newest" for p in res.packages):
            return "pkg", (res.backend, wanted)  # newest asks apt-cache: the engine's
    return None


def _exec_want(res: Any) -> ExecWant:
    """An exec's command as `Exec` runs it: split once, here, so the fast path needs no shlex."""
    from ..resources.spawn import command_argv

    argv = command_argv(res.cmd, res.shell)
    if_argv = command_argv(res.ifcmd, res.ifshell) if res.ifcmd else None
    env = sorted(res.env.items())
    shown = repr(argv[0])  # Exec._argv's words (a graph with secrets has no plan)
    if_shown = repr(if_argv[0]) if if_argv else ""
    return (res.cmd, argv, shown, res.cwd, env, res.timeout, res.creates, if_argv, if_shown)


def _after_a_command(
    files: list[FileWant | None],
    pkgs: dict[int, PkgWant],
    execs: dict[int, ExecWant],
    after: list[list[int]],
) -> bool:
    """Whether a file or package comes after a command in the graph.

    The fast path checks files and packages before anything runs; the
    engine checks them once what comes before them is done, and a command
    may have changed them meanwhile.
    """
    below: set[int] = set()
    stack = [i for i, a in enumerate(after) if not execs.keys().isdisjoint(a)]
    children: list[list[int]] = [[] for _ in after]
    for i, a in enumerate(after):
        for j in a:
            children[j].append(i)
    while stack:
        i = stack.pop()
        if i not in below:
            below.add(i)
            stack.extend(children[i])
    return any(files[i] is not None or i in pkgs for i in below)


def _dpkg_stamp() -> tuple[int, ...]:
    from ..resources.pkgstate import dpkg_stamp

    return dpkg_stamp()


def _plain_apply(meta: MetaParams) -> bool:
    """An apply the fast path makes as the engine would: once, now, for real."""
    import math  # here, at store time: the fast path itself never needs it

    return not meta.noop and meta.retry == 0 and meta.timeout == 0 and meta.limit == math.inf


def _want(res: Any) -> FileWant:
    """A file's wanted state, as `File` itself works it out (`File._wanted`)."""
    content = None if res.content is None else res.content.encode()
    mode = None if res.mode is None else int(res.mode, 8)
    path = res.target.rstrip("/") or "/"
    return (path, res.is_dir, res.state == "absent", content, mode, res.owner, res.group)
