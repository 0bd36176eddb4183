"""msg: a message in the agent's log each time a refresh notification arrives.

mgmt's ``msg`` and Puppet's ``notify`` with a message: a graph says in the
log that something happened ("nginx.conf changed: reloading"). The line is
the agent's own log line, at the priority asked for, so under systemd it
is a journald entry with that priority. Received text (Send/Recv) that is
secret is redacted like any other.

A message changes nothing on the system: the resource is always converged,
and logging it is not a change (a converged run still exits 0).
"""

from __future__ import annotations

import logging
from typing import Literal

from .base import CONVERGED, Plan, Resource, param

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class Msg(Resource, kind="msg"):
    """Logs ``body`` at ``priority`` each time a refresh notification arrives.

    Always converged: logging is not a change of the system. Put it at the
    end of a ``notify: true`` edge to say in the log (the journal, under
    systemd) that what notifies it changed.
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
    priority: Literal["debug", "info", "warning", "error"] = param(
        "info", doc="the log level (journald priority under systemd)"
    )

    def refresh(self) -> None:
        self.ctx.log.log(_LEVELS[self.priority], "%s", self.body or self.name)

    async def check(self) -> Plan:
        return CONVERGED

    async def apply(self, plan: Plan) -> None:
        return None
