"""The `run` and `validate` commands: wire a frontend, the engine and reporters."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fcntl
import gc
import io
import json
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import statedir
from ..engine.engine import ConvergedWait, Engine, GraphObserver, collector_paused
from ..errors import InputError, InputErrors, Location
from ..frontends.base import Frontend, FrontendContext
from ..frontends.graphfile import STDIN, GraphFileError
from ..frontends.yamlfile import YamlFrontend
from ..frontends.yamlmodel import YamlGraph
from ..graph.model import Graph
from ..redaction import redact
from ..report.console import ConsoleReporter, Fanout, JsonReporter, silence
from ..report.events import Applying, Converged, Event, Settled
from ..report.exitcodes import EXIT_INPUT, EXIT_OK
from ..report.live import LiveState
from ..report.logs import current, setup_logging
from ..report.progress import Progress
from ..report.recap import Recap
from ..resources.base import Resource, off_loop
from ..statedir import default_prefix
from ..types import MAX_PROBLEMS
from ..web import WebError
from ..world.base import World, WorldError, valid_hostname
from ..world.cluster import ClusterError, ClusterLost, ClusterOptions, Joined, needs_cluster
from ..world.local import LocalWorld
from .systemd import SystemdReporter

if TYPE_CHECKING:
    from ..frontends.compile import Compiled
    from ..frontends.puppet.catalog import PuppetSource
    from ..remote.child import ParentLink
    from ..remote.session import RemoteOptions, Remotes
    from ..remote.spec import RemoteSpec
    from ..web.server import WebServer


def _setup_logging(args: argparse.Namespace) -> None:
    """Every line for people goes to one `Output` on stderr (README "Output")."""
    level = args.log_level or ("debug" if args.verbose else "warning" if args.quiet else "info")
    output = setup_logging(level, args.log_format)
    if args.json or level not in ("debug", "info"):
        output.live = False  # the status line: not beside JSON, not when asked for quiet


def print_input_error(e: InputError, *, as_json: bool) -> None:
    errors = e.errors if isinstance(e, InputErrors) else [e]
    n = len(errors)
    if isinstance(e, GraphFileError) and not as_json:  # a wrong path, not an invalid graph
        print(f"error: {e.location}: {e.message}; nothing was changed", file=sys.stderr)
        return
    shown = errors[:MAX_PROBLEMS]  # the first ones in the file; the rest are counted
    if as_json:
        listed = [x.as_dict() for x in shown]
        print(json.dumps({"event": "invalid_input", "errors": listed, "omitted": n - len(shown)}))
        return
    print(
        f"error: the graph is invalid ({n} problem{'s' if n != 1 else ''}); nothing was changed",
        file=sys.stderr,
    )
    for x in shown:
        print(f"  {x}", file=sys.stderr)
    if n > len(shown):
        print(f"  ... and {n - len(shown)} more", file=sys.stderr)


class _Once:
    """A frontend that yields the declared graph already validated and never watches the file.

    (Reading the file again would parse it a second time, on the event loop,
    and might run something other than what was validated.)
    """

    def __init__(self, graph: Graph[Resource]) -> None:
        self.graph = graph

    async def graphs(self, ctx: FrontendContext) -> AsyncIterator[Graph[Resource] | InputError]:
        yield self.graph
        await asyncio.Event().wait()


class _StateDirGuard:
    """Refuses, like any invalid graph, a new graph that manages the state directory.

    `checked`: the graph already checked against this very directory before
    the lock was taken; passed through as it is (resolving every path again
    cost a one-shot run of 100 files 15 ms, issue 13). A live edit of one
    resource's entry (`Graph.edited_from`) of the graph last let through has
    only that resource checked: the others are the very resources checked
    then (every path again cost each one-line edit of 10k files 71 ms).
    """

    def __init__(self, inner: Frontend, prefix: Path, checked: Graph[Resource] | None) -> None:
        self.inner = inner
        self.prefix = prefix
        #: the last graph let through (None: none yet, or not checked here)
        self.passed = checked

    async def graphs(self, ctx: FrontendContext) -> AsyncIterator[Graph[Resource] | InputError]:
        async for g in self.inner.graphs(ctx):
            if isinstance(g, InputError):
                yield g
            elif bad := self._intrusions(g):
                yield InputErrors(bad)
            else:
                self.passed = g
                yield g

    def _intrusions(self, g: Graph[Resource]) -> list[InputError]:
        if g is self.passed:
            return []
        edit = g.edited_from
        if edit is not None and edit[0] is self.passed and edit[1] in g.vertices:
            key = edit[1]
            return statedir.intrusions(g.derive({key: g.vertices[key]}, []), self.prefix)
        return statedir.intrusions(g, self.prefix)


class _GraphvizTap:
    """Writes each graph swapped in as DOT (and renders it if graphviz is installed).

    A `GraphObserver`: it sees the compiled graph, with its automatic edges
    and groups, as the engine runs it. Rendering runs as a child process
    the event loop waits for without blocking (issue 8 item 16): the running
    graph's workers go on while `dot` works on the next one; a stop kills
    and reaps it.
    """

    def __init__(self, path: str | None, program: str = "dot") -> None:
        self.path = path  # None: no --graphviz (a reload may give one)
        self.program = program

    async def graph_swapped(self, graph: Graph[Resource]) -> None:
        if self.path is not None:
            await write_graphviz(graph, self.path, self.program)


#: how long a graphviz program may take to render one graph
RENDER_TIMEOUT = 30.0


async def write_graphviz(graph: Graph[Any], path: str, program: str = "dot") -> None:
    """Write DOT atomically; with graphviz installed also render SVG (or the asked format).

    ``x.dot`` gives x.dot and x.svg; ``x.svg`` or ``x.png`` gives x.dot and
    that picture. `program` is the layout program (mgmt's --graphviz-filter).
    """
    from ..fsutil import atomic_write
    from ..graph.graphviz import to_dot

    root, ext = os.path.splitext(os.path.abspath(path))
    fmt = ext[1:] if ext in (".svg", ".png", ".pdf") else "svg"
    dot_path = root + ".dot"
    text = redact(to_dot(graph)).encode()
    # two fsyncs: off the loop, like every durable write
    await asyncio.to_thread(atomic_write, dot_path, text, 0o644, None, None)
    import shutil

    exe = shutil.which(program)
    if exe:
        await _render([exe, f"-T{fmt}", "-o", f"{root}.{fmt}", dot_path])


async def _render(argv: list[str]) -> None:
    """Run a graphviz program; kill and reap it on a stop or after RENDER_TIMEOUT."""
    # argv list, no shell: the path is user data
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(RENDER_TIMEOUT):
            await proc.wait()
    except TimeoutError:
        logging.getLogger("pymgmt").warning(
            "graphviz: %s took more than %g s: killed", argv[0], RENDER_TIMEOUT
        )
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()  # reaped, even when we are being cancelled


def _reloading(
    frontend: Frontend,
    args: argparse.Namespace,
    graphviz: _GraphvizTap,
    systemd: SystemdReporter | None,
) -> Frontend:
    """`frontend`, rebuilt from the configuration and the graph file on SIGHUP."""
    from .reload import ReadOnce, Reloading

    def make(new: argparse.Namespace) -> Frontend:
        if new.puppet is not None or args.puppet is not None:
            return frontend  # the Puppet frontend recompiles on edits by itself
        if not new.file or new.file == STDIN:
            return frontend  # the same graph: only --remote files, or standard input (read once)
        path = os.path.abspath(new.file)
        return ReadOnce(path) if new.no_watch else YamlFrontend(path)

    def apply(new: argparse.Namespace) -> None:
        _setup_logging(new)  # the one Output's level: every reporter's lines follow
        graphviz.path, graphviz.program = new.graphviz, new.graphviz_filter

    return Reloading(frontend, args, make, apply, systemd)


def _missing_file(path: str, *, as_json: bool) -> bool:
    """Report a graph file that does not exist: a wrong path, not an invalid graph."""
    if path == STDIN or os.path.exists(path):
        return False
    message = "no such file"
    if as_json:
        err = InputError(message, location=Location(path))
        print(json.dumps({"event": "invalid_input", "errors": [err.as_dict()]}), flush=True)
    else:
        print(f"error: {path}: {message}; nothing was changed", file=sys.stderr)
    return True


def _load_graph(path: str, args: argparse.Namespace) -> tuple[tuple[bytes, Compiled], str | None]:
    """The graph file's bytes and its compiled graph, parsed or from the cache.

    Second: the cache key to store the parse under once the state directory
    is locked (None: it came from the cache, or no cache is wanted). The
    cache (frontends/cache.py) spares an unchanged graph PyYAML and the
    builder, and AutoEdges' search when the graph's follow from it alone;
    the rest of compiling runs either way. Not for standard input, nor for a
    state directory made new for this run (--tmp-prefix: nothing to find),
    nor for an agent started by --remote (it leaves nothing behind).
    """
    from ..frontends.graphfile import read_graph_file

    text = read_graph_file(path)
    # The declared and compiled graphs live for the whole run, and reading
    # them makes no cyclic garbage: each collection walked a growing heap
    # for nothing (1-1.5 s of reading and compiling 100k cached resources).
    with collector_paused():
        return _parsed_or_cached(path, text, args)


def _parsed_or_cached(
    path: str, text: bytes, args: argparse.Namespace
) -> tuple[tuple[bytes, Compiled], str | None]:
    """`_load_graph` once the file is read."""
    from ..frontends.compile import accept
    from ..frontends.graphfile import source_name

    source = source_name(path)
    key = None
    if not (args.no_cache or args.tmp_prefix or args.remote_child or path == STDIN):
        from ..frontends import cache

        key = cache.cache_key(text, source)
        hit = cache.read(Path(args.prefix) if args.prefix else default_prefix(), key)
        if hit is not None:
            return (text, accept(hit[0], autoedges=hit[1])), None
    from ..frontends.yamlbuild import declare

    return (text, accept(declare(text, source))), key


def _compile_puppet(args: argparse.Namespace) -> tuple[PuppetSource, Compiled, Any]:
    """Compile --puppet with Puppet, translate and accept it: the source, graph, translation.

    Unsupported types and parameters are errors (InputErrors with the
    manifest's file and line) unless --puppet-allow-unsupported; then each
    is a warning and its resource stands in as a noop.
    """
    from ..frontends.compile import accept
    from ..frontends.puppet.catalog import PuppetSource
    from ..frontends.puppet.frontend import compile_graph

    source = PuppetSource.from_arg(
        args.puppet, args.puppet_conf, args.puppet_node, args.puppet_collect_dir
    )
    translation, declared = compile_graph(source, allow=args.puppet_allow_unsupported)
    log = logging.getLogger("pymgmt")
    for item in translation.unsupported:
        log.warning("warning: %s (%s)", item.error(), item.instead)
    return source, accept(declared), translation


class _ParseKeeper:
    """Stores the parse for the next start once the graph has settled, not before it runs.

    Encoding and writing 100,000 resources took 1.3-2.4 s of a first start
    before the engine began (issue 13); the next start needs it, this one
    does not. So it is a reporter that waits for the first ``Settled`` (an
    agent) or ``Converged`` (a run-once), then encodes on the event loop a
    piece at a time (`cache.encode_pieces`, ~1 ms each), only while nothing
    is being applied (an ``Applying`` pauses it until the next ``Settled``),
    and writes the pieces in a thread. Encoding it whole in a thread held
    the GIL for 0.1-0.4 s in one C call, and the first drift repair after
    the start waited for all of it. A run that ends first stores the rest on
    the way out (`finish`). The declared graph is never changed after
    compiling (the engine runs fresh copies), so what is stored is what was
    parsed, and the write is the cache's atomic one: a crash or ``kill -9``
    before or during it leaves the old cache or none, and the next start
    parses again.
    """

    def __init__(self, prefix: Path, compiled: Compiled, key: str) -> None:
        self.prefix = prefix
        self.compiled = compiled
        self.key = key
        self.stored = False
        #: set while the graph is at rest (after Settled or Converged, until Applying)
        self.quiet = asyncio.Event()
        self._pieces: list[bytes] = []
        self._rest: Iterator[bytes] | None = None

    def emit(self, event: Event) -> None:
        if isinstance(event, Settled | Converged):
            self.quiet.set()
        elif isinstance(event, Applying):
            self.quiet.clear()

    async def keep(self) -> None:
        """Store it once settled (cancelled meanwhile: `finish` does the rest)."""
        while not self.stored:
            await self.quiet.wait()
            if self._step():
                await off_loop(self._write)
                return
            await asyncio.sleep(0)  # a drift's check goes first

    def _step(self) -> bool:
        """Encode one more piece; True once all are there (None pieces: nothing to store)."""
        from ..frontends import cache

        if self._rest is None:
            declared = self.compiled.declared
            assert isinstance(declared, YamlGraph)
            rest = cache.encode_pieces(declared, self.key, self.compiled.autoedges)
            if rest is None:
                self.stored = True  # JSON cannot carry this graph exactly
                return False
            self._rest = rest
        try:
            self._pieces.append(next(self._rest))
        except StopIteration:
            return True
        except (TypeError, ValueError):  # a value JSON cannot carry exactly
            self.stored = True
        except Exception as e:  # only a faster next start is lost; never this run
            logging.getLogger("pymgmt.cache").warning("graph cache: not stored: %s", e)
            self.stored = True
        return False

    def _write(self) -> None:
        if self.stored:
            return
        self.stored = True
        from ..frontends import cache

        try:
            cache.write(self.prefix, self._pieces)
        except Exception as e:  # only a faster next start is lost; never this run
            logging.getLogger("pymgmt.cache").warning("graph cache: not stored: %s", e)
        self._pieces = []

    def store(self) -> None:
        """Encode what is left and write it, now (the fast path; the end of a run)."""
        while not self.stored and not self._step():
            pass
        self._write()

    finish = store


def _lock_state_dir(args: argparse.Namespace) -> statedir.StateDirLock | None:
    """Pick the state directory (--prefix, --tmp-prefix) and lock it; None: refused."""
    prefix = Path(args.prefix) if args.prefix else default_prefix()
    try:
        if args.tmp_prefix:
            prefix = _tmp_prefix("--tmp-prefix")
        try:
            return statedir.lock(prefix)
        except statedir.StateDirBusy:
            raise
        except OSError as e:
            if not args.allow_tmp_prefix:
                raise
            logging.getLogger("pymgmt").warning("cannot use %s: %s", prefix, e.strerror)
            return statedir.lock(_tmp_prefix("--allow-tmp-prefix"))
    except statedir.StateDirBusy as e:
        _refuse(str(e), args, prefix=str(e.prefix), pid=e.pid)
    except statedir.StateDirUnsafe as e:
        _refuse(str(e), args, prefix=str(e.prefix))
    except OSError as e:
        _refuse(f"cannot use the state directory {prefix}: {e.strerror}", args, prefix=str(prefix))
    return None


def _tmp_prefix(why: str) -> Path:
    import tempfile

    prefix = Path(tempfile.mkdtemp(prefix="pymgmt-"))
    logging.getLogger("pymgmt").info("state directory (%s): %s", why, prefix)
    return prefix


def _refuse(message: str, args: argparse.Namespace, **fields: object) -> None:
    if args.json:
        print(json.dumps({"event": "refused", "message": message, **fields}), flush=True)
    else:
        print(f"error: {message}; nothing was changed", file=sys.stderr)


class _Interrupted(BaseException):
    """SIGINT or SIGTERM came before the engine started: nothing was changed yet.

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` on
    the way (validation, the state lock) swallows it.
    """

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(sig.name)
        self.sig = sig


def _interrupt_start(signum: int, frame: object) -> None:
    raise _Interrupted(signal.Signals(signum))


def run_command(args: argparse.Namespace) -> int:
    _setup_logging(args)
    # The graph and a worker per vertex live for the whole run; at the default
    # threshold (700) the collector rescans them again and again while they are
    # created (10k files: a fifth of a one-shot run's CPU, freeing nothing).
    gc.set_threshold(50_000, 10, 10)
    # Validating a large graph takes seconds. A signal until the engine runs
    # aborts the start with a plain sentence, never a KeyboardInterrupt
    # traceback (SIGTERM would otherwise kill silently). `_Run.main` replaces
    # these handlers with the graceful stop before the engine starts.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt_start)
    if not args.remote_child:  # SIGHUP reloads once running (cli/reload.py); not before
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        try:
            return _start(args)
        except RuntimeError as e:
            # Python wraps what a __set_name__ raises in a RuntimeError: the
            # signal came while validation imported a resource kind.
            if isinstance(e.__cause__, _Interrupted):
                raise e.__cause__ from None
            raise
    except _Interrupted as e:
        message = f"interrupted by {e.sig.name} before start; nothing was changed"
        if args.json:
            print(json.dumps({"event": "interrupted", "message": message, "signal": e.sig.name}))
        else:
            print(f"pymgmt: {message}", file=sys.stderr)
        return 128 + e.sig


def _start(args: argparse.Namespace) -> int:
    """Validate, lock the state directory, run the engine; the exit code."""
    try:
        return _start_checked(args)
    finally:
        if args.remote_child:  # an agent started by --remote leaves nothing behind
            from ..remote.child import remove_run_dir

            remove_run_dir(Path(args.remote_child))


#: the graph of an initiator given only --remote files: nothing to do here
_NO_LOCAL_GRAPH = b"graph: remote-initiator\nresources: {}\n"


def _start_checked(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file) if args.file and args.file != STDIN else args.file
    named = [path] if path else []
    if any(_missing_file(f, as_json=args.json) for f in [*named, *args.remotes]):
        return EXIT_INPUT
    # Validate everything before touching the system.
    puppet: tuple[PuppetSource, Compiled, Any] | None = None
    try:
        if args.puppet is not None:
            puppet = _compile_puppet(args)
            validated, to_cache = (b"", puppet[1]), None
        elif path is None:
            from ..frontends.compile import accept
            from ..frontends.yamlbuild import declare

            validated = (_NO_LOCAL_GRAPH, accept(declare(_NO_LOCAL_GRAPH, "(no local graph)")))
            to_cache = None
        else:
            validated, to_cache = _load_graph(path, args)
    except InputError as e:
        print_input_error(e, as_json=args.json)
        return EXIT_INPUT
    # Checked before the lock is taken (which writes to the directory); a
    # --tmp-prefix directory does not exist yet, so no graph can name it.
    chosen = None if args.tmp_prefix else Path(args.prefix) if args.prefix else default_prefix()
    declared = validated[1].declared
    assert declared is not None  # accept() keeps it
    # the declared graph: every resource as written (compiling only copies and groups them)
    if chosen is not None and (intruders := statedir.intrusions(declared, chosen)):
        print_input_error(InputErrors(intruders), as_json=args.json)
        return EXIT_INPUT
    hostname = args.hostname or socket.gethostname()
    specs: list[RemoteSpec] = []
    if args.remotes:
        from ..remote.spec import load_specs

        try:
            specs = load_specs(
                args.remotes, max_depth=args.max_depth, depth=args.depth, taken=[hostname]
            )
        except InputError as e:
            print_input_error(e, as_json=args.json)
            return EXIT_INPUT
    try:
        options = ClusterOptions.from_args(args, hostname)
    except ClusterError as e:
        _refuse(str(e), args)
        return EXIT_INPUT
    if args.remote_child:  # behind an SSH tunnel: its seed is its only way to the cluster
        from ..world.etcd.tls import plain_text_is_tunnelled

        options = dataclasses.replace(options, tunnelled=True)
        plain_text_is_tunnelled()
    if specs and options.tls is not None:
        _refuse("--remote with a TLS cluster is not implemented yet", args)
        return EXIT_INPUT
    cluster = options if specs or needs_cluster(validated[1].graph, options) else None
    if cluster is not None and not valid_hostname(hostname):
        _refuse(
            f"the hostname {hostname!r} cannot name a host of a cluster: letters, digits, "
            "'.', '_' and '-' only, starting with a letter or digit (give --hostname)",
            args,
        )
        return EXIT_INPUT
    state = _lock_state_dir(args)
    if state is None:
        return EXIT_INPUT
    keeper = None if to_cache is None else _ParseKeeper(state.prefix, validated[1], to_cache)
    if getattr(args, "oneshot_plan", False) and path not in (None, STDIN):
        if keeper is not None:  # the fast path below may exit before any engine runs
            keeper.store()
        from ..oneshot.command import run_stored
        from ..oneshot.plan import store

        # a file graph is then made as wanted by the fast path's executor, not the engine
        if store(state.prefix, validated[0], path, validated[1]):
            code = run_stored(str(state.prefix), validated[0], path, quiet=args.quiet)
            if code is not None:
                _flush_quietly()
                os._exit(code)
    timeout = args.converged_timeout
    if timeout is not None and timeout < 0:
        timeout = None
    recap = Recap(
        run_once=timeout is not None,
        detailed=args.detailed_exit,
        remote_codes=not args.remote_child,
    )
    stopper = _Stopper(recap)
    human = None
    machine = None
    output = current()
    assert output is not None  # run_command set it up
    if args.json:
        machine = JsonReporter(on_closed=stopper.stdout_closed)
    else:
        # stderr is the output a person reads: its reader leaving is the same stop
        output.on_closed = stopper.stdout_closed
        human = ConsoleReporter(output=output)
    progress = Progress(output)
    live = LiveState(hostname=hostname, noop=args.noop)  # what `pymgmt status` shows
    web = _web_server(args, live)
    reporters = (human, machine, progress, recap, live, web, keeper)
    reporter = Fanout(*(r for r in reporters if r is not None))
    systemd = SystemdReporter.from_environ()  # run by a Type=notify unit: READY, WATCHDOG, STATUS
    if systemd is not None:
        reporter = Fanout(reporter, systemd)
    text, compiled = validated
    frontend: Frontend
    if args.no_watch or (puppet is None and path in (None, STDIN)):  # stdin is read once
        frontend = _Once(declared)
    elif puppet is not None:
        from ..frontends.puppet.frontend import PuppetFrontend

        source, translation = puppet[0], puppet[2]
        first = (translation, declared)
        frontend = PuppetFrontend(source, allow=args.puppet_allow_unsupported, first=first)
    else:
        assert isinstance(declared, YamlGraph) and path is not None
        frontend = YamlFrontend(path, first=(text, declared))
    if cluster is None:
        frontend = _SingleHostNote(frontend)
    graphviz = _GraphvizTap(args.graphviz, args.graphviz_filter)  # a reload may set it
    if not args.remote_child:
        frontend = _reloading(frontend, args, graphviz, systemd)

    def make_engine(
        world: World, observers: list[GraphObserver], converged_wait: ConvergedWait | None
    ) -> Engine:
        engine = Engine(
            world=world,
            reporter=reporter,
            state_dir=state.prefix,
            noop=args.noop,
            converged_timeout=timeout,
            sema=args.sema,
            # the live state first: it knows the graph before a new vertex reports
            observers=[live.observer(), *([web] if web else []), *observers, graphviz],
            converged_wait=converged_wait,
            accepted=compiled,  # validated above: not compiled a second time
        )
        live.refresh_source = engine.refresh
        if systemd is not None:
            systemd.attach(engine)
        return engine

    def guarded(inner: Frontend) -> Frontend:
        """The checks every graph passes last, whatever joined it on the way."""
        same = chosen is not None and Path(os.path.abspath(chosen)) == state.prefix
        return _StateDirGuard(inner, state.prefix, declared if same else None)

    run = _Run(make_engine, frontend, guarded, stopper, hostname, cluster, state.prefix, args.noop)
    run.live = live
    run.web = web
    run.keeper = keeper
    if specs:
        run.remotes = (specs, _remote_options(args, timeout))
    if args.remote_child:
        from ..remote.child import ParentLink, remove_run_dir

        run_dir = Path(args.remote_child)
        run.parent = ParentLink(stopper.parent_said, run_dir)
        stopper.before_exit = lambda: remove_run_dir(run_dir)
    lost: ClusterLost | None = None
    try:
        asyncio.run(run.main())
    except InputError as e:  # the file changed between validation and start
        print_input_error(e, as_json=args.json)
        return EXIT_INPUT
    except ClusterLost as e:  # the engine ran, and was stopped: the recap follows
        lost = e
    except ClusterError as e:  # nothing was changed: the engine never started
        _refuse(str(e), args)
        return EXIT_INPUT
    except WebError as e:  # --prometheus-listen taken: refused before anything ran
        _refuse(str(e), args)
        return EXIT_INPUT
    finally:
        progress.close()  # its timer, and the status line off the terminal
    if keeper is not None:  # the run ended before the graph settled
        keeper.finish()
    if machine is not None:
        machine.write_obj({"event": "recap", **recap.as_dict()})
    elif output.json:
        output.line(logging.INFO, "recap", always=True, recap=recap.as_dict())
    else:
        output.block(logging.INFO, recap.render(verbose=output.enabled(logging.DEBUG)))
    code = recap.exit_code()
    if lost is not None:
        code = EXIT_INPUT
        if machine is not None:
            machine.write_obj({"event": "cluster_lost", "message": str(lost)})
        logging.getLogger("pymgmt").error("%s", lost)
    if args.remote_child:
        from ..remote.child import remove_run_dir

        remove_run_dir(Path(args.remote_child))
    # Everything is stopped, written and fsynced, and the recap is out: skip
    # the interpreter's teardown of every object of the graph (60 ms at 1k
    # resources, 460 ms at 10k), which can change nothing any more. The
    # state directory's lock goes with the process.
    _flush_quietly()
    logging.shutdown()
    os._exit(code)


def _web_server(args: argparse.Namespace, live: LiveState) -> WebServer | None:
    """The HTTP server of metrics and the web view (--prometheus); None without the flag."""
    if not args.prometheus:
        return None
    from ..web.address import DEFAULT_LISTEN, parse_listen
    from ..web.server import WebServer

    host, port = args.prometheus_listen or parse_listen(DEFAULT_LISTEN)
    return WebServer(host, port, live=live, noop=args.noop, layout=args.graphviz_filter)


def _remote_options(args: argparse.Namespace, timeout: float | None) -> RemoteOptions:
    """What the `run` flags say every remote host gets."""
    from ..remote.session import RemoteOptions
    from ..remote.ssh import SshOptions

    ssh = SshOptions(
        identities=tuple(Path(x) for x in args.ssh_ids),
        known_hosts=Path(args.ssh_known_hosts) if args.ssh_known_hosts else None,
        accept_new=args.ssh_accept_new,
        interactive=args.allow_interactive,
    )
    return RemoteOptions(
        ssh=ssh,
        bundle_cache=bundle_cache(),
        cconns=args.cconns,
        caching=not args.no_caching,
        converged_timeout=timeout,
        noop=args.noop,
        json=args.json,
        verbosity=_log_flags(args),
        tmp_prefix=args.tmp_prefix,
        sema=args.sema,
        watch=not args.no_watch,
        depth=args.depth,
        max_depth=args.max_depth,
    )


def _log_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """How much a remote agent logs: what this one was told."""
    if args.log_level is not None:
        return ("--log-level", args.log_level)
    return ("-v",) if args.verbose else ("-q",) if args.quiet else ()


def bundle_cache() -> Path:
    """Where the bundles for remote hosts are built and kept (``PYMGMT_BUNDLE_CACHE``)."""
    if env := os.environ.get("PYMGMT_BUNDLE_CACHE"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/pymgmt/bundles")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "pymgmt" / "bundles"


def _etcd_address(options: ClusterOptions) -> tuple[str, int] | str:
    """Where this host reaches the cluster's etcd: what every tunnel leads to.

    (host, port), or the path of this agent's own tunnel socket when it was
    started by --remote itself (hierarchical execution).
    """
    from urllib.parse import urlsplit

    if not options.serves and options.seeds[0].startswith("unix:"):
        return options.seeds[0].removeprefix("unix:")
    u = urlsplit(options.client_urls[0] if options.serves else options.seeds[0])
    host = u.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return host, u.port or 2379


def _flush_quietly() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            silence(stream)


class _Stopper:
    """Turns a signal, or stdout's reader going away, into a graceful stop.

    The run is then *interrupted*: it stopped before converging, and exits
    128 + the signal's number in run-once mode (130 for ^C, 143 for SIGTERM,
    141 for a closed pipe, as a shell reports a program the signal killed).
    A second signal exits at once, with 128 + that signal.
    """

    def __init__(self, recap: Recap) -> None:
        self.recap = recap
        self.engine: Engine | None = None
        self.interrupts = 0
        self.pipe_closed = False
        #: cancels the cluster's start-up (etcd, the client), while it runs
        self.cancel_start: Callable[[], object] | None = None
        #: the signal that aborted the start-up
        self.start_interrupted: signal.Signals | None = None
        #: run before a second signal exits at once (an agent started by
        #: --remote removes its run directory)
        self.before_exit: Callable[[], None] | None = None

    def on_signal(self, sig: signal.Signals) -> None:
        self.interrupt(sig, f"interrupted by {sig.name}")

    def stdout_closed(self) -> None:
        """stdout's reader went away (``| head -1``): stop quietly, once.

        During a stop already under way it only silences stdout: the reader
        leaving then (a remote agent's SSH session closing) is no second
        signal that should cut the stop short.
        """
        if self.pipe_closed:
            return
        self.pipe_closed = True
        silence(sys.stdout)
        if self.interrupts == 0:
            self.interrupt(signal.SIGPIPE, "stdout was closed (broken pipe)")

    def parent_said(self, sig: signal.Signals, why: str) -> None:
        """The initiator of a remote run said to stop, or went away: a stop, once."""
        if self.interrupts == 0:
            self.interrupt(sig, why)

    def interrupt(self, sig: signal.Signals, why: str) -> None:
        self.interrupts += 1
        if self.interrupts > 1:
            with contextlib.suppress(OSError):
                print(f"\n{sig.name} again: exiting at once", file=sys.stderr, flush=True)
            if self.before_exit is not None:
                self.before_exit()
            os._exit(128 + sig)
        self.recap.interrupt_code = 128 + sig
        if self.engine is not None:
            self.engine.stop(f"{why} (again to exit at once)", interrupted=True)
        elif self.cancel_start is not None:
            self.start_interrupted = sig
            self.cancel_start()


class _Run:
    """One run of the agent inside the event loop: the World, then the engine.

    Single host: a LocalWorld (its unleased keys kept in the state directory)
    and the engine.
    Cluster (world/cluster.py): the etcd server (unless a client), the etcd
    client World, then -- while the engine runs -- the host watcher and this
    host's converged-state publisher. On the way out (converged, SIGINT,
    SIGTERM) they stop in the reverse order: the engine, the watchers, the
    client (its lease revoked: this host's exports vanish from every other
    host), the server.
    """

    def __init__(
        self,
        make_engine: Callable[[World, list[GraphObserver], ConvergedWait | None], Engine],
        frontend: Any,
        guarded: Callable[[Any], Any],
        stopper: _Stopper,
        hostname: str,
        cluster: ClusterOptions | None,
        state_dir: Path,
        noop: bool,
    ) -> None:
        self.noop = noop
        self.make_engine = make_engine
        self.frontend = frontend
        self.guarded = guarded
        self.stopper = stopper
        self.hostname = hostname
        self.cluster = cluster
        self.state_dir = state_dir
        #: why the cluster was lost while the engine ran (None: it was not)
        self.lost: Exception | None = None
        #: the remote hosts of --remote, and what they get (None: none)
        self.remotes: tuple[list[RemoteSpec], RemoteOptions] | None = None
        #: this agent was started by --remote: its line to the initiator
        self.parent: ParentLink | None = None
        #: served on the status socket while the agent runs (None: no socket)
        self.live: LiveState | None = None
        #: --prometheus: the HTTP server, up before anything else and down last
        self.web: WebServer | None = None
        #: the parse to store for the next start once the graph settled (None: none)
        self.keeper: _ParseKeeper | None = None

    async def main(self) -> None:
        """Run the agent, serving `live` on ``<state dir>/status.sock`` meanwhile."""
        if self.live is None:
            return await self._main()
        from ..status.server import serving

        async with serving(self.live, self.state_dir):
            await self._main()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopper.on_signal, sig)
        watched = _watch_stdout_reader(loop, self.stopper.stdout_closed)
        keeping = None
        if self.keeper is not None:
            keeping = asyncio.create_task(self.keeper.keep(), name="parse cache")
        try:
            if self.web is not None:
                await self.web.start()
            if self.cluster is None:
                world = LocalWorld(self.hostname, self.state_dir)  # unleased keys kept there
                await world.load()
                engine = self.make_engine(world, [], None)
                self.stopper.engine = engine
                await engine.run(self.guarded(self.frontend))
            else:
                await self._cluster(self.cluster)
        finally:
            if keeping is not None:  # a store under way finishes (`off_loop`)
                keeping.cancel()
                await asyncio.wait([keeping])
            if self.web is not None:
                await self.web.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if watched is not None:
                loop.remove_reader(watched)

    async def _cluster(self, options: ClusterOptions) -> None:
        from ..engine.cluster_converged import ClusterConvergence
        from ..engine.exporter import Exporter
        from ..frontends.collect import CollectingFrontend
        from ..world.cluster import watch_hosts
        from ..world.resworld import ResWorld

        async with contextlib.AsyncExitStack() as stack:
            remotes = self._remotes(options)
            if remotes is not None:
                remotes.start()  # connect, probe, copy while etcd starts
            try:
                joined = await self._bring_up(stack, options)
            except BaseException:
                if remotes is not None:
                    await remotes.abort()
                raise
            world = joined.world
            resworld = ResWorld(world)
            convergence = ClusterConvergence(world)

            def emit(event: Any) -> None:
                engine.emit(event)  # bound below, before anything runs

            exporter = Exporter(resworld, emit, noop=self.noop)
            # the initiator of a remote run decides when the cluster converged
            waits = self.parent.wait_converged if self.parent else convergence.wait
            engine = self.make_engine(world, [exporter], waits)
            self.stopper.engine = engine
            frontend = self.guarded(CollectingFrontend(self.frontend, resworld, emit))
            joined.auto.emit = engine.emit
            if remotes is not None:
                remotes.attach(
                    world=world, hub=engine.hub, converger=engine.converger, emit=engine.emit
                )
            async with asyncio.TaskGroup() as tg:
                side = [
                    tg.create_task(self._on_world(joined.auto.run()), name="autocluster"),
                    tg.create_task(
                        self._on_world(watch_hosts(world, engine.emit)), name="host watcher"
                    ),
                    tg.create_task(
                        self._on_world(convergence.publish(engine.converger)),
                        name="converged state",
                    ),
                    tg.create_task(exporter.retry_failed(), name="export retry"),
                ]
                if self.parent is not None:
                    side.append(tg.create_task(self.parent.run(), name="initiator link"))
                if remotes is not None:
                    side.append(tg.create_task(remotes.run(), name="remote hosts"))
                try:
                    await engine.run(frontend)
                except* (WorldError, ConnectionError) as eg:
                    self._lost(eg.exceptions[0])
                finally:
                    if remotes is not None:  # they leave the cluster while its etcd runs
                        await remotes.stop(self._stop_word())
                    for t in side:
                        t.cancel()
            if self.lost is None:
                # a clean stop: a member leaves the etcd members while the others can vote
                await joined.auto.leave()
        if self.lost is not None:
            raise ClusterLost(f"lost the etcd cluster: {self.lost}")

    def _remotes(self, options: ClusterOptions) -> Remotes | None:
        """The remote hosts of --remote, ready to start (None: none)."""
        if self.remotes is None:
            return None
        from ..remote.session import Remotes

        specs, remote_options = self.remotes
        return Remotes(specs, remote_options, etcd=_etcd_address(options))

    def _stop_word(self) -> str:
        """What the remote agents are told at the end: the cluster converged, or a signal."""
        recap = self.stopper.recap
        if self.lost is not None:
            return "stop SIGTERM"  # the cluster is gone: nothing converged
        if not recap.interrupted:
            return "converged"
        try:
            name = signal.Signals(recap.interrupt_code - 128).name
        except ValueError:
            name = "SIGINT"
        return f"stop {name}"

    def _lost(self, error: Exception) -> None:
        """The World failed for good: stop the engine gracefully, remember why.

        For good means: the local etcd server crashed and could not be
        restarted (`EtcdCrashed`, its port taken), or this host's name went
        to another host while its lease was lost (`HostnameTaken`). An
        unreachable cluster is not among them: the World waits a partition
        out, for as long as it lasts, while the engine goes on enforcing
        the last graph (issue 10).
        """
        if self.lost is None:
            self.lost = error
            logging.getLogger("pymgmt.cluster").error("lost the etcd cluster: %s", error)
        if self.stopper.engine is not None:
            self.stopper.engine.stop("lost the etcd cluster", interrupted=True)

    async def _on_world(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work`, which uses the World; its failure stops the run, not the task group."""
        try:
            await work
        except WorldError as e:
            self._lost(e)

    async def _bring_up(self, stack: contextlib.AsyncExitStack, options: ClusterOptions) -> Joined:
        """Start the etcd World; a signal meanwhile aborts the start (nothing changed)."""
        from ..world.cluster import open_world

        me = asyncio.current_task()
        assert me is not None
        self.stopper.cancel_start = me.cancel
        try:
            return await open_world(stack, options, self.state_dir, on_failure=self._lost)
        except asyncio.CancelledError:
            sig = self.stopper.start_interrupted
            if sig is not None and me.uncancel() == 0:
                raise _Interrupted(sig) from None
            raise
        finally:
            self.stopper.cancel_start = None


class _SingleHostNote:
    """Says once that exports and collects added to a running single-host graph do nothing.

    The agent chose single-host at start (the graph had neither, no cluster
    flag was given): bringing up etcd under a running graph is not done;
    a restart picks the cluster.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.warned = False

    async def graphs(self, ctx: Any) -> AsyncIterator[Graph[Resource] | InputError]:
        async for g in self.inner.graphs(ctx):
            if not self.warned and not isinstance(g, InputError) and (g.exported or g.collect):
                self.warned = True
                logging.getLogger("pymgmt").warning(
                    "the graph now exports or collects resources, but this agent started "
                    "single-host: they are ignored until it is restarted (or started with "
                    "a cluster flag such as --client-urls)"
                )
            yield g


def _watch_stdout_reader(
    loop: asyncio.AbstractEventLoop, on_gone: Callable[[], None]
) -> int | None:
    """If stdout is a pipe, notice at once when its reader exits (``| head -1``).

    The write end of a pipe never becomes readable; epoll reports EPOLLERR on
    it when the last reader closes, which asyncio hands to a reader callback.
    Without this, a quiet agent would learn of it only at its next line.
    Returns the fd watched, or None.
    """
    try:
        fd = sys.stdout.fileno()
        st = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    # O_RDWR on a FIFO would make our own output "readable": only a write end
    if not stat.S_ISFIFO(st.st_mode) or flags & os.O_ACCMODE != os.O_WRONLY:
        return None

    def gone() -> None:
        loop.remove_reader(fd)
        on_gone()

    loop.add_reader(fd, gone)
    return fd


def validate_command(args: argparse.Namespace) -> int:
    if _missing_file(args.file, as_json=args.json):
        return EXIT_INPUT
    try:
        from ..frontends.yamlgraph import load  # always parsed: the cache is run's only

        graph = load(args.file)
        # a remote graph file: its target and its 'remotes:' tree are checked too
        # (not from standard input: 'remotes:' are files next to the graph's own)
        remotely = graph.remote is not None and args.file != STDIN
        remote = _remote_spec(args.file) if remotely else None
    except InputError as e:
        print_input_error(e, as_json=args.json)
        return EXIT_INPUT
    # '@@' resources: applied here like any other, and published
    exports = [r for k, r in graph.vertices.items() if k in graph.exported]
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
                    "exported": [{"kind": r.kind, "name": r.name} for r in exports],
                    "collect": [
                        {
                            "kind": c.kind,
                            "pattern": c.pattern,
                            "mode": c.mode,
                            "owners": list(c.owners),
                            "groups": list(c.groups),
                        }
                        for c in graph.collect
                    ],
                    "warnings": [w.as_dict() for w in graph.warnings],
                    **({"remote": _remote_dict(remote)} if remote else {}),
                }
            )
        )
        return EXIT_OK
    by_kind: dict[str, int] = {}
    for r in graph.vertices.values():
        by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items()))
    print(
        f"{graph.source}: graph {graph.name!r} is valid: {_count(len(graph.vertices), 'resource')} "
        f"({kinds or 'none'}), {len(graph.edges)} edges"
    )
    for r in graph.vertices.values():
        meta = r.meta.non_default()
        if meta or args.verbose:
            print(f"  {r}: meta " + ", ".join(f"{k}={v!r}" for k, v in meta.items()))
    if exports:
        print(f"  exports: {', '.join(str(r) for r in exports)}")
    if graph.collect:
        specs = (c.kind + (":" + c.pattern if c.pattern else "") for c in graph.collect)
        print(f"  collects: {', '.join(specs)}")
    if remote is not None:
        print(f"  runs on: {remote.target.label} as {remote.hostname} (with --remote)")
        for child in remote.children:
            print(f"  and there, on: {child.target.label} as {child.hostname} ({child.file})")
    return EXIT_OK


def _count(n: int, noun: str) -> str:
    """``1 resource``, ``2 resources``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _remote_spec(path: str) -> RemoteSpec:
    """The file as a remote graph (``remote:``, ``remotes:``); InputErrors if they are wrong."""
    from ..remote.spec import load_specs

    (spec,) = load_specs([path])
    return spec


def _remote_dict(spec: RemoteSpec) -> dict[str, object]:
    return {
        "target": spec.target.label,
        "hostname": spec.hostname,
        "remotes": [_remote_dict(c) for c in spec.children],
    }
