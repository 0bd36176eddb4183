"""Log lines: the one format of every line ``pymgmt run`` writes for people.

A line is ``2026-11-27T22:30:01.123+00:00 NOTICE File[/etc/x]: message``: an
ISO 8601 date with milliseconds and the local offset, a level, and the
resource when there is one (issue 12). The console reporter's event lines,
the progress lines and Python `logging` records all end up in one `Output`,
so they share the date, the level filter (``--log-level``), the format
(``--log-format text|json``), redaction, and the live status line, which
they never garble.

Under systemd (``JOURNAL_STREAM`` names the very stream stderr is), each
line starts with its syslog priority, ``<5>NOTICE File[/etc/x]: ...``, and
has no date: journald stores the priority (``journalctl -p warning`` works)
and stamps the line itself.

Levels: DEBUG (unchanged checks, diffs), INFO (the graph, convergence,
progress), NOTICE (a change made, a drift repaired, a change noop would
make: Puppet's "Notice", syslog's 5), WARNING (a failure that will be
retried, a refused export), ERROR (a failure).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

from ..redaction import RedactingFilter, redact
from .textline import timestamp, visible

#: a change made (or, in noop, to make): between INFO and WARNING, as syslog's notice
NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

#: the names ``--log-level`` takes
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": NOTICE,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
#: syslog priorities, which journald reads from ``<N>`` at the start of a line
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, NOTICE: 5, logging.WARNING: 4, logging.ERROR: 3}
#: what a status line is cleared with: back to the start of the row, erase it
CLEAR = "\r\x1b[K"
#: "File[/etc/x]: the rest": a message that starts with the resource it is about
_RESOURCE_PREFIX = re.compile(r"([A-Za-z][\w:.-]*\[[^\n]*?\]): ")


def priority(level: int) -> int:
    """The syslog priority of a logging level (a level between two takes the lower one's)."""
    for lvl in sorted(_PRIORITY, reverse=True):
        if level >= lvl:
            return _PRIORITY[lvl]
    return 7


def level_name(level: int) -> str:
    return logging.getLevelName(level) if level in _PRIORITY else f"LEVEL{level}"


def journal_stream(stream: IO[str]) -> bool:
    """True when `stream` is the one systemd connected to the journal.

    systemd sets ``JOURNAL_STREAM=DEVICE:INODE`` for a service whose output
    goes to the journal; a child that redirects stderr elsewhere inherits
    the variable, so the stream itself is compared, not only the variable.
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


class Closable:
    """A stream whose reader may go away (``| head -1``): that is no error.

    The stream is then pointed at /dev/null and `on_closed` is called once,
    so the CLI can stop the agent quietly (issue 8, item 17).
    """

    def __init__(self, out: IO[str], on_closed: Callable[[], None] | None) -> None:
        self.out = out
        self.on_closed = on_closed
        self.closed = False

    def put(self, text: str) -> None:
        """Write and flush `text`."""
        if self.closed:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            self.closed = True
            silence(self.out)
            if self.on_closed is not None:
                self.on_closed()


class Output(Closable):
    """The stream people read (stderr): log lines, and on a terminal one live status line.

    Writes are whole lines, serialised by a lock (a thread may log), and
    flushed at once. A shown status line is cleared before a log line is
    written and drawn again after it, so a line never shares its row with
    the status. A reader that went away (``2>&1 | head -1``) is no error.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        level: int = logging.INFO,
        fmt: str = "text",
        journal: bool | None = None,
        live: bool | None = None,
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(stream or sys.stderr, on_closed)
        self.level = level
        self.json = fmt == "json"
        self.journal = journal_stream(self.out) if journal is None else journal
        #: a live status line may be drawn: a terminal, text lines, no journal
        self.live = _is_terminal(self.out) if live is None else live
        self.live = self.live and not self.json and not self.journal
        self.lock = threading.Lock()
        #: the status line to keep at the bottom ("": none)
        self.status_text = ""
        self.status_shown = False

    def enabled(self, level: int) -> bool:
        return level >= self.level

    def line(
        self,
        level: int,
        message: str,
        resource: str | None = None,
        detail: str = "",
        *,
        always: bool = False,
        **fields: object,
    ) -> None:
        """One log line (and `detail`'s lines, indented under it in text: a diff).

        `always`: whatever ``--log-level`` says (the recap ends every run)."""
        if level < self.level and not always:
            return
        self.write(self.format(level, message, resource, detail, fields))

    def format(
        self, level: int, message: str, resource: str | None, detail: str, fields: dict[str, Any]
    ) -> str:
        """The line (with its detail lines) as it is written: text or JSON, journal or not."""
        prefix = f"<{priority(level)}>" if self.journal else ""
        if self.json:
            return prefix + _json_line(level, message, resource, detail, fields) + "\n"
        head = f"{level_name(level):<5} " + (f"{visible(resource)}: " if resource else "")
        date = "" if self.journal else timestamp(time.time()) + " "
        first, *more = message.split("\n")
        if detail:
            more += detail.rstrip("\n").split("\n")
        lines = [prefix + date + head + visible(first), *(prefix + visible(x) for x in more)]
        return "\n".join(lines) + "\n"

    def block(self, level: int, text: str) -> None:
        """Lines written as they are, whatever the level (the recap), each with the
        priority under the journal."""
        if not text:
            return
        if self.journal:
            text = "".join(f"<{priority(level)}>{x}\n" for x in text.rstrip("\n").split("\n"))
        self.write(text if text.endswith("\n") else text + "\n")

    def write(self, text: str) -> None:
        """Write whole lines; the status line is cleared first and drawn again after."""
        with self.lock:
            if self.status_shown:
                text = CLEAR + text
            if self.status_text:
                text += self._fit(self.status_text)
            self.status_shown = bool(self.status_text)
            self._put(text)

    def status(self, text: str) -> None:
        """Show `text` as the live status line ("" removes it); only on a terminal."""
        if not self.live:
            return
        with self.lock:
            if text == self.status_text and self.status_shown == bool(text):
                return
            self.status_text = text
            if not text and not self.status_shown:
                return
            self._put(CLEAR + (self._fit(text) if text else ""))
            self.status_shown = bool(text)

    def _fit(self, text: str) -> str:
        """One row: a status that wrapped could not be cleared with a carriage return."""
        try:
            width = os.get_terminal_size(self.out.fileno()).columns
        except (OSError, ValueError, AttributeError):
            width = 0
        return visible(text)[: (width or 80) - 1]  # 0: a terminal that never said its size

    def _put(self, text: str) -> None:
        # a full disk or a closed file: logging must never stop the agent
        with contextlib.suppress(OSError, ValueError):
            self.put(text)


def _json_line(
    level: int, message: str, resource: str | None, detail: str, fields: dict[str, Any]
) -> str:
    """One object: time, level, resource, message, detail, then the fields that are set."""
    doc: dict[str, object] = {"time": timestamp(time.time()), "level": level_name(level).lower()}
    if resource:
        doc["resource"] = resource
    doc["message"] = message
    if detail:
        doc["detail"] = detail
    doc.update((k, v) for k, v in fields.items() if v != "")
    return json.dumps(doc, default=str)


def _is_terminal(stream: IO[str]) -> bool:
    if os.environ.get("TERM", "") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def silence(out: IO[str]) -> None:
    """Point `out`'s file descriptor at /dev/null: its reader is gone.

    Later writes (and the interpreter's last flush) then succeed quietly
    instead of raising BrokenPipeError again; what was buffered is dropped.
    """
    import io

    with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
        fd = out.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


class OutputHandler(logging.Handler):
    """Python `logging` records into an `Output`: the same format as every other line.

    A message that starts with ``Kind[name]: `` is about that resource (the
    engine's per-vertex loggers say so): the resource becomes the line's
    resource field (its own key in JSON).
    """

    def __init__(self, output: Output) -> None:
        super().__init__()
        self.output = output
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            resource = getattr(record, "resource", None)
            if resource is None and (m := _RESOURCE_PREFIX.match(message)):
                resource, message = m.group(1), message[m.end() :]
            detail = ""
            if record.exc_info and not record.exc_text:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            if record.exc_text:
                detail = record.exc_text
            self.output.line(record.levelno, message, resource, detail)
        except Exception:  # logging's own contract: a handler never raises
            self.handleError(record)


def setup_logging(
    level: str = "info", fmt: str = "text", *, stream: IO[str] | None = None
) -> Output:
    """Send pymgmt's log records, and every other library's, into one `Output` on stderr.

    Called again (a SIGHUP reload), it changes the level of the `Output`
    already there, which every reporter holds; the format stays.
    """
    global _current
    if _current is not None and stream is None:
        _current.level = LEVELS[level]
        logging.getLogger("pymgmt").setLevel(_current.level)
        return _current
    output = Output(stream, level=LEVELS[level], fmt=fmt)
    handler = OutputHandler(output)
    root = logging.getLogger("pymgmt")
    root.handlers[:] = [handler]
    root.setLevel(output.level)
    root.propagate = False
    # Other libraries' records (asyncio's "Task exception was never
    # retrieved", with a traceback) would reach logging's last-resort
    # handler, which redacts nothing: give the root logger ours.
    logging.getLogger().handlers[:] = [handler]
    if output.journal and not isinstance(sys.stderr, _JournalStderr):
        sys.stderr = _JournalStderr(sys.stderr)
    _redact_uncaught()
    _current = output
    return output


class _JournalStderr:
    """sys.stderr under the journal: a line printed directly, not logged (the
    ``error: ...`` that refuses a start, a traceback), gets the error priority,
    as every `Output` line gets its own; journald would file it as info."""

    def __init__(self, inner: IO[str]) -> None:
        self.inner = inner
        self.fresh = True

    def write(self, text: str) -> int:
        pieces = []
        for piece in text.splitlines(keepends=True):
            if self.fresh:
                pieces.append(f"<{priority(logging.ERROR)}>")
            pieces.append(piece)
            self.fresh = piece.endswith("\n")
        self.inner.write("".join(pieces))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


#: the output `setup_logging` made (None: not set up, as in a library use)
_current: Output | None = None


def current() -> Output | None:
    """The process's `Output` (None: `setup_logging` never ran, as in a library use)."""
    return _current


def relay(host: str, line: str, output: Output | None = None) -> None:
    """A line another host's agent wrote (``--remote``), shown as ``[host] line``.

    Through the `Output` when there is one: a live status line is cleared
    first, the journal gets a priority, ``--log-format json`` an object
    with the host. The line must already be redacted and made visible.
    """
    output = output or _current
    if output is None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"[{host}] {line}\n")
            sys.stderr.flush()
    elif output.json:
        output.line(logging.INFO, line, always=True, host=host)
    else:
        output.block(logging.INFO, f"[{host}] {line}\n")


def _redact_uncaught() -> None:
    """Tracebacks the interpreter prints itself go through `redact` too.

    An exception escaping the command, or a thread, is printed by
    sys.excepthook / threading.excepthook, not by a log handler: its
    message may hold a secret like any other output (a bug, but still).
    """

    def print_redacted(text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(redact(text))
            sys.stderr.flush()

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        print_redacted("".join(traceback.format_exception(kind, value, tb)))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return  # threading's own hook is silent about it too
        name = args.thread.name if args.thread is not None else "?"
        lines = traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
        print_redacted(f"Exception in thread {name}:\n" + "".join(lines))

    sys.excepthook = hook
    threading.excepthook = thread_hook
