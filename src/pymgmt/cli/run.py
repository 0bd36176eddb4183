"""The `run` and `validate` commands: wire a frontend, the engine and reporters."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..engine.engine import Engine
from ..errors import InputError, InputErrors
from ..frontends.yamlgraph import YamlFrontend, load, load_with_text
from ..graph.graphviz import to_dot
from ..graph.model import Graph
from ..redaction import RedactingFilter, redact
from ..report.console import ConsoleReporter, Fanout, JsonReporter
from ..report.recap import EXIT_INPUT, EXIT_OK, Recap
from ..resources.base import Resource
from ..world.local import LocalWorld


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger("pymgmt")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def default_prefix() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/pymgmt")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "pymgmt"


def print_input_error(e: InputError, *, as_json: bool) -> None:
    errors = e.errors if isinstance(e, InputErrors) else [e]
    if as_json:
        print(json.dumps({"event": "invalid_input", "errors": [x.as_dict() for x in errors]}))
        return
    n = len(errors)
    print(
        f"error: the graph is invalid ({n} problem{'s' if n != 1 else ''}); nothing was changed",
        file=sys.stderr,
    )
    for x in errors:
        print(f"  {x}", file=sys.stderr)


class _Once:
    """A frontend that yields one file's graph and never watches it."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def graphs(self, hub: Any) -> AsyncIterator[Graph[Resource] | InputError]:
        try:
            yield load(self.path)
        except InputError as e:
            yield e
        await asyncio.Event().wait()


class _GraphvizTap:
    """Writes each new graph as DOT (and renders it if `dot` is installed)."""

    def __init__(self, inner: Any, path: str) -> None:
        self.inner = inner
        self.path = path

    async def graphs(self, hub: Any) -> AsyncIterator[Graph[Resource] | InputError]:
        async for g in self.inner.graphs(hub):
            if not isinstance(g, InputError):
                write_graphviz(g, self.path)
            yield g


def write_graphviz(graph: Graph[Any], path: str) -> None:
    """Write DOT; with graphviz installed also render SVG (or the asked format).

    ``x.dot`` gives x.dot and x.svg; ``x.svg`` or ``x.png`` gives x.dot and
    that picture.
    """
    from ..fsutil import atomic_write

    root, ext = os.path.splitext(os.path.abspath(path))
    fmt = ext[1:] if ext in (".svg", ".png", ".pdf") else "svg"
    dot_path = root + ".dot"
    atomic_write(dot_path, redact(to_dot(graph)).encode(), 0o644, None, None)
    dot = shutil.which("dot")
    if dot:
        # argv list, no shell: the path is user data
        subprocess.run(  # noqa: S603
            [dot, f"-T{fmt}", "-o", f"{root}.{fmt}", dot_path], check=False, timeout=30
        )


def run_command(args: argparse.Namespace) -> int:
    _setup_logging(args)
    # The graph and a worker per vertex live for the whole run; at the default
    # threshold (700) the collector rescans them again and again while they are
    # created (10k files: a fifth of a one-shot run's CPU, freeing nothing).
    gc.set_threshold(50_000, 10, 10)
    path = os.path.abspath(args.file)
    # Validate everything before touching the system.
    try:
        validated = load_with_text(path)
    except InputError as e:
        print_input_error(e, as_json=args.json)
        return EXIT_INPUT
    timeout = args.converged_timeout
    if timeout is not None and timeout < 0:
        timeout = None
    recap = Recap()
    human = None if args.json else ConsoleReporter(verbose=args.verbose, quiet=args.quiet)
    machine = JsonReporter() if args.json else None
    reporter = Fanout(*(r for r in (human, machine, recap) if r is not None))
    frontend: Any = _Once(path) if args.no_watch else YamlFrontend(path, first=validated)
    if args.graphviz:
        frontend = _GraphvizTap(frontend, args.graphviz)
    engine = Engine(
        world=LocalWorld(args.hostname or socket.gethostname()),
        reporter=reporter,
        state_dir=Path(args.prefix) if args.prefix else default_prefix(),
        noop=args.noop,
        converged_timeout=timeout,
        sema=args.sema,
    )
    try:
        asyncio.run(_main(engine, frontend))
    except InputError as e:  # the file changed between validation and start
        print_input_error(e, as_json=args.json)
        return EXIT_INPUT
    if machine is not None:
        machine.write({"event": "recap", **recap.as_dict()})
    else:
        print(recap.render(verbose=args.verbose), flush=True)
    code = recap.exit_code() if timeout is not None else EXIT_OK
    # Everything is stopped, written and fsynced, and the recap is out: skip
    # the interpreter's teardown of every object of the graph (60 ms at 1k
    # resources, 460 ms at 10k), which can change nothing any more.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


async def _main(engine: Engine, frontend: Any) -> None:
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_signal(signame: str) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            print(f"\n{signame} again: exiting at once", file=sys.stderr, flush=True)
            os._exit(130)
        engine.stop(f"interrupted by {signame} (again to exit at once)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        await engine.run(frontend)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def validate_command(args: argparse.Namespace) -> int:
    try:
        graph = load(args.file)
    except InputError as e:
        print_input_error(e, as_json=args.json)
        return EXIT_INPUT
    if args.json:
        print(
            json.dumps(
                {
                    "graph": graph.name,
                    "resources": [
                        {"kind": r.kind, "name": r.name, "meta": r.meta.non_default()}
                        for r in graph.vertices.values()
                    ],
                    "edges": [
                        {"from": list(e.src), "to": list(e.dst), "notify": e.notify}
                        for e in graph.edges
                    ],
                    "exported": [{"kind": r.kind, "name": r.name} for r in graph.exported],
                    "collect": [{"kind": c.kind, "pattern": c.pattern} for c in graph.collect],
                }
            )
        )
        return EXIT_OK
    by_kind: dict[str, int] = {}
    for r in graph.vertices.values():
        by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items()))
    print(
        f"{args.file}: graph {graph.name!r} is valid: {len(graph.vertices)} resources "
        f"({kinds or 'none'}), {len(graph.edges)} edges"
    )
    for r in graph.vertices.values():
        meta = r.meta.non_default()
        if meta or args.verbose:
            print(f"  {r}: meta " + ", ".join(f"{k}={v!r}" for k, v in meta.items()))
    if graph.exported:
        print(f"  exports: {', '.join(str(r) for r in graph.exported)}")
    if graph.collect:
        specs = (c.kind + (":" + c.pattern if c.pattern else "") for c in graph.collect)
        print(f"  collects: {', '.join(specs)}")
    return EXIT_OK
