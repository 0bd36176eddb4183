"""noop: a resource that wants nothing and is always converged.

Useful as a join point in a graph, and to see refresh notifications arrive:
it logs each one.
"""

from __future__ import annotations

from .base import CONVERGED, Plan, Resource


class Noop(Resource, kind="noop"):
    """Does nothing; always converged.

    A join point: edges to and from a noop order other resources, and a
    refresh notification it receives is logged ("Received a notification!").
    """

    example = """\
graph: joined
resources:
  noop:
  - name: ready
"""

    def refresh(self) -> None:
        self.ctx.log.info("Received a notification!")

    async def check(self) -> Plan:
        return CONVERGED

    async def apply(self, plan: Plan) -> None:
        return None
