"""Reporters: log lines a person can follow (stderr), and JSON lines for machines (stdout).

The console reporter turns each event into a line of `report.logs`'s one
format (date, level, resource) on its `Output`; the JSON reporter writes
one object per event. Both fall silent instead of crashing when their
reader goes away (``pymgmt run ... | head -1``, issue 8 item 17): the
stream is pointed at /dev/null and `on_closed` is called once, so the CLI
can stop the agent quietly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _text
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
from .logs import NOTICE, Closable, Output, relay, silence
from .record import Record
from .textline import change_text, visible


class _StopAware:
    """What every reporter shares: once a stop began, nothing may claim convergence."""

    stopping = False

    def claims_convergence_after_stop(self, event: Event) -> bool:
        """True for a Converged/Settled that comes once a stop began (workers
        going idle because they were stopped is not convergence)."""
        if isinstance(event, Stopping):
            self.stopping = True
        return self.stopping and isinstance(event, (Converged, Settled))


class _Stream(Closable, _StopAware):
    """A stream that may close (the JSON events on stdout)."""

    def __init__(self, out: IO[str] | None, on_closed: Callable[[], None] | None) -> None:
        super().__init__(out or sys.stdout, on_closed)

    def write(self, text: str) -> None:
        self.put(text)


class ConsoleReporter(_StopAware):
    """Events as log lines for people, in mgmt's words: ``File[f1]: CheckApply(apply=True)``.

    Each line goes to an `Output` (stderr, issue 12) with a level: a change
    is NOTICE, a failure ERROR (WARNING when it will be retried), the
    graph's life INFO, an unchanged check DEBUG. Diffs are shown in noop,
    and with DEBUG (``-v``).
    """

    def __init__(
        self,
        out: IO[str] | None = None,
        *,
        verbose: bool = False,
        quiet: bool = False,
        on_closed: Callable[[], None] | None = None,
        output: Output | None = None,
    ) -> None:
        level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
        self.output = output or Output(out, level=level, live=False, on_closed=on_closed)
        #: the event being shown, as the JSON events name it ("checked")
        self.showing = ""

    @property
    def verbose(self) -> bool:
        return self.output.enabled(logging.DEBUG)

    def line(self, level: int, text: str, resource: str | None = None, detail: str = "") -> None:
        """A line about the event being shown (its name: a field of its own in JSON)."""
        self.output.line(level, text, resource, detail, event=self.showing)

    def listed(self, **names_by_verb: list[str]) -> str:
        """One indented line per name, in the order given: ``  added: File[f]``."""
        return "".join(f"\n  {verb}: {n}" for verb, names in names_by_verb.items() for n in names)

    def emit(self, event: Event) -> None:
        if self.claims_convergence_after_stop(event):
            return
        self.showing = _snake(type(event).__name__)
        if isinstance(event, Checked):
            self.checked(event)
        elif isinstance(event, Failed):
            retry = "" if event.retry_in is None else f" (retrying in {event.retry_in:.3g} s)"
            level = logging.ERROR if event.retry_in is None else logging.WARNING
            self.line(level, f"FAILED in {event.phase}: {event.error}{retry}", event.vertex)
        elif isinstance(event, RemoteOutput):
            # the remote's own lines, stamped there; a terminal escape from
            # another host is shown, never acted on
            relay(event.host, visible(event.line), self.output)
        else:
            self.graph_event(event)

    def graph_event(self, event: Event) -> None:
        """The graph's and the cluster's life: INFO, or WARNING/ERROR for what went wrong."""
        info = logging.INFO
        if isinstance(event, GraphRejected):
            errors = "".join(f"\n  {e}" for e in event.errors)
            kept = "the new graph is invalid; the running graph is kept:"
            self.line(logging.ERROR, kept + errors)
        elif isinstance(event, CollectRefused):
            self.line(logging.WARNING, _refused_text(event))
        elif isinstance(event, RemoteChanged):
            level = logging.ERROR if event.stage == "failed" else info
            self.line(level, f"remote {event.host}: {_remote_text(event)}")
        elif isinstance(event, GraphStarted):
            self.line(
                info,
                f"Graph[{event.name}]: {event.vertices} vertices, {event.edges} edges "
                f"(from {event.source})",
            )
        elif isinstance(event, GraphSwapped):
            self.line(
                info,
                f"Graph[{event.name}]: changeover: {event.kept} kept, "
                f"{len(event.replaced)} replaced, {len(event.added)} added, "
                f"{len(event.removed)} removed"
                + self.listed(replaced=event.replaced, added=event.added, removed=event.removed),
            )
        elif isinstance(event, Converged):
            self.line(info, f"Converged for {event.seconds:g} seconds, exiting")
        elif isinstance(event, Settled):
            self.line(info, _settled_text(event))
        elif isinstance(event, Exported):
            listed = f": {', '.join(event.keys)}" if event.keys else ""
            self.line(info, f"Exported {event.count} resource{_s(event.count)}{listed}")
        elif isinstance(event, CollectChanged):
            self.line(
                info,
                f"Collected: {len(event.added)} added, {len(event.changed)} changed, "
                f"{len(event.removed)} removed, {event.kept} kept"
                + self.listed(added=event.added, changed=event.changed, removed=event.removed),
            )
        elif isinstance(event, Stopping) and event.reason != "converged":
            self.line(info, f"Stopping: {event.reason}")

    def checked(self, ev: Checked) -> None:
        if ev.pending_on and (not ev.changes or ev.note):
            note = f": {ev.note}" if ev.note else ""
            self.line(
                logging.INFO, f"pending on {', '.join(ev.pending_on)} (noop){note}", ev.vertex
            )
            return
        if not ev.changes:
            if self.verbose:
                self.line(
                    logging.DEBUG,
                    f"CheckApply(apply=False): converged ({ev.reason}, {ev.seconds * 1000:.1f} ms)",
                    ev.vertex,
                )
            return
        what = ", ".join(change_text(c.field, c.old, c.new) for c in ev.changes)
        if ev.seconds >= 0.1:
            what += f" ({ev.seconds:.2f} s)"
        if ev.noop:
            after = f", after {', '.join(ev.pending_on)}" if ev.pending_on else ""
            text = f"would change: {what} (noop{after})"
        elif ev.drift:
            text = f"CheckApply(apply=True): repaired drift: {what}"
        else:
            text = f"CheckApply(apply=True): changed: {what}"
        diff = ""
        if ev.noop or self.verbose:
            diffs = (c.diff.rstrip("\n") for c in ev.changes if c.diff)
            diff = "".join(f"    {dl}\n" for d in diffs for dl in d.split("\n"))
        self.line(NOTICE, text, ev.vertex, diff)


def _settled_text(event: Settled) -> str:
    if event.would_change:  # noop: idle, but not as wanted
        return (
            f"Idle (noop): {len(event.would_change)} of {event.vertices} resources "
            f"would change: {', '.join(event.would_change)}"
        )
    if event.failed:
        return (
            f"Converged, but {len(event.failed)} of {event.vertices} resources "
            f"failed: {', '.join(event.failed)}"
        )
    return f"Converged: all {event.vertices} resources as wanted"


def _refused_text(ev: CollectRefused) -> str:
    """``refused host b's File[x]: its path ../../etc/passwd leaves /tmp/mgmtA/``."""
    what = f"{ev.kind.capitalize()}[{ev.name}]" if ev.kind else f"export {ev.name!r}"
    return f"refused host {ev.host}'s {what}: {ev.reason}"


