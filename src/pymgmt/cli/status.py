"""`pymgmt status`: what the running agent is doing, per resource.

Asks the agent on its status socket (``<prefix>/status.sock``, see
`pymgmt.status`) and prints a table: each resource's state, when it was
last checked and changed, its drift repairs, the refreshes waiting for it
and its last error; ``--json`` prints the agent's answer as it is.

Exit codes: 0 the agent answered; 1 no agent answered (none runs on that
state directory, or the caller may not ask it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..report.console import visible
from ..report.exitcodes import EXIT_INPUT, EXIT_OK

if TYPE_CHECKING:
    import argparse

#: the longest error shown in the table (the whole one is in --json)
ERROR_WIDTH = 72
COLUMNS = ("RESOURCE", "STATE", "LAST CHECK", "LAST CHANGE", "REPAIRS", "REFRESHES", "LAST ERROR")


def status_command(args: argparse.Namespace) -> int:
    from ..statedir import default_prefix
    from ..status.client import StatusUnavailable, ask

    prefix = Path(args.prefix) if args.prefix else default_prefix()
    try:
        # the table shows no params: the agent need not encode them
        answer = ask(prefix, {"command": "status", "params": bool(args.json)})
    except StatusUnavailable as e:
        return _error(str(e) + _hint(args), args)
    if not answer.get("ok"):
        return _error(str(answer.get("error", "the agent refused")), args)
    status = answer.get("status")
    text = json.dumps(status) + "\n" if args.json else render(_dict(status), now=time.time())
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `pymgmt status | head -3`: the reader had enough
        from ..report.console import silence

        silence(sys.stdout)
    return EXIT_OK


def _hint(args: argparse.Namespace) -> str:
    """Where the agent may be instead: a user looking for root's agent in its own cache."""
    from ..statedir import ROOT_PREFIX

    if args.prefix or os.geteuid() == 0 or not os.path.isdir(ROOT_PREFIX):
        return ""
    return f" (an agent run as root uses {ROOT_PREFIX} and answers root only)"


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _error(message: str, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({"event": "error", "message": message}))
    else:
        print(f"pymgmt: error: {message}", file=sys.stderr)
    return EXIT_INPUT


def render(status: dict[str, Any], *, now: float) -> str:
    """The header and the table ``pymgmt status`` prints."""
    agent = status.get("agent", {})
    vertices = status.get("vertices", [])
    rows = [_row(v, now) for v in vertices]
    return "".join(line + "\n" for line in [*_header(agent, now), "", *_table(rows)])


def _header(agent: dict[str, Any], now: float) -> list[str]:
    counts = agent.get("counts", {})
    total = sum(counts.values())
    states = ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "none"
    verdict = "converged" if agent.get("converged") else "not converged"
    if agent.get("stopping"):
        verdict += ", stopping"
    if agent.get("noop"):
        verdict += ", noop"
    since = _clock(agent.get("graph_swapped"))
    return [
        f"pymgmt {visible(str(agent.get('version', '?')))}: pid {agent.get('pid')} on "
        f"{visible(str(agent.get('hostname') or '?'))}, up {_age(agent.get('started'), now)}",
        f"graph {visible(str(agent.get('graph', '')))!r} (running since {since}): "
        f"{total} resource{'' if total == 1 else 's'}: {states}; {verdict}",
    ]


def _row(v: dict[str, Any], now: float) -> list[str]:
    error = v.get("last_error")
    return [
        visible(str(v.get("name", "?"))),
        str(v.get("status", "?")),
        _ago(v.get("last_check"), now),
        _ago(v.get("last_change"), now),
        str(v.get("drift_repairs", 0)),
        str(v.get("pending_refreshes", 0)),
        _short(error) if error else "-",
    ]


def _table(rows: Sequence[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [list(COLUMNS), *rows]
    ]


def _short(error: str) -> str:
    """The first line of `error`, printable, cut at `ERROR_WIDTH`."""
    first = visible(error.strip().split("\n", 1)[0])
    return first if len(first) <= ERROR_WIDTH else first[: ERROR_WIDTH - 3] + "..."


def _ago(t: object, now: float) -> str:
    if not isinstance(t, int | float):
        return "-"
    return f"{_age(t, now)} ago"


def _age(t: object, now: float) -> str:
    """``4 s``, ``12 min``, ``3 h``, ``2 d``: how long ago `t` was."""
    if not isinstance(t, int | float):
        return "?"
    s = max(0, int(now - t))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def _clock(t: object) -> str:
    if not isinstance(t, int | float):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
