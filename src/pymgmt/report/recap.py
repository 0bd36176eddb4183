"""The recap: what a run did, per resource and in total, and its exit code.

Outcomes, per resource, in order of precedence:

* failed    -- it ended in a failed state;
* skipped   -- it never ran because an ancestor failed;
* repaired  -- it changed something *after* having converged once: drift
               that someone or something else caused, corrected;
* changed   -- it changed something to reach the wanted state the first time;
* would change -- (noop) it found differences and left them alone;
* unchanged -- already as wanted.

Exit codes in run-once mode (documented in the README), as with Puppet's
``--detailed-exitcodes``: 0 converged with no change, 2 changes applied,
4 failures, 6 both; 1 is reserved for unusable input.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from .events import Checked, Event, Failed, Finished, GraphStarted, VertexState

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_CHANGED = 2
EXIT_FAILED = 4


@dataclass
class _Tally:
    changed: int = 0
    repaired: int = 0
    would_change: int = 0
    pending_on: list[str] = field(default_factory=list)
    checks: int = 0
    failures: list[str] = field(default_factory=list)


class Recap:
    """Accumulates events into per-resource outcomes."""

    def __init__(self) -> None:
        self.graph = ""
        self.started = time.monotonic()
        self.per: dict[str, _Tally] = {}
        self.final: list[VertexState] = []

    def _t(self, vertex: str) -> _Tally:
        t = self.per.get(vertex)
        if t is None:
            t = self.per[vertex] = _Tally()
        return t

    def emit(self, event: Event) -> None:
        if isinstance(event, GraphStarted):
            self.graph = event.name
        elif isinstance(event, Checked):
            t = self._t(event.vertex)
            t.checks += 1
            if event.applied:
                if event.drift:
                    t.repaired += 1
                else:
                    t.changed += 1
            elif event.noop and event.changes:
                t.would_change += 1
            t.pending_on = event.pending_on
        elif isinstance(event, Failed):
            self._t(event.vertex).failures.append(f"{event.phase}: {event.error}")
        elif isinstance(event, Finished):
            self.final = event.states

    def outcome(self, st: VertexState) -> str:
        t = self.per.get(st.vertex, _Tally())
        if st.status == "failed":
            return "failed"
        if st.status == "skipped":
            return "skipped"
        if st.status == "pending" and not t.checks:
            return "pending"
        if t.repaired:
            return "repaired"
        if t.changed:
            return "changed"
        if t.would_change:
            return "would change"
        if t.pending_on:
            return "pending"
        return "unchanged"

    def totals(self) -> Counter[str]:
        return Counter(self.outcome(st) for st in self.final)

    def exit_code(self) -> int:
        c = self.totals()
        code = EXIT_OK
        if c["changed"] or c["repaired"]:
            code |= EXIT_CHANGED
        if c["failed"] or c["skipped"]:
            code |= EXIT_FAILED
        return code

    def as_dict(self) -> dict[str, object]:
        return {
            "graph": self.graph,
            "seconds": round(time.monotonic() - self.started, 3),
            "resources": {
                st.vertex: {
                    "outcome": self.outcome(st),
                    "changed": self.per.get(st.vertex, _Tally()).changed,
                    "repaired": self.per.get(st.vertex, _Tally()).repaired,
                    "failures": self.per.get(st.vertex, _Tally()).failures,
                    "blocked_by": st.blocked_by,
                }
                for st in self.final
            },
            "totals": dict(self.totals()),
            "exit_code": self.exit_code(),
        }

    def render(self, *, verbose: bool = False) -> str:
        """The text a person reads at the end of a run."""
        lines = [f"Recap of graph {self.graph!r} after {time.monotonic() - self.started:.2f}s:"]
        width = max((len(st.vertex) for st in self.final), default=10)
        for st in sorted(self.final, key=lambda s: s.vertex):
            out = self.outcome(st)
            if out == "unchanged" and not verbose:
                continue
            t = self.per.get(st.vertex, _Tally())
            detail = ""
            if out == "failed" and t.failures:
                detail = f": {t.failures[-1]}"
            elif out == "skipped":
                detail = f" (blocked by {', '.join(st.blocked_by)})"
            elif out == "pending" and t.pending_on:
                detail = f" on {', '.join(t.pending_on)}"
            elif out == "repaired":
                detail = f" x{t.repaired}" + (" (and changed once)" if t.changed else "")
            lines.append(
                f"  {st.vertex:<{width}}  {out.upper() if out == 'failed' else out}{detail}"
            )
        c = self.totals()
        order = ["unchanged", "changed", "repaired", "would change", "failed", "skipped", "pending"]
        parts = [f"{c[k]} {k}" for k in order if c[k] or k in ("unchanged", "changed", "failed")]
        verdict = "FAILED" if c["failed"] or c["skipped"] else "OK"
        lines.append(f"{verdict}: {len(self.final)} resources: " + ", ".join(parts))
        return "\n".join(lines)
