"""Reporters: log lines a person can follow, and JSON lines for machines."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import IO, Any

from ..errors import InputError
from .events import (
    Checked,
    Converged,
    Event,
    Failed,
    Finished,
    GraphRejected,
    GraphStarted,
    GraphSwapped,
    Settled,
    Stopping,
)


def _ts() -> str:
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


class ConsoleReporter:
    """Human-readable lines in mgmt's spirit: ``File[f1]: CheckApply(apply=True)``."""

    def __init__(
        self, out: IO[str] | None = None, *, verbose: bool = False, quiet: bool = False
    ) -> None:
        self.out = out or sys.stdout
        self.verbose = verbose
        self.quiet = quiet

    def line(self, text: str) -> None:
        self.out.write(f"{_ts()} {text}\n")
        self.out.flush()

    def emit(self, event: Event) -> None:
        if isinstance(event, Failed):
            retry = "" if event.retry_in is None else f" (retrying in {event.retry_in:.3g} s)"
            self.line(f"{event.vertex}: FAILED in {event.phase}: {event.error}{retry}")
        elif isinstance(event, GraphRejected):
            self.line("the new graph is invalid; the running graph is kept:")
            for e in event.errors:
                self.out.write(f"  {e}\n")
            self.out.flush()
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
            for verb, names in (
                ("replaced", event.replaced),
                ("added", event.added),
                ("removed", event.removed),
            ):
                for n in names:
                    self.line(f"  {verb}: {n}")
        elif isinstance(event, Checked):
            self.checked(event)
        elif isinstance(event, Converged):
            self.line(f"Converged for {event.seconds:g} seconds, exiting")
        elif isinstance(event, Settled):
            if event.failed:
                self.line(
                    f"Converged, but {len(event.failed)} of {event.vertices} resources "
                    f"failed: {', '.join(event.failed)}"
                )
            else:
                self.line(f"Converged: all {event.vertices} resources as wanted")
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
            for c in ev.changes:
                if c.diff:
                    for dl in c.diff.rstrip("\n").split("\n"):
                        self.out.write(f"    {dl}\n")
            self.out.flush()


def _change_text(field: str, old: object, new: object) -> str:
    if field == "run":
        return f"run {new!r}"
    if field == "content":
        return "content" if old is None else f"content {old} -> {new}"
    if old is None:
        return f"{field} {new}"
    return f"{field} {old} -> {new}"


class JsonReporter:
    """One JSON object per line, one line per event, for machines."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout

    def write(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj, default=_default, sort_keys=False) + "\n")
        self.out.flush()

    def emit(self, event: Event) -> None:
        name = type(event).__name__
        body = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        self.write({"time": round(time.time(), 6), "event": _snake(name), **body})


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