def _remote_text(ev: RemoteChanged) -> str:
    text = {"exited": f"exited {ev.exit_code}", "failed": "FAILED"}.get(ev.stage, ev.stage)
    return f"{text}: {ev.message}" if ev.message else text


def _s(n: int) -> str:
    return "" if n == 1 else "s"


class JsonReporter(_Stream):
    """One JSON object per line, one line per event, for machines."""

    def __init__(
        self, out: IO[str] | None = None, *, on_closed: Callable[[], None] | None = None
    ) -> None:
        super().__init__(out, on_closed)

    def write_obj(self, obj: dict[str, Any]) -> None:
        self.write(_ENCODER.encode(obj) + "\n")

    def emit(self, event: Event) -> None:
        if self.claims_convergence_after_stop(event):
            return
        if isinstance(event, RemoteOutput) and event.parsed is not None:
            self.write_obj(event.parsed)  # the remote's own event, with its host
            return
        now = round(time.time(), 6)
        if type(event) is Checked and (line := _unchanged_line(now, event)) is not None:
            self.write(line)
            return
        name = type(event).__name__
        body = event._asdict()
        self.write_obj({"time": now, "event": _snake(name), **body})


#: `Checked`'s fields in order: `_unchanged_line` writes them in this order
_CHECKED_FIELDS = (
    "vertex",
    "reason",
    "changes",
    "applied",
    "noop",
    "drift",
    "seconds",
    "pending_on",
    "note",
    "refreshed",
    "notified",
)
_BOOL = {True: "true", False: "false"}


def _unchanged_line(now: float, ev: Checked) -> str | None:
    """The JSON line of a check that found nothing to do, as `write_obj` writes it, sooner.

    An agent's start reports every vertex checked, most of them unchanged:
    100,000 lines through a dict and the encoder took ~0.8 s (issue 13).
    Only a line of plain values is written here (no changes, no lists, only
    bools, finite floats and strings); anything else, or a `Checked` with
    other fields than these, goes through the encoder (None).
    """
    if ev.changes or ev.pending_on or ev.notified or Checked._fields != _CHECKED_FIELDS:
        return None
    flags = (ev.applied, ev.noop, ev.drift, ev.refreshed)
    if any(type(b) is not bool for b in flags) or type(ev.seconds) is not float:
        return None
    if not (math.isfinite(ev.seconds) and math.isfinite(now)):
        return None
    if not (isinstance(ev.vertex, str) and isinstance(ev.reason, str) and isinstance(ev.note, str)):
        return None
    applied, noop, drift, refreshed = (_BOOL[b] for b in flags)
    return (
        f'{{"time": {now!r}, "event": "checked", "vertex": {_text(ev.vertex)}, '
        f'"reason": {_text(ev.reason)}, "changes": [], "applied": {applied}, '
        f'"noop": {noop}, "drift": {drift}, "seconds": {ev.seconds!r}, "pending_on": [], '
        f'"note": {_text(ev.note)}, "refreshed": {refreshed}, "notified": []}}\n'
    )


def _default(o: object) -> object:
    """What JSON makes of a value it has no type for (`_ENCODER`)."""
    if isinstance(o, InputError):
        return o.as_dict()
    if isinstance(o, Record):  # ChangeInfo, VertexState: json encodes their values in turn
        return o._asdict()
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    return str(o)


#: one encoder for every line (json.dumps made one per event: 10k events at start)
_ENCODER = json.JSONEncoder(default=_default)


@functools.cache
def _snake(name: str) -> str:
    """An event's name as JSON calls it (``Checked`` -> ``checked``); once per kind of event."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class Fanout:
    """Send every event to several reporters."""

    def __init__(self, *reporters: Any) -> None:
        self.reporters = reporters

    def emit(self, event: Event) -> None:
        for r in self.reporters:
            r.emit(event)


__all__ = ["ConsoleReporter", "Fanout", "Finished", "JsonReporter", "silence", "visible"]
