"""Reporters: log lines a person can follow, and JSON lines for machines.

Both fall silent instead of crashing when their reader goes away (``pymgmt
run ... | head -1``, issue 8 item 17): the stream is pointed at /dev/null and
`on_closed` is called once, so the CLI can stop the agent quietly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from ..errors import InputError
from .events import (
    Checked,
    CollectChanged,
    CollectRefused,
    Converged,
    Event,
    Exported,
    Failed,
    Finished,
    GraphRejected,
    GraphStarted,
    GraphSwapped,
    RemoteChanged,
    RemoteOutput,
    Settled,
    Stopping,
)


def _ts() -> str:
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def silence(out: IO[str]) -> None:
    """Point `out`'s file descriptor at /dev/null: its reader is gone.

    Later writes (and the interpreter's last flush) then succeed quietly
    instead of raising BrokenPipeError again; what was buffered is dropped.
    """
    with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
        fd = out.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


class _Stream:
    """What both reporters share: a stream that may close, and a stop that may come."""

    def __init__(self, out: IO[str] | None, on_closed: Callable[[], None] | None) -> None:
        self.out = out or sys.stdout
        self.on_closed = on_closed
        self.closed = False
        #: a stop has begun: from now on nothing may claim convergence
        self.stopping = False

    def write(self, text: str) -> None:
        """Write and flush `text`; a reader that went away is not an error."""
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

    def claims_convergence_after_stop(self, event: Event) -> bool:
        """True for a Converged/Settled that comes once a stop began (workers
        going idle because they were stopped is not convergence)."""
        if isinstance(event, Stopping):
            self.stopping = True
        return self.stopping and isinstance(event, (Converged, Settled))


class ConsoleReporter(_Stream):
    """Human-readable lines in mgmt's spirit: ``File[f1]: CheckApply(apply=True)``."""

    def __init__(
        self,
        out: IO[str] | None = None,
        *,
        verbose: bool = False,
        quiet: bool = False,
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(out, on_closed)
        self.verbose = verbose
        self.quiet = quiet

    def line(self, text: str) -> None:
        self.write(f"{_ts()} {text}\n")

    def listed(self, **names_by_verb: list[str]) -> None:
        """One indented line per name, in the order given: ``  added: File[f]``."""
        for verb, names in names_by_verb.items():
            for n in names:
                self.line(f"  {verb}: {n}")

    def emit(self, event: Event) -> None:
        if self.claims_convergence_after_stop(event):
            return
        if isinstance(event, Failed):
            retry = "" if event.retry_in is None else f" (retrying in {event.retry_in:.3g} s)"
            self.line(f"{event.vertex}: FAILED in {event.phase}: {event.error}{retry}")
        elif isinstance(event, GraphRejected):
            self.line("the new graph is invalid; the running graph is kept:")
            self.write("".join(f"  {e}\n" for e in event.errors))
        elif isinstance(event, CollectRefused):
            self.line(f"{_refused_text(event)}")
        elif isinstance(event, RemoteOutput):
            # the remote's own lines, stamped there; a terminal escape from
            # another host is shown, never acted on
            self.write(f"[{event.host}] {visible(event.line)}\n")
        elif isinstance(event, RemoteChanged) and (event.stage == "failed" or not self.quiet):
            self.line(f"remote {event.host}: {_remote_text(event)}")
        if self.quiet:
            return
        if isinstance(event, GraphStarted):
            self.line(
                f"Graph[{event.name}]: {event.vertices} vertices, {event.edges} edges "
                f"(from {event.source})"
            )
        elif isinstance(event, GraphSwapped):
            self.line(
                f"Graph[{event.name}]: changeover: {event.kept} kept, "
                f"{len(event.replaced)} replaced, {len(event.added)} added, "
                f"{len(event.removed)} removed"
            )
            self.listed(replaced=event.replaced, added=event.added, removed=event.removed)
        elif isinstance(event, Checked):
            self.checked(event)
        elif isinstance(event, Converged):
            self.line(f"Converged for {event.seconds:g} seconds, exiting")
        elif isinstance(event, Settled):
            if event.would_change:  # noop: idle, but not as wanted
                self.line(
                    f"Idle (noop): {len(event.would_change)} of {event.vertices} resources "
                    f"would change: {', '.join(event.would_change)}"
                )
            elif event.failed:
                self.line(
                    f"Converged, but {len(event.failed)} of {event.vertices} resources "
                    f"failed: {', '.join(event.failed)}"
                )
            else:
                self.line(f"Converged: all {event.vertices} resources as wanted")
        elif isinstance(event, Exported):
            listed = f": {', '.join(event.keys)}" if event.keys else ""
            self.line(f"Exported {event.count} resource{_s(event.count)}{listed}")
        elif isinstance(event, CollectChanged):
            self.line(
                f"Collected: {len(event.added)} added, {len(event.changed)} changed, "
                f"{len(event.removed)} removed, {event.kept} kept"
            )
            self.listed(added=event.added, changed=event.changed, removed=event.removed)
        elif isinstance(event, Stopping) and event.reason != "converged":
            self.line(f"Stopping: {event.reason}")

    def checked(self, ev: Checked) -> None:
        if ev.pending_on and (not ev.changes or ev.note):
            note = f": {ev.note}" if ev.note else ""
            self.line(f"{ev.vertex}: pending on {', '.join(ev.pending_on)} (noop){note}")
            return
        if not ev.changes:
            if self.verbose:
                self.line(
                    f"{ev.vertex}: CheckApply(apply=False): converged ({ev.reason}, "
                    f"{ev.seconds * 1000:.1f} ms)"
                )
            return
        what = ", ".join(_change_text(c.field, c.old, c.new) for c in ev.changes)
        if ev.seconds >= 0.1:
            what += f" ({ev.seconds:.2f} s)"
        if ev.noop:
            after = f", after {', '.join(ev.pending_on)}" if ev.pending_on else ""
            self.line(f"{ev.vertex}: would change: {what} (noop{after})")
        elif ev.drift:
            self.line(f"{ev.vertex}: CheckApply(apply=True): repaired drift: {what}")
        else:
            self.line(f"{ev.vertex}: CheckApply(apply=True): changed: {what}")
        if ev.noop or self.verbose:
            self.write(
                "".join(
                    f"    {visible(dl)}\n"
                    for c in ev.changes
                    if c.diff
                    for dl in c.diff.rstrip("\n").split("\n")
                )
            )


def visible(line: str) -> str:
    """A diff line as text: each character a terminal would act on (an escape
    sequence, a carriage return) written as its escape. Content may be another
    host's (a collected file), or anyone's who could write the file."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in line)


def _refused_text(ev: CollectRefused) -> str:
    """``refused host b's File[x]: its path ../../etc/passwd leaves /tmp/mgmtA/``."""
    what = f"{ev.kind.capitalize()}[{ev.name}]" if ev.kind else f"export {ev.name!r}"
    return f"refused host {ev.host}'s {what}: {ev.reason}"


def _remote_text(ev: RemoteChanged) -> str:
    text = {"exited": f"exited {ev.exit_code}", "failed": "FAILED"}.get(ev.stage, ev.stage)
    return f"{text}: {ev.message}" if ev.message else text


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _change_text(field: str, old: object, new: object) -> str:
    if field == "run":
        return f"run {new!r}"
    if field == "content":
        return "content" if old is None else f"content {old} -> {new}"
    if old is None:
        return f"{field} {new}"
    return f"{field} {old} -> {new}"


class JsonReporter(_Stream):
    """One JSON object per line, one line per event, for machines."""

    def __init__(
        self, out: IO[str] | None = None, *, on_closed: Callable[[], None] | None = None
    ) -> None:
        super().__init__(out, on_closed)

    def write_obj(self, obj: dict[str, Any]) -> None:
        self.write(json.dumps(obj, default=_default, sort_keys=False) + "\n")

    def emit(self, event: Event) -> None:
        if self.claims_convergence_after_stop(event):
            return
        if isinstance(event, RemoteOutput) and event.parsed is not None:
            self.write_obj(event.parsed)  # the remote's own event, with its host
            return
        name = type(event).__name__
        body = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        self.write_obj({"time": round(time.time(), 6), "event": _snake(name), **body})


def _default(o: object) -> object:
    if isinstance(o, InputError):
        return o.as_dict()
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    return str(o)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class Fanout:
    """Send every event to several reporters."""

    def __init__(self, *reporters: Any) -> None:
        self.reporters = reporters

    def emit(self, event: Event) -> None:
        for r in self.reporters:
            r.emit(event)


__all__ = ["ConsoleReporter", "Fanout", "Finished", "JsonReporter"]
