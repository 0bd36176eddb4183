"""The remote graph files of a run, read and checked before anything connects.

``pymgmt run --remote a.yaml --remote b.yaml``: each file is a graph in
mgmt's YAML format whose header names where it runs (``remote:
ssh://user@host:port``), optionally the host name its agent takes in the
cluster (``hostname:``, default the URL's host) and, beyond mgmt, graph
files that host runs further on (``remotes: [c.yaml]``: hierarchical
execution, relative to the file). Every file of the whole tree is read and
fully validated here, like a local graph: a bad file anywhere stops the run
before any host is touched, with its file, line and field.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, InputErrors, Location
from ..world.base import valid_hostname
from .ssh import Target, parse_target

#: how deep ``remotes:`` may nest by default (the initiator is depth 0)
DEFAULT_MAX_DEPTH = 3


@dataclass(frozen=True)
class RemoteSpec:
    """One remote host of the run: its graph file, where it runs, and what it runs further."""

    #: the graph file on this machine (absolute)
    file: Path
    target: Target
    #: the name its agent takes in the cluster
    hostname: str
    #: hierarchical: the remote hosts this one runs in turn
    children: tuple[RemoteSpec, ...] = field(default=())
    #: the file's remote:, hostname: and remotes: as written (a live edit of
    #: them changes no host until the next run, and is told so)
    header: tuple[str | None, str | None, tuple[str, ...]] = (None, None, ())

    def files(self) -> list[Path]:
        """This host's file and every file of its subtree (all copied to it)."""
        out = [self.file]
        for c in self.children:
            out += c.files()
        return out

    def layout(self) -> dict[Path, str]:
        """Where each file of the subtree goes under the remote's run directory.

        Relative to their common directory, so the ``remotes:`` paths written
        in them (relative to each file) still lead to the right copies.
        """
        files = list(dict.fromkeys(self.files()))
        root = Path(os.path.commonpath([str(f.parent) for f in files]))
        return {f: f.relative_to(root).as_posix() for f in files}


def load_specs(
    files: Sequence[str],
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    depth: int = 0,
    taken: Sequence[str] = (),
) -> list[RemoteSpec]:
    """Read and check every remote graph file of the tree; InputErrors naming each problem.

    `depth` is this process's own depth (0: the initiator; a remote agent
    that carries ``--remote`` files is deeper). `taken` are host names
    already used (this host's own): two agents of one cluster may not share
    a name.
    """
    loader = _Loader(max_depth, set(taken))
    specs = [loader.spec(Path(f).absolute(), depth + 1, None) for f in files]
    if loader.errors:
        raise InputErrors(loader.errors)
    return [s for s in specs if s is not None]


class _Loader:
    def __init__(self, max_depth: int, taken: set[str]) -> None:
        self.max_depth = max_depth
        self.names: dict[str, Path] = {}
        self.taken = taken
        self.errors: list[InputError] = []

    def spec(self, path: Path, depth: int, named_at: Location | None) -> RemoteSpec | None:
        from ..frontends.yamlgraph import load

        if depth > self.max_depth:
            self.errors.append(
                InputError(
                    f"{path.name} would run at depth {depth}, deeper than --max-depth "
                    f"{self.max_depth} (a loop of 'remotes:' files?)",
                    location=named_at or Location(str(path)),
                    field="remotes",
                )
            )
            return None
        if path in self.names.values():
            self.errors.append(
                InputError(
                    f"{path.name} is already run on another host of this run: a loop of "
                    "'remotes:' files, or one graph listed twice",
                    location=named_at or Location(str(path)),
                    field="remotes" if named_at else None,
                )
            )
            return None
        if not path.exists():
            self.errors.append(
                InputError("no such remote graph file", location=named_at or Location(str(path)))
            )
            return None
        try:
            graph = load(str(path))
        except InputError as e:
            self.errors += e.errors if isinstance(e, InputErrors) else [e]
            return None
        where = graph.header_locations
        if graph.remote is None:
            self.errors.append(
                InputError(
                    "a remote graph file must say where it runs: add "
                    "'remote: ssh://user@host[:port]'",
                    location=Location(str(path)),
                    field="remote",
                )
            )
            return None
        try:
            target = parse_target(graph.remote)
        except ValueError as e:
            self.errors.append(InputError(str(e), location=where.get("remote"), field="remote"))
            return None
        hostname = graph.hostname or target.host
        if not valid_hostname(hostname):
            self.errors.append(
                InputError(
                    f"{hostname!r} cannot name a host of the cluster: letters, digits, '.', "
                    "'_' and '-' only (set 'hostname:')",
                    location=where.get("hostname", where.get("remote")),
                    field="hostname",
                )
            )
            return None
        if hostname in self.taken or hostname in self.names:
            other = self.names.get(hostname)
            whose = f"{other}" if other else "this host"
            self.errors.append(
                InputError(
                    f"the host name {hostname!r} is taken by {whose}: every agent of the "
                    "cluster needs its own (set 'hostname:')",
                    location=where.get("hostname", where.get("remote")),
                    field="hostname",
                )
            )
            return None
        self.names[hostname] = path
        children = []
        for i, rel in enumerate(graph.remotes):
            child = self.spec(path.parent / rel, depth + 1, where.get(f"remotes[{i}]"))
            if child is not None:
                children.append(child)
        header = (graph.remote, graph.hostname, tuple(graph.remotes))
        return RemoteSpec(path, target, hostname, tuple(children), header)


__all__ = ["DEFAULT_MAX_DEPTH", "RemoteSpec", "load_specs"]
