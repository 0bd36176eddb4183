"""The running agent's status socket: ``<prefix>/status.sock`` (issue 12).

``pymgmt run`` serves the live state (`report.live.LiveState`) on a unix
socket in its state directory; ``pymgmt status`` asks it. One JSON request
per connection, one JSON response, then the agent closes it::

    -> {"command": "status"}\\n
    <- {"ok": true, "status": {"agent": {...}, "vertices": [...], "edges": [...]}}\\n
    -> {"command": "status", "params": false}\\n      (the same, without each vertex's params)
    -> {"command": "vertex", "name": "File[/etc/motd]"}\\n
    <- {"ok": true, "vertex": {...}}\\n
    <- {"ok": false, "error": "..."}\\n          (anything refused)

Who may ask: the socket is mode 0600 from its first byte, and the agent
checks every peer's uid with ``SO_PEERCRED``: root or the agent's own user
only. What it tells includes every resource's params (secrets redacted) and
errors, which are nobody else's business.

`server` runs in the agent (asyncio); `client` is what the command uses,
plain blocking sockets, so ``pymgmt status`` starts without asyncio or the
engine.
"""

from __future__ import annotations

#: the socket's name in the agent's state directory
SOCKET_NAME = "status.sock"
#: the longest request the agent reads (a request is a few dozen bytes)
MAX_REQUEST = 4096
