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
``--detailed-exitcodes``: 0 converged with no change, 2 changes applied
(with noop: changes that *would* be applied, like ``terraform plan
-detailed-exitcode``), 4 failures, 6 both; 1 is reserved for unusable
input. A run stopped before it converged (a signal, issue 8) exits 128 + the
signal's number whatever it changed, because its outcome is unknown: part of
the graph never ran. Forever mode and mgmt's ``--converged-exit`` exit 0 on
a graceful stop, as mgmt does.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from .events import (
    Checked,
    Event,
    Failed,
    Finished,
    GraphStarted,
    RemoteChanged,
    Stopping,
    VertexState,
)
from .exitcodes import EXIT_CHANGED, EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK

__all__ = ["EXIT_CHANGED", "EXIT_FAILED", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_OK", "Recap"]


@dataclass
class _Tally:
    changed: int = 0
    repaired: int = 0
    would_change: int = 0
    pending_on: list[str] = field(default_factory=list)
    checks: int = 0
    failures: list[str] = field(default_factory=list)


class Recap:
    """Accumulates events into per-resource outcomes.

    `run_once`: the run was meant to end by itself once converged; without
    it (forever mode) a graceful stop exits 0. `detailed`: exit codes say
    what changed (0/2/4/6); mgmt's ``--converged-exit`` exits 0 instead.
    """

    def __init__(
        self, *, run_once: bool = True, detailed: bool = True, remote_codes: bool = True
    ) -> None:
        """`remote_codes`: the remote hosts' outcomes go into the exit code (not for an
        agent started by --remote: its initiator hears of each of its hosts itself)."""
        self.graph = ""
        self.started = time.monotonic()
        self.per: dict[str, _Tally] = {}
        self.final: list[VertexState] = []
        self.run_once = run_once
        self.detailed = detailed
        #: stopped before converging (a signal): never "converged", never OK
        self.interrupted = False
        #: the exit code of an interrupted run-once run; the CLI sets 128 + signal
        self.interrupt_code = EXIT_INTERRUPTED
        #: remote hosts of ``--remote`` that ended: host -> (exit code or None, why)
        self.remotes: dict[str, tuple[int | None, str]] = {}
        #: the hosts each remote host was run through (hierarchical execution)
        self.remote_via: dict[str, tuple[str, ...]] = {}
        self.remote_codes = remote_codes

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
        elif isinstance(event, Stopping):
            self.interrupted = event.interrupted
        elif isinstance(event, Finished):
            self.final = event.states
        elif isinstance(event, RemoteChanged) and event.stage in ("exited", "failed"):
            self.remotes[event.host] = (event.exit_code, event.message)
            self.remote_via[event.host] = event.via

    def outcome(self, st: VertexState) -> str:
        t = self.per.get(st.vertex, _Tally())
        if st.status == "failed":
            return "failed"
        if st.status == "skipped":
            return "skipped"
        left_work = st.status == "pending" and (self.interrupted or not t.checks)
        if left_work and not (t.changed or t.repaired):
            return "pending"  # work was left to do: never "unchanged"
        # A stop lets running applies finish (issue 8 item 3): what changed is
        # counted even if more work was waiting at the stop (render says so).
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
        if not self.run_once:
            return EXIT_OK
        if self.interrupted:
            return self.interrupt_code
        if not self.detailed:
            return EXIT_OK
        c = self.totals()
        code = EXIT_OK
        if c["changed"] or c["repaired"] or c["would change"]:
            code |= EXIT_CHANGED
        if c["failed"] or c["skipped"]:
            code |= EXIT_FAILED
        for host in self.remotes if self.remote_codes else ():
            code |= self.remote_code(host)
        return code

    def remote_code(self, host: str) -> int:
        """What a remote host adds to the exit code: its own 0/2/4/6; anything
        else (unreachable, refused, stopped from outside) is a failure."""
        remote, _ = self.remotes[host]
        if remote is not None and remote & ~(EXIT_CHANGED | EXIT_FAILED) == 0:
            return remote
        if self._remote_interrupted(host):
            return EXIT_OK  # stopped with this run, as it was told: not a failure
        return EXIT_FAILED

    def _remote_interrupted(self, host: str) -> bool:
        """This run was interrupted, and so was that host's agent (128 + a signal)."""
        code, _ = self.remotes[host]
        return self.interrupted and code is not None and code > 128

    def remote_outcome(self, host: str) -> str:
        code, why = self.remotes[host]
        bits = self.remote_code(host)
        if self._remote_interrupted(host):
            return f"interrupted (exit {code})"
        if code is None or bits != code:
            return f"FAILED: {why}" if why else f"FAILED (exit {code})"
        words = [w for b, w in ((EXIT_CHANGED, "changed"), (EXIT_FAILED, "FAILED")) if code & b]
        return ", ".join(words) or "unchanged"

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
            "interrupted": self.interrupted,
            **({"remotes": self._remotes_dict()} if self.remotes else {}),
            "exit_code": self.exit_code(),
        }

    def _remotes_dict(self) -> dict[str, object]:
        return {
            h: {
                "exit_code": code,
                "outcome": self.remote_outcome(h),
                "message": why,
                "via": list(self.remote_via.get(h, ())),
            }
            for h, (code, why) in sorted(self.remotes.items())
        }

    def render(self, *, verbose: bool = False) -> str:
        """The text a person reads at the end of a run."""
        how = " (interrupted)" if self.interrupted else ""
        lines = [
            f"Recap of graph {self.graph!r} after {time.monotonic() - self.started:.2f}s{how}:"
        ]
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
            if st.status == "pending" and out in ("changed", "repaired"):
                detail += "; more work was pending at the stop"
            lines.append(
                f"  {st.vertex:<{width}}  {out.upper() if out == 'failed' else out}{detail}"
            )
        c = self.totals()
        order = ["unchanged", "changed", "repaired", "would change", "failed", "skipped", "pending"]
        always = ("unchanged", "changed", "failed", *(("pending",) if self.interrupted else ()))
        parts = [f"{c[k]} {k}" for k in order if c[k] or k in always]
        remote_failed = any(self.remote_code(h) & EXIT_FAILED for h in self.remotes)
        if self.interrupted:
            verdict = "INTERRUPTED"  # whatever it did: it stopped before converging
        else:
            verdict = "FAILED" if c["failed"] or c["skipped"] or remote_failed else "OK"
        hosts = ""
        if self.remotes:
            lines.append(f"Remote hosts ({len(self.remotes)}):")
            width = max(len(h) for h in self.remotes)
            lines += [
                f"  {h:<{width}}  {self.remote_outcome(h)}{_via(self.remote_via.get(h, ()))}"
                for h in sorted(self.remotes)
            ]
            hosts = f"; {len(self.remotes)} remote host{'s' if len(self.remotes) != 1 else ''}: "
            hosts += ", ".join(f"{n} {k}" for k, n in self._remote_totals().items())
        n = len(self.final)
        noun = "resource" if n == 1 else "resources"  # "1 resources" before issue 13
        lines.append(f"{verdict}: {n} {noun}: " + ", ".join(parts) + hosts)
        return "\n".join(lines)

    def _remote_totals(self) -> dict[str, int]:
        """How many remote hosts ended how: unchanged, changed, failed (never a zero)."""
        out: Counter[str] = Counter()
        for host in self.remotes:
            bits = self.remote_code(host)
            word = "failed" if bits & EXIT_FAILED else "changed" if bits else "unchanged"
            word = "interrupted" if self._remote_interrupted(host) else word
            out[word] += 1
        order = ("unchanged", "changed", "failed", "interrupted")
        return {k: out[k] for k in order if out[k]}


def _via(hosts: tuple[str, ...]) -> str:
    """`` (via a > b)``: the hosts a deeper remote host was run through."""
    return f" (via {' > '.join(hosts)})" if hosts else ""
