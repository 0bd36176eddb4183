"""hostname: the machine's static, transient and pretty hostnames, through systemd-hostnamed.

mgmt's ``hostname`` kind, with its params and its defaulting rule: each of
``static_hostname``, ``transient_hostname`` and ``pretty_hostname`` left
unset takes ``hostname``, which itself defaults to the resource's name; one
set to the empty string is not managed. So ``hostname: web1`` alone sets
all three.

Changed and read over D-Bus (``org.freedesktop.hostname1``, bus-activated
on demand), never by writing /etc/hostname ourselves: hostnamed validates
the name, writes /etc/hostname and /etc/machine-info atomically, updates
the kernel's name and tells everyone else (PropertiesChanged), exactly as
``hostnamectl`` does. Calls pass ``interactive=false``: an agent can never
answer a polkit prompt.

Converged means hostnamed reports the wanted value of each managed one of
``StaticHostname``, ``Hostname`` (the kernel's, i.e. transient) and
``PrettyHostname``.

The watch is hostnamed's PropertiesChanged signal (any change made through
it, ``hostnamectl`` included, however short-lived the daemon) plus inotify
on /etc/hostname (an edit by hand, as mgmt watches it); losing the bus is a
watch error, which the retry metaparams turn into a reconnect, as for svc.
A kernel name changed with ``hostname(1)`` behind hostnamed's back is seen
at the next check, not at once.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from ..errors import ResourceError
from ..events.dbus import system_bus_address
from .base import Change, Context, Plan, Resource, param

_HN = "org.freedesktop.hostname1"
_HN_PATH = "/org/freedesktop/hostname1"
_PROPS = "org.freedesktop.DBus.Properties"
#: the file hostnamed keeps the static hostname in (watched, never written here)
ETC_HOSTNAME = "/etc/hostname"
#: the kernel's limit (HOST_NAME_MAX), which hostnamed enforces too
HOST_NAME_MAX = 64
#: what hostnamed accepts for a pretty name (it stores it in /etc/machine-info)
PRETTY_MAX = 255
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")

#: param -> (hostnamed's property, its setter), in the order apply sets them:
#: the static name first, because setting it also sets the kernel's name
_ASPECTS = {
    "static_hostname": ("StaticHostname", "SetStaticHostname"),
    "transient_hostname": ("Hostname", "SetHostname"),
    "pretty_hostname": ("PrettyHostname", "SetPrettyHostname"),
}


def hostname_problem(name: str) -> str | None:
    """Why `name` is not a hostname hostnamed and the kernel take (None if it is).

    RFC 1123 labels (letters, digits, inner hyphens, 1 to 63 characters)
    joined by single dots, at most 64 bytes: stricter than hostnamed only in
    refusing a label that starts or ends with a hyphen, which resolvers and
    DNS refuse anyway.
    """
    if not name:
        return "must not be empty"
    if len(name.encode("utf-8", "surrogateescape")) > HOST_NAME_MAX:
        return f"has at most {HOST_NAME_MAX} characters, got {len(name)}: {name!r}"
    for label in name.split("."):
        if not _LABEL.match(label):
            return (
                "must be letters, digits and hyphens in dot-separated labels "
                f"(no label empty or starting or ending with '-'), got {name!r}"
            )
    return None


def pretty_problem(name: str) -> str | None:
    """A pretty hostname is any text without control characters (hostnamed's rule)."""
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cs")]
    if bad:
        return f"must not contain control characters, got {bad[0]!r} in {name!r}"
    if len(name.encode("utf-8")) > PRETTY_MAX:
        return f"has at most {PRETTY_MAX} bytes, got {len(name.encode('utf-8'))}"
    return None


class Hostname(Resource, kind="hostname"):
    """The static, transient (kernel) and pretty hostnames, set through systemd-hostnamed.

    Each of the three left unset takes ``hostname``, which defaults to the
    resource's name; one set to ``""`` is not managed. Watched through
    hostnamed's D-Bus signal and /etc/hostname: a ``hostnamectl hostname``
    behind the agent's back is repaired at once.
    """

    example = """\
graph: identity
resources:
  hostname:
  - name: web1
    pretty_hostname: "Web server #1 (Paris)"
"""

    hostname: str = param(
        "", doc="the default of the three names below; empty: the resource's name"
    )
    static_hostname: str | None = param(
        None, doc="the name in /etc/hostname; unset: hostname; empty: not managed"
    )
    transient_hostname: str | None = param(
        None, doc="the kernel's name (gethostname); unset: hostname; empty: not managed"
    )
    pretty_hostname: str | None = param(
        None, doc="free-form UTF-8 name for people; unset: hostname; empty: not managed"
    )

    def wanted(self) -> dict[str, str]:
        """param -> value for each managed name (mgmt's defaulting rule)."""
        fallback = self.hostname or self.name
        out: dict[str, str] = {}
        for field in _ASPECTS:
            value = getattr(self, field)
            value = fallback if value is None else value
            if value:
                out[field] = value
        return out

    def problems(self) -> list[tuple[str, str]]:
        wanted = self.wanted()
        if not wanted:
            return [("hostname", "all three names are unmanaged (''): nothing to do")]
        found: dict[tuple[str, str], list[str]] = {}
        for field, value in wanted.items():
            bad = pretty_problem(value) if field == "pretty_hostname" else hostname_problem(value)
            if bad:
                # a defaulted value is named where the user wrote it
                given = getattr(self, field) is not None
                where = field if given else ("hostname" if self.hostname else "name")
                found.setdefault((where, bad), []).append(field.replace("_", " "))
        return [
            (where, f"{bad} (as the {' and '.join(used)})") for (where, bad), used in found.items()
        ]

    def warnings(self) -> list[tuple[str, str]]:
        wanted = self.wanted()
        static, transient = wanted.get("static_hostname"), wanted.get("transient_hostname")
        if static and transient and static != transient:
            return [
                (
                    "transient_hostname",
                    "differs from the static hostname: systemd-hostnamed (since 248) keeps the "
                    "kernel's name at the static one while one is set, so this cannot converge",
                )
            ]
        return []

    def manages(self) -> list[str]:
        # Two resources may share the machine if each manages other names.
        return [f"{field.removesuffix('_hostname')} hostname" for field in self.wanted()]

    # -- plumbing ------------------------------------------------------------------------

    async def _call(self, iface: str, member: str, sig: str, body: list[Any]) -> list[Any]:
        addr = system_bus_address()
        return await self.ctx.dbus.call(addr, _HN, _HN_PATH, iface, member, sig, body)

    async def _properties(self) -> dict[str, str]:
        (props,) = await self._call(_PROPS, "GetAll", "s", [_HN])
        return {k: v.value for k, v in props.items() if isinstance(v.value, str)}

    # -- watch / check / apply -----------------------------------------------------------

    async def watch(self, ctx: Context) -> None:
        addr = system_bus_address()
        unsub = await ctx.dbus.subscribe(
            addr,
            path=_HN_PATH,
            interface=_PROPS,
            member="PropertiesChanged",
            handler=lambda _m: ctx.event(),
        )
        sub = ctx.inotify.subscribe(ETC_HOSTNAME, ctx.event)
        try:
            ctx.ready()
            await ctx.dbus.wait_lost(addr)
            raise ResourceError("lost the connection to the D-Bus system bus (hostnamed)")
        finally:
            ctx.inotify.unsubscribe(sub)
            unsub()

    async def check(self) -> Plan:
        have = await self._properties()
        changes = []
        for field, value in self.wanted().items():
            prop = _ASPECTS[field][0]
            if prop not in have:
                raise ResourceError(f"systemd-hostnamed did not report its {prop} property")
            if have[prop] != value:
                changes.append(Change(field, have[prop], value))
        return Plan(tuple(changes))

    async def apply(self, plan: Plan) -> None:
        fields = {c.field for c in plan.changes}
        for field, (prop, setter) in _ASPECTS.items():
            if field in fields:
                value = self.wanted()[field]
                await self._call(_HN, setter, "sb", [value, False])
                self.ctx.log.info("%s set to %r", prop, value)
        if "transient_hostname" in fields:
            # hostnamed may refuse silently: the static name wins while one is set
            want = self.wanted()["transient_hostname"]
            got = (await self._properties()).get("Hostname")
            if got != want:
                raise ResourceError(
                    f"systemd-hostnamed kept the kernel's hostname at {got!r}, not {want!r}: "
                    "it keeps it at the static hostname while one is set"
                )
