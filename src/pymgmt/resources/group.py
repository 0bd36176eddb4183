"""group: a local group exists (with a given gid) or does not.

Changed with ``groupadd``/``groupmod``/``groupdel`` (`accounts.py` says
why); watched through ``/etc/group``. Members are the users' business: a
`user` resource lists its supplementary groups.
"""

from __future__ import annotations

import grp
from collections.abc import Callable, Generator
from typing import Literal

from ..traits import UID, Want
from ..types import MAX_ID, bound_problem
from . import accounts
from .base import CONVERGED, Change, Context, Plan, Resource, off_loop, param, watch_subscribed


class Group(Resource, kind="group"):
    """A local group, present with the wanted gid, or absent.

    The name is the group's name. Unset ``gid``: any gid is right (a new
    group gets the next free one). Watched through ``/etc/group``: a group
    removed or renumbered behind the agent's back is repaired at once.
    """

    example = """\
graph: web-group
resources:
  group:
  - name: www-admins
    gid: 2001
"""

    state: Literal["exists", "absent"] = param("exists", doc="exists, or absent (removed)")
    gid: int | None = param(None, doc="the group id; unset: not managed")
    system: bool = param(
        False, doc="when created: a system group (a gid below 1000, as groupadd --system)"
    )

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if bad := accounts.account_name_problem(self.name, "group"):
            out.append(("name", bad))
        if self.gid is not None and (bad := bound_problem(self.gid, 0, MAX_ID)):
            out.append(("gid", bad))
        return out

    def warnings(self) -> list[tuple[str, str]]:
        if self.state == "absent" and self.gid is not None:
            return [("gid", "ignored: the group is to be absent")]
        return []

    def manages(self) -> list[str]:
        return [self.name]

    def uids(self) -> list[UID]:
        """Its name and, when managed, its gid: a user, file or exec naming either comes after.

        mgmt's user ``gid: 100`` finds its group by number (mgmt's GroupUID
        matches on gid as on name); a name is never all digits, so the two
        cannot be confused.
        """
        own = [UID("group", self.name)]
        return own if self.gid is None else [*own, UID("group", str(self.gid))]

    def wants(self) -> Generator[Want, bool, None]:
        """Nothing: a group only provides (users and files that name it come after it)."""
        yield from ()

    def subscribe(self, ctx: Context) -> Callable[[], None]:
        """The account files' watch (traits.Subscribing): no task needed."""
        return accounts.subscribe(ctx)

    async def watch(self, ctx: Context) -> None:
        await watch_subscribed(self.subscribe, ctx)

    async def check(self) -> Plan:
        # NSS may ask another service: off the loop (accounts.py)
        have = await off_loop(_gid_of, self.name)
        if self.state == "absent":
            return CONVERGED if have is None else Plan((Change("state", "exists", "absent"),))
        if have is None:
            return Plan((Change("state", "absent", "exists"),))
        if self.gid is not None and have != self.gid:
            return Plan((Change("gid", have, self.gid),))
        return CONVERGED

    async def apply(self, plan: Plan) -> None:
        fields = {c.field: c for c in plan.changes}
        if self.state == "absent":
            await accounts.run_tool(["groupdel", self.name], self.ctx.log)
        elif "state" in fields:
            argv = ["groupadd"]
            if self.gid is not None:
                argv += ["--gid", str(self.gid)]
            if self.system:
                argv.append("--system")
            await accounts.run_tool([*argv, "--", self.name], self.ctx.log)
        elif "gid" in fields:
            await accounts.run_tool(
                ["groupmod", "--gid", str(self.gid), "--", self.name], self.ctx.log
            )


def _gid_of(name: str) -> int | None:
    """The gid of group `name` as the C library sees it; None if there is none."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
