"""``pymgmt run --converged-timeout 0 FILE``, before anything heavy is imported.

`try_run` is called by `cli.main` first for every ``pymgmt run``. It
answers only the plainest one-shot run (the flags `recognise` accepts,
no configuration file, not under systemd), only for a graph whose plan
(oneshot/plan.py) a full run stored, and only when it is sure of every
file (oneshot/apply.py `look`) and package (oneshot/execute.py): it then
runs the graph (oneshot/execute.py) and writes what the full run would
write (its lines and recap, to the character but for times and dates)
and its exit code. In every other case
it returns before changing or writing anything, and the full run goes on
as if it had never been called. `run_stored` is the same executor for a
full run that has just validated its graph and stored the plan.
"""

from __future__ import annotations

import os
import sys
import time

from ..report.exitcodes import EXIT_CHANGED, EXIT_FAILED
from ..report.textline import timestamp, visible
from ..safepath import read_regular, walk
from ..statelock import default_prefix, lock_at, release
from .apply import Outcome, look
from .plan import Plan, plan_key, read_at

#: the configuration file `pymgmt run` reads when it exists (config.DEFAULT_PATH)
CONFIG_PATH = "/etc/pymgmt/pymgmt.yaml"
#: the largest graph file read (frontends/graphfile.py refuses larger ones)
_MAX_GRAPH = 64 << 20
#: the recap's outcomes, in its order (report/recap.py)
_ORDER = ("unchanged", "changed", "repaired", "would change", "failed", "skipped", "pending")
_SIGNAL_NAMES = {2: "SIGINT", 13: "SIGPIPE", 15: "SIGTERM"}
#: flags taken without a value, besides the two that take one
_QUIET_FLAGS = ("-q", "--quiet")
_PLAIN_FLAGS = ("--no-watch", "--no-config", *_QUIET_FLAGS)
#: the levels -q leaves out (the full run's log level is then WARNING)
_CHATTY = ("DEBUG", "INFO", "NOTICE")
#: a run under systemd talks to it (sd_notify, the journal's priorities): the full path
_SYSTEMD_ENV = ("NOTIFY_SOCKET", "JOURNAL_STREAM")


class Command:
    """A command line the fast path may answer: the graph file and the state directory."""

    __slots__ = ("file", "no_config", "prefix", "quiet")

    def __init__(self, file: str, prefix: str | None, no_config: bool, quiet: bool) -> None:
        self.file = file
        self.prefix = prefix
        self.no_config = no_config
        #: -q: only warnings, failures and the recap, as the full run's log level says
        self.quiet = quiet


def recognise(words: list[str]) -> Command | None:
    """The command if `words` is ``run`` with only flags the fast path honours; else None.

    Exact spellings only (argparse's abbreviations and anything unknown go
    to the full parser, which explains them): ``--converged-timeout 0``
    (required), ``--prefix DIR``, ``--no-watch``, ``--no-config``, ``-q``
    (``--quiet``), mgmt's frontend word ``yaml`` and the graph file (not
    standard input).
    """
    if not words or words[0] != "run":
        return None
    file = prefix = None
    timeout = frontend = no_config = quiet = False
    rest = iter(words[1:])
    for word in rest:
        flag, eq, value = word.partition("=")
        if flag in ("--converged-timeout", "--prefix"):
            value = value if eq else next(rest, "")
            if flag == "--prefix" and prefix is None and value and not value.startswith("-"):
                prefix = value
            elif flag == "--converged-timeout" and not timeout and value == "0":
                timeout = True
            else:
                return None
        elif word in _PLAIN_FLAGS:
            no_config = no_config or word == "--no-config"
            quiet = quiet or word in _QUIET_FLAGS
        elif word == "yaml" and not frontend and file is None:
            frontend = True
        elif file is None and word and not word.startswith("-"):
            file = word
        else:
            return None
    if not timeout or file is None:
        return None
    return Command(file, prefix, no_config, quiet)


