"""msg: a message in the agent's log at its first check and at each refresh notification.

mgmt's ``msg`` and Puppet's ``notify`` with a message: a graph says in the
log that something happened ("nginx.conf changed: reloading"). The line is
the agent's own log line, at the priority asked for, so under systemd it
is a journald entry with that priority. Received text (Send/Recv) that is
secret is redacted like any other.

When, as in mgmt (``engine/resources/msg.go``: its ``logStateOK`` starts
false): once at the resource's first check, in every run and under
``--noop`` too, then once per refresh notification. A first check that
also delivers a refresh logs it once, not twice (mgmt clears the same one
flag for both).

A message changes nothing on the system: the resource is always converged,
and logging it is not a change (a converged run still exits 0). There it
differs from mgmt, whose ``CheckApply`` always answers "not converged".
It differs in the line, too: mgmt's is ``Body: <body>`` at its default
level (the priority goes to the journal only); pymgmt's is the body alone
at ``priority``. A refresh under ``--noop`` is not delivered, so it logs
nothing, while mgmt logs it on its check that applies nothing.

mgmt's graphs run unchanged: its priorities (``Err``, ``Notice``...) are
accepted for pymgmt's (syslog's emerg, alert and crit are logged as
errors, the highest priority pymgmt's log has). ``journal`` and
``syslog`` are accepted and change nothing: the line already is a
journald entry under systemd, and mgmt's syslog output is itself a
to-do. ``fields`` (extra journal fields) are checked as mgmt does and
then ignored aloud: a line on stderr carries none.
"""

from __future__ import annotations

import logging
import re
from typing import Literal

from ..report.logs import NOTICE
from .base import CONVERGED, Context, Plan, Resource, param

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": NOTICE,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
#: mgmt's priorities (its Validate's words) -> pymgmt's
_MGMT_PRIORITIES = {
    "Emerg": "error",
    "Alert": "error",
    "Crit": "error",
    "Err": "error",
    "Warning": "warning",
    "Notice": "notice",
    "Info": "info",
    "Debug": "debug",
}
#: a journal field name as mgmt accepts one (and journald: no leading '_')
_FIELD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")
_FIELD_RULE = "letters, digits and '_', which may not come first"


class Msg(Resource, kind="msg"):
    """Logs ``body`` at ``priority`` at its first check and at each refresh notification.

    Always converged: logging is not a change of the system. Put it at the
    end of a ``notify: true`` edge to say in the log (the journal, under
    systemd) that what notifies it changed; as in mgmt it is also said
    once when the agent starts checking it.
    """

    example = """\
graph: announce
resources:
  file:
  - name: /etc/motd
    content: "welcome\\n"
  msg:
  - name: motd-changed
    body: the message of the day changed
    priority: warning
edges:
- name: tell
  from: {kind: file, name: /etc/motd}
  to: {kind: msg, name: motd-changed}
  notify: true
"""

    body: str = param("", doc="the message; empty: the resource's name")
    priority: Literal["debug", "info", "notice", "warning", "error"] = param(
        "info",
        doc="the log level (journald priority under systemd)",
        spellings=_MGMT_PRIORITIES,
    )
    journal: bool = param(
        False, doc="mgmt's: send to the journal; pymgmt's line already is one under systemd"
    )
    syslog: bool = param(False, doc="mgmt's: send to syslog; a no-op, in mgmt too")
    fields: dict[str, str] = param(
        default_factory=dict, doc="mgmt's extra journal fields: checked, then ignored"
    )

    def problems(self) -> list[tuple[str, str]]:
        return [
            ("fields", f"not a journal field name ({_FIELD_RULE}): {name!r}")
            for name in self.fields
            if not _FIELD_NAME.fullmatch(name)
        ]

    def warnings(self) -> list[tuple[str, str]]:
        if self.fields:
            return [("fields", "ignored: pymgmt's log lines carry no extra journal fields")]
        return []

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        #: the message is due at the next check: at the first one (mgmt's
        #: logStateOK starts false), and after each refresh
        self._due = True

    def refresh(self) -> None:
        self._due = True

    async def check(self) -> Plan:
        if self._due:
            self._due = False
            self.ctx.log.log(_LEVELS[self.priority], "%s", self.body or self.name)
        return CONVERGED

    async def apply(self, plan: Plan) -> None:
        return None
