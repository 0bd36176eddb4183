"""noop: a resource that wants nothing and is always converged.

Useful as a join point in a graph (and, later, to log refresh notifications).
"""

from __future__ import annotations

from .base import CONVERGED, Plan, Resource


class Noop(Resource, kind="noop"):
    """Does nothing; always converged."""

    async def check(self) -> Plan:
        return CONVERGED

    async def apply(self, plan: Plan) -> None:
        return None