def run_or_return(words: list[str]) -> None:
    """The ``pymgmt`` script's first step: a run the fast path answers ends here.

    bin/pymgmt calls it before it imports `pymgmt.cli.main` (argparse's
    tables, which an answered run never reads). The process then exits at
    once (`os._exit`, after a flush): a finished one-shot run leaves the
    interpreter's shutdown nothing to do but free every object one by one,
    ~4 ms of a 40 ms run (issue 13); nothing is buffered, no thread runs,
    and the state directory's lock goes with the process. Any other run
    returns, and `try_run`, called by `cli.main` next, gives it this answer
    instead of looking again.
    """
    code, store = try_run(words)
    if code is None:
        _asked[tuple(words)] = store
        return
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (contextlib costs the fast path ~5 ms)
            stream.flush()
        except (OSError, ValueError):
            pass  # a reader gone: the run's own words were already written or dropped
    os._exit(code)


#: `run_or_return`'s answers not taken yet by `try_run`: command words -> store a plan
_asked: dict[tuple[str, ...], bool] = {}


def try_run(words: list[str]) -> tuple[int | None, bool]:
    """(the exit code if the fast path answered the run, else None; whether the
    full run should store a plan of its graph for the next one)."""
    if tuple(words) in _asked:  # the script asked already, and the fast path declined
        return None, _asked.pop(tuple(words))
    command = recognise(words)
    if command is None or not _environment_allows(command):
        return None, False
    try:
        return _try(command)
    except KeyboardInterrupt:
        return _interrupted_before_start(2), False


def _interrupted_before_start(sig: int) -> int:
    """What the full run says of a signal before its start; the exit code."""
    name = _SIGNAL_NAMES.get(sig, f"signal {sig}")
    print(f"pymgmt: interrupted by {name} before start; nothing was changed", file=sys.stderr)
    return 128 + sig


def _try(command: Command) -> tuple[int | None, bool]:
    started, stamp = time.monotonic(), time.time()
    prefix = os.path.abspath(command.prefix or default_prefix())
    try:
        dfd = walk(prefix)
    except Exception:  # missing (no plan yet), or refused: the full run says why
        return None, True
    try:
        source = os.path.abspath(command.file)
        text = read_regular(source, limit=_MAX_GRAPH)
        if text is None:
            return None, False  # the full run says what is wrong with it
        plan = read_at(dfd, plan_key(text, source))
        if plan is None or (plan.pkgs and plan.dpkg != _dpkg_stamp()):
            return None, True  # none, or packages came or went since: AutoEdges may differ
        try:
            held = lock_at(dfd)
        except OSError:  # another agent has it: the full run names it
            return None, False
        with _Signals() as signals:  # from here on, a signal stops the run gracefully
            report = _Report(plan, started, stamp, signals.caught, quiet=command.quiet)
            outcome = _settle(plan, dfd, report)
            if outcome is None:
                release(held)
                if signals.caught:  # nothing was changed: the full run's words for it
                    return _interrupted_before_start(signals.caught[0]), False
                return None, False
            return report.end(outcome), False  # the lock goes with the process
    finally:
        os.close(dfd)


def run_stored(prefix: str, text: bytes, source: str, *, quiet: bool = False) -> int | None:
    """The rest of a full run whose graph was just validated and its plan stored.

    The full run holds the state directory's lock and has written the
    compiler's lines; when the plan lets the fast path make the changes,
    it makes them here instead of starting the engine (a first apply of
    10,000 files needs no 10,000 workers). None: start the engine.
    """
    started, stamp = time.monotonic(), time.time()
    dfd = walk(prefix)
    try:
        plan = read_at(dfd, plan_key(text, source))
        if plan is None or not plan.applies:
            return None
        with _Signals() as signals:
            report = _Report(plan, started, stamp, signals.caught, compiled=True, quiet=quiet)
            outcome = _settle(plan, dfd, report)
            if outcome is None:
                if signals.caught:
                    return _interrupted_before_start(signals.caught[0])
                return None
            return report.end(outcome)
    finally:
        os.close(dfd)


