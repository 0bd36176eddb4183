"""Metaparameters: per-resource settings enforced by the engine, not by kinds.

The specification is mgmt's "Metaparameters in mgmt" article. Every resource
carries one `MetaParams`; the YAML frontend reads it from a ``meta:`` block.
Defaults are the zero values a user would expect (no retry, no poll, no
rate limit), so an absent ``meta:`` block changes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Literal

from .types import MAX_COUNT, MAX_MILLISECONDS, MAX_SECONDS, bound_problem

_SEMA_RE = re.compile(r"^(?P<id>[^:\s]+)(?::(?P<size>-?\d+))?$")


def parse_sema(spec: str) -> tuple[str, int]:
    """Split ``"name"`` / ``"name:size"`` into (id, size); size defaults to 1.

    Raises ValueError with a user-facing message for a malformed id or a size
    below one (a semaphore of size zero could never be acquired).
    """
    m = _SEMA_RE.match(spec)
    if not m:
        raise ValueError(f"bad semaphore id {spec!r}: expected 'name' or 'name:size'")
    size = int(m["size"]) if m["size"] is not None else 1
    if size < 1:
        raise ValueError(f"bad semaphore id {spec!r}: size must be at least 1")
    return m["id"], size


#: (field, largest value, unit): beyond these a value is a typo, not a wish (types.py)
_BOUNDS = (
    ("retry", MAX_COUNT, "(or negative: for ever)"),
    ("delay", MAX_MILLISECONDS, "ms (a day)"),
    ("maxdelay", MAX_MILLISECONDS, "ms (a day)"),
    ("timeout", MAX_MILLISECONDS, "ms (a day)"),
    ("poll", MAX_SECONDS, "seconds (a day)"),
    ("burst", MAX_COUNT, ""),
)


@dataclass(kw_only=True)
class MetaParams:
    """Engine-enforced settings shared by every resource kind."""

    noop: bool = field(default=False, metadata={"doc": "report what would change; change nothing"})
    retry: int = field(
        default=0, metadata={"doc": "retries of a failed check/apply; negative: for ever"}
    )
    delay: int = field(default=0, metadata={"doc": "milliseconds to wait between retries"})
    backoff: Literal["none", "exponential"] = field(
        default="none", metadata={"doc": "how the delay grows between retries"}
    )
    maxdelay: int = field(
        default=0, metadata={"doc": "cap in milliseconds of the exponential delay (0: no cap)"}
    )
    timeout: int = field(
        default=0, metadata={"doc": "milliseconds one check/apply may take (0: no limit)"}
    )
    poll: int = field(
        default=0, metadata={"doc": "check every N seconds instead of watching (0: watch)"}
    )
    limit: float = field(
        default=math.inf,
        metadata={"doc": "check/apply runs per second at most (a token bucket's rate)"},
    )
    burst: int = field(
        default=0,
        metadata={
            "doc": "runs allowed at once above the rate (the bucket's size; needed with a limit)"
        },
    )
    sema: list[str] = field(
        default_factory=list,
        metadata={
            "doc": "semaphores held during check/apply: 'id' or 'id:size' (size 1 if not given)"
        },
    )
    autoedge: bool = field(
        default=True, metadata={"doc": "take part in automatic edges (AutoEdges)"}
    )
    autogroup: bool = field(
        default=True, metadata={"doc": "may be grouped with like resources (AutoGroup)"}
    )

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) pairs for every invalid setting."""
        out: list[tuple[str, str]] = []
        for name, highest, unit in _BOUNDS:
            value = getattr(self, name)
            if value < 0 and name == "retry":
                continue  # a negative retry means "for ever"
            if value < 0:
                out.append((name, "must not be negative"))
            elif bad := bound_problem(value, 0, highest, unit):
                out.append((name, bad))
        if not self.limit > 0:  # NaN too (YAML .nan)
            out.append(("limit", "must be positive (omit it for no limit)"))
        elif not math.isinf(self.limit) and self.burst == 0:
            out.append(("burst", "a finite limit needs a burst of at least 1"))
        for spec in self.sema:
            try:
                parse_sema(spec)
            except ValueError as e:
                out.append(("sema", str(e)))
        return out

    def non_default(self) -> dict[str, object]:
        """The settings that differ from the defaults, for display."""
        default = MetaParams()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }


def sema_size_conflicts(owners: Iterable[tuple[str, MetaParams]]) -> list[tuple[str, str]]:
    """(owner, message) for each semaphore id declared with two different sizes."""
    first: dict[str, tuple[int, str]] = {}
    out: list[tuple[str, str]] = []
    for owner, meta in owners:
        for spec in meta.sema:
            try:
                sid, size = parse_sema(spec)
            except ValueError:
                continue  # reported by MetaParams.problems
            seen = first.setdefault(sid, (size, owner))
            if seen[0] != size:
                out.append(
                    (owner, f"semaphore {sid!r} has size {size} here but {seen[0]} in {seen[1]}")
                )
    return out
