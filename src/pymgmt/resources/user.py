"""user: a local user account exists (with the wanted uid, groups, home, shell) or does not.

Changed with ``useradd``/``usermod``/``userdel`` (`accounts.py` says why);
watched through ``/etc/passwd`` and ``/etc/group``. A param left unset is
not managed, as for files. ``groups`` is the exact list of supplementary
groups (mgmt's and Ansible's meaning: the user leaves a group not listed),
or with ``membership: minimum`` the groups it must at least be in
(Puppet's default: other groups are left alone).

``state: absent`` runs ``userdel``, which also removes the group of the
user's name when login.defs says ``USERGROUPS_ENAB yes`` (Debian's default,
and Puppet's behaviour too): kept as it is, unless the graph manages that
group as ``exists``. Then userdel would remove it, the group resource would
make it again (with a new gid, maybe) and report drift the agent made
itself; so the user learns of that group when the graph is compiled
(`Resource.learn`) and userdel runs with ``USERGROUPS_ENAB no``
(`accounts.run_tool_with_defs`: what ``-K`` would do, which Debian's
userdel lacks).

The home directory is a field of the account: ``useradd`` does not create
it here, and ``userdel`` never removes it (a user's files are not the
agent's to delete); manage it with a `file` resource, which AutoEdges put
after the user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import pwd
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from ..errors import ResourceError
from ..traits import UID, Want
from ..types import MAX_ID, account_problem, bound_problem, path_problem
from . import accounts
from .base import CONVERGED, Change, Context, Plan, Resource, off_loop, param, watch_subscribed
from .group import Group


class User(Resource, kind="user"):
    """A local user account in a wanted state, or absent.

    The name is the login. Each param left unset is not managed. ``group``
    is the primary group (a name or gid; unset: the one ``useradd`` picks,
    on Debian a new group of the user's name, joined if it already exists),
    ``groups`` the exact supplementary groups. Managed groups come first
    (AutoEdges), and a file owned by a managed user comes after it. Watched
    through ``/etc/passwd`` and ``/etc/group``: an account changed or
    removed behind the agent's back is repaired at once. ``absent`` runs
    ``userdel``, which takes the group of the user's name along
    (USERGROUPS_ENAB), except when the graph keeps that group as a
    ``group`` resource.
    """

    example = """\
graph: service-user
resources:
  group:
  - name: web
  user:
  - name: web
    group: web
    groups: [adm]
    home: /srv/web
    shell: /usr/sbin/nologin
    system: true
"""

    state: Literal["exists", "absent"] = param("exists", doc="exists, or absent (removed)")
    uid: int | None = param(None, doc="the user id; unset: not managed")
    allow_duplicate_uid: bool = param(
        False,
        doc="let uid be one another user has too (useradd/usermod --non-unique)",
        aliases=("allowduplicateuid",),
    )
    group: str | None = param(
        None,
        doc="the primary group, a name or gid; unset: not managed",
        aliases=("gid",),
    )
    groups: list[str] | None = param(
        None, doc="the supplementary groups (names); unset: not managed"
    )
    membership: Literal["exact", "minimum"] = param(
        "exact",
        doc="exact: the user is in no other supplementary group; minimum: in at least"
        " these, others left (Puppet's default)",
    )
    home: str | None = param(
        None,
        doc="the home directory (not created here; a trailing '/' is the same directory);"
        " unset: not managed",
        aliases=("homedir",),
    )
    shell: str | None = param(None, doc="the login shell; unset: not managed")
    comment: str | None = param(None, doc="the GECOS field, e.g. a full name; unset: not managed")
    system: bool = param(
        False, doc="when created: a system account (a uid below 1000, as useradd --system)"
    )

    learns_from: ClassVar[frozenset[str]] = frozenset({"group"})
    #: learnt when compiled: to be absent while the graph keeps the group of its name
    keeps_own_group: bool = dataclasses.field(default=False, init=False, repr=False)

    def learn(self, others: Mapping[tuple[str, str], Resource]) -> None:
        group = others.get(("group", self.name))
        kept = isinstance(group, Group) and group.state == "exists"
        self.keeps_own_group = self.state == "absent" and kept

    def same_as(self, other: Resource) -> bool:
        # a graph that starts or stops keeping the group changes what userdel does
        return super().same_as(other) and self.keeps_own_group == getattr(
            other, "keeps_own_group", False
        )

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if bad := accounts.account_name_problem(self.name, "user"):
            out.append(("name", bad))
        if self.uid is not None and (bad := bound_problem(self.uid, 0, MAX_ID)):
            out.append(("uid", bad))
        if self.group is not None and (bad := account_problem(self.group, "group")):
            out.append(("group", bad))
        for g in self.groups or ():
            if bad := accounts.account_name_problem(g, "group"):
                out.append(("groups", bad))
        for field in ("home", "shell", "comment"):
            value = getattr(self, field)
            if value is None:
                continue
            bad = path_problem(value) if field != "comment" else None
            if bad or (bad := accounts.passwd_field_problem(value)):
                out.append((field, bad))
        return out

    def warnings(self) -> list[tuple[str, str]]:
        managed = ("uid", "group", "groups", "home", "shell", "comment")
        ignored = [f for f in managed if getattr(self, f) is not None]
        if self.state == "absent" and ignored:
            return [(ignored[0], f"ignored: the user is to be absent ({', '.join(ignored)})")]
        return []

    def manages(self) -> list[str]:
        return [self.name]

    # -- AutoEdges: the groups it is in come first ---------------------------------

    def uids(self) -> list[UID]:
        """Its login and, when managed, its uid (a name is never all digits)."""
        own = [UID("user", self.name)]
        return own if self.uid is None else [*own, UID("user", str(self.uid))]

    def wants(self) -> Generator[Want, bool, None]:
        """The groups it names; with ``group`` unset, the group of its own name (it joins it)."""
        if self.state == "absent":
            return
        primary = [self.name] if self.group is None else [self.group]  # a name or a gid
        for g in [*primary, *(self.groups or ())]:
            yield Want((UID("group", g),))

    # -- watch / check / apply -----------------------------------------------------

    def subscribe(self, ctx: Context) -> Callable[[], None]:
        """The account files' watch (traits.Subscribing): no task needed."""
        return accounts.subscribe(ctx)

    async def watch(self, ctx: Context) -> None:
        await watch_subscribed(self.subscribe, ctx)

    async def check(self) -> Plan:
        # the C library's lookups may ask another service (NSS: systemd-userdbd,
        # sssd, LDAP): off the loop, as any blocking read
        return await off_loop(self._plan)

    def _plan(self) -> Plan:
        have = _Account.lookup(self.name)
        if self.state == "absent":
            return CONVERGED if have is None else Plan((Change("state", "exists", "absent"),))
        if have is None:
            return Plan((Change("state", "absent", "exists"),))
        changes = [
            Change(field, old, new)
            for field, old, new in (
                ("uid", have.uid, self.uid),
                ("group", have.gid, self._gid()),
                ("groups", have.groups, self._groups_wanted(have.groups)),
                ("home", have.home, _same_home(have.home, self.home)),
                ("shell", have.shell, self.shell),
                ("comment", have.comment, self.comment),
            )
            if getattr(self, field) is not None and old != new
        ]
        return Plan(tuple(changes))

    def _groups_wanted(self, have: list[str]) -> list[str]:
        """The supplementary groups the user should end up in, sorted."""
        want = set(self.groups or ())
        return sorted(want | set(have) if self.membership == "minimum" else want)

    def _gid(self) -> int | None:
        """The wanted primary gid (a group named must exist by now: AutoEdges made it)."""
        if self.group is None:
            return None
        if self.group.isdigit():
            return int(self.group)
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise ResourceError(f"group {self.group!r} does not exist") from None

    async def apply(self, plan: Plan) -> None:
        argv = await off_loop(self._argv, {c.field for c in plan.changes})
        if self.state == "absent" and self.keeps_own_group:
            # userdel would remove the group the graph keeps (the module docstring)
            await accounts.run_tool_with_defs(argv, self.ctx.log, "USERGROUPS_ENAB", "no")
        else:
            await accounts.run_tool(argv, self.ctx.log)

    def _argv(self, fields: set[str]) -> list[str]:
        """The tool's argv for `fields` (blocking: it may look groups up)."""
        if self.state == "absent":
            return ["userdel", "--", self.name]
        if "state" not in fields:
            dup = ["--non-unique"] if self.allow_duplicate_uid and "uid" in fields else []
            return ["usermod", *dup, *self._options(fields), "--", self.name]
        argv = ["useradd", "--no-create-home", *self._options(_FIELDS)]
        if self.group is None and _group_exists(self.name):
            # useradd would make a group of the user's name (USERGROUPS_ENAB) and
            # refuses when one exists ("use -g"): join it, as a new one would be
            argv += ["--gid", self.name]
        if self.system:
            argv.append("--system")
        if self.allow_duplicate_uid and self.uid is not None:
            argv.append("--non-unique")
        return [*argv, "--", self.name]

    def _options(self, fields: set[str] | frozenset[str]) -> list[str]:
        """The tools' options for the managed params among `fields` (-d: both tools' home)."""
        out: list[str] = []
        for field, flag, value in (
            ("uid", "--uid", self.uid),
            ("group", "--gid", self.group),
            ("groups", "--groups", None if self.groups is None else ",".join(self._groups_arg())),
            ("home", "-d", self.home),
            ("shell", "--shell", self.shell),
            ("comment", "--comment", self.comment),
        ):
            if value is not None and field in fields:
                out += [flag, str(value)]
        return out

    def _groups_arg(self) -> list[str]:
        """What --groups sets: all groups the user ends in (with minimum: the current ones too)."""
        assert self.groups is not None
        if self.membership == "exact":
            return list(self.groups)
        have = _Account.lookup(self.name)
        return self._groups_wanted([] if have is None else have.groups)


def _same_home(have: str, want: str | None) -> str | None:
    """`want`, or `have` when they name one directory (mgmt writes homedir with a trailing '/')."""
    if want is not None and want.rstrip("/") == have.rstrip("/") and have:
        return have
    return want


def _group_exists(name: str) -> bool:
    with contextlib.suppress(KeyError):
        return grp.getgrnam(name) is not None
    return False


#: every param of the account itself
_FIELDS = frozenset({"uid", "group", "groups", "home", "shell", "comment"})


@dataclass(frozen=True, slots=True)
class _Account:
    """A user account as the C library sees it."""

    uid: int
    gid: int
    groups: list[str]
    home: str
    shell: str
    comment: str

    @classmethod
    def lookup(cls, name: str) -> _Account | None:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        groups = sorted(g.gr_name for g in grp.getgrall() if name in g.gr_mem)
        return cls(pw.pw_uid, pw.pw_gid, groups, pw.pw_dir, pw.pw_shell, pw.pw_gecos)