def _settle(plan: Plan, dfd: int, report: _Report) -> Outcome | None:
    """Check the plan's files and packages and, if the plan allows it, run it; None: the
    full run, and nothing was changed or started.

    `report.stop`: the signals caught meanwhile (nothing new starts after one).
    """
    if not _state_dir_plain(dfd):
        return None
    if not plan.applies:  # files alone (plan.py): answered only when every one is as wanted
        if look(plan) != {}:
            return None
        outcome = Outcome()
    else:
        if (plan.execs or plan.pkgs) and not _may_start(plan):
            return None
        todo = look(plan)
        if todo is None:
            return None
        todo.update((i, [("run", None, e[0])]) for i, e in plan.execs.items())
        outcome = Outcome(todo)
        if todo:
            from .execute import execute  # a converged run of files has no use for it

            if plan.execs:  # commands take their time: each line is written as it happens
                report.go_live(outcome)
            execute(plan, todo, report.stop, outcome)
    if report.stop and not outcome.interrupted:  # a signal after the last batch began
        from .execute import say_stopping

        say_stopping(outcome, report.stop[0], 0)
    return outcome


def _may_start(plan: Plan) -> bool:
    """Whether the plan's commands may start here and its packages are as wanted
    (oneshot/execute.py, imported only for a plan that has either)."""
    from .execute import can_run, pkgs_unchanged

    return can_run(plan) and pkgs_unchanged(plan)


class _Signals:
    """SIGINT and SIGTERM noted, not raised, while changes are made (as the engine stops
    gracefully): the wave under way is finished, and the run ends interrupted."""

    def __init__(self) -> None:
        self.caught: list[int] = []
        self._old: dict[int, object] = {}

    def __enter__(self) -> _Signals:
        import _signal  # type: ignore[import-not-found]  # signal.py imports enum: too dear

        for sig in (_signal.SIGINT, _signal.SIGTERM):
            self._old[sig] = _signal.signal(sig, self._caught)
        return self

    def _caught(self, sig: int, frame: object) -> None:
        """The first stop is graceful; the next one exits at once, as the full run does
        (a command under way dies with this process: spawn.py's guard)."""
        self.caught.append(sig)
        if len(self.caught) > 1:
            name = _SIGNAL_NAMES.get(sig, f"signal {sig}")
            try:  # noqa: SIM105 (contextlib costs the fast path ~5 ms)
                os.write(2, f"\n{name} again: exiting at once\n".encode())
            except OSError:
                pass
            os._exit(128 + sig)

    def __exit__(self, *exc: object) -> None:
        import _signal

        for sig, old in self._old.items():
            _signal.signal(sig, old)


def _environment_allows(command: Command) -> bool:
    if any(os.environ.get(name) for name in _SYSTEMD_ENV):
        return False
    return command.no_config or not os.path.lexists(CONFIG_PATH)


def _dpkg_stamp() -> tuple[int, ...]:
    from ..resources.pkgstate import dpkg_stamp

    return dpkg_stamp()


def _state_dir_plain(dfd: int) -> bool:
    """No refresh notification waits in the state directory (the engine delivers
    those), and neither of its subdirectories is a symlink (the full run refuses
    those it cannot trust, and says so)."""
    try:
        st = os.stat("state", dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        if (st.st_mode & 0o170000) == 0o120000:
            return False
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open("refresh", flags, dir_fd=dfd)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # a symlink, or not a directory: the full run refuses it
    try:
        return not os.listdir(fd)
    finally:
        os.close(fd)


class _Report:
    """The run's lines and recap, as the full run writes them; its exit code.

    The very text `report.console` and `report.recap` write for such a run
    (tests/oneshot compare the two). A run of files writes it all at its end
    (a list joined once: 100k lines); a run of commands writes each line as
    it happens (`go_live`), as the full run does. `compiled`: the compiler
    already wrote its lines (a full run handed its graph over, `run_stored`).
    `quiet` (-q): no line below WARNING, as the full run's logging then.
    """

    def __init__(
        self,
        plan: Plan,
        started: float,
        stamp: float,
        stop: list[int],
        *,
        compiled: bool = False,
        quiet: bool = False,
    ) -> None:
        self.plan, self.started, self.stamp, self.stop = plan, started, stamp, stop
        self.quiet = quiet
        self.head = [] if quiet else [*([] if compiled else plan.lines), _graph_line(plan)]
        #: stderr's reader left while lines were written live
        self.closed = False

    def go_live(self, outcome: Outcome) -> None:
        self._write([_line(self.stamp, "INFO", x) for x in self.head])
        self.head = []
        outcome.say = self._say

    def _say(self, at: float, level: str, i: int, text: str) -> None:
        if not (self.quiet and level in _CHATTY):
            self._write([_notice(self.plan, at, level, i, text)])

    def _write(self, out: list[str]) -> None:
        if not self.closed and not _write_out("".join(out)):
            self.closed = True  # the full run's stop for it: nothing new starts
            _silence_stderr()
            self.stop.append(13)

    def end(self, outcome: Outcome) -> int:
        plan = self.plan
        out = [_line(self.stamp, "INFO", x) for x in self.head]
        out += (
            _notice(plan, at, lvl, i, what)
            for at, lvl, i, what in outcome.notices
            if not (self.quiet and lvl in _CHATTY)
        )
        if not outcome.interrupted and not self.quiet:
            out.append(_line(time.time(), "INFO", "Converged for 0 seconds, exiting"))
        how = " (interrupted)" if outcome.interrupted else ""
        took = time.monotonic() - self.started
        out.append(f"Recap of graph {plan.name!r} after {took:.2f}s{how}:\n")
        states = outcome.states(plan)
        out.append(recap_text(plan, states, interrupted=bool(outcome.interrupted)))
        self._write(out)
        if self.closed:  # its reader left (``| head -1``): as a full run stops then
            return 128 + 13  # SIGPIPE, as a shell says of a program the pipe killed
        if outcome.interrupted:
            return 128 + outcome.interrupted
        changed = EXIT_CHANGED if "changed" in states.values() else 0
        return changed | (EXIT_FAILED if outcome.failed else 0)


def _notice(plan: Plan, at: float, level: str, i: int, text: str) -> str:
    return _line(at, level, text if i < 0 else f"{visible(plan.names[i])}: {text}")


def _line(at: float, level: str, message: str) -> str:
    return f"{timestamp(at)} {level:<5} {visible(message)}\n"


def recap_text(plan: Plan, states: dict[int, str], *, interrupted: bool) -> str:
    """The recap's per-resource lines and its total (report/recap.py's words), from
    each vertex's outcome (`Outcome.states`)."""
    width = max((len(name) for name in plan.names), default=10)
    rows = sorted((plan.names[i], word) for i, word in states.items() if word != "unchanged")
    text = "".join(f"  {name:<{width}}  {word}\n" for name, word in rows)
    counts: dict[str, int] = {}
    for word in states.values():
        key = word.split(" (")[0].split(":")[0].lower()
        counts[key] = counts.get(key, 0) + 1
    always = ("unchanged", "changed", "failed", *(("pending",) if interrupted else ()))
    parts = [f"{counts.get(k, 0)} {k}" for k in _ORDER if counts.get(k) or k in always]
    verdict = "INTERRUPTED" if interrupted else "OK"
    if not interrupted and (counts.get("failed") or counts.get("skipped")):
        verdict = "FAILED"
    n = len(plan.names)
    return text + f"{verdict}: {n} {'resource' if n == 1 else 'resources'}: {', '.join(parts)}\n"


def _graph_line(plan: Plan) -> str:
    return f"Graph[{plan.name}]: {plan.vertices} vertices, {plan.edges} edges (from {plan.source})"


def _write_out(text: str) -> bool:
    """Write `text` to stderr; False if its reader went away.

    Straight to the descriptor, chunk by chunk: a text stream's one big
    write can end in a short write that no exception reports.
    """
    try:
        sys.stderr.flush()  # a full run's own lines first (run_stored)
        data = text.encode(sys.stderr.encoding or "utf-8", "backslashreplace")
    except (OSError, ValueError):
        data = text.encode("utf-8", "backslashreplace")
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(2, view[: 1 << 16]) :]
        except BrokenPipeError:
            return False
        except OSError:  # a full disk: logging never fails a run
            return True
    return True


def _silence_stderr() -> None:
    """Point stderr at /dev/null, so that the interpreter's last flush succeeds."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass
