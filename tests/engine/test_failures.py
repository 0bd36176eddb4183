"""Failures carry structured facts, and a bug says it is one (issue 8).

A resource's unexpected exception (neither a PymgmtError nor an OSError) is
an internal error: its message says so, its traceback is logged at debug
(``-v``) and carried in the JSON ``failed`` event. OS errors and resource
errors give errno, path, command and exit status as fields, so a machine
never parses the message.
"""

from __future__ import annotations

import errno
import io
import logging
from typing import Any, ClassVar

from helpers import json_lines, run_async

from pymgmt import Exec, GraphBuilder
from pymgmt.errors import ResourceError
from pymgmt.frontends import api
from pymgmt.report.console import JsonReporter
from pymgmt.report.events import Failed
from pymgmt.resources.base import Plan, Resource


class _Raises(Resource):
    """check() raises what the test puts in `errors` under its name (unregistered)."""

    kind: ClassVar[str] = "test-raises"
    errors: ClassVar[dict[str, Exception]] = {}

    async def check(self) -> Plan:
        raise self.errors[self.name]


def _failed_json(tmp_path, errors: dict[str, Exception]) -> dict[str, dict[str, Any]]:
    _Raises.errors = errors
    g = GraphBuilder("fail")
    for name in errors:
        g.add(_Raises(name=name))
    result = run_async(api.run_async(g, converged_timeout=0, state_dir=tmp_path / "s"))
    assert result.exit_code == 4
    out = io.StringIO()
    reporter = JsonReporter(out)
    for e in result.events:
        reporter.emit(e)
    return {e["vertex"]: e for e in json_lines(out.getvalue()) if e["event"] == "failed"}


def test_failures_carry_kind_errno_path_command_and_exit_status(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="pymgmt")
    failed = _failed_json(
        tmp_path,
        {
            "bug": KeyError("x"),
            "os": PermissionError(errno.EACCES, "Permission denied", "/etc/shadow"),
            "cmd": ResourceError("command exited with status 3", command="false", exit_status=3),
        },
    )

    bug = failed["Test-raises[bug]"]
    assert bug["kind"] == "internal"
    assert bug["error"] == "internal error (a pymgmt bug, please report it): KeyError: 'x'"
    assert "raise self.errors[self.name]" in bug["traceback"]
    assert "KeyError: 'x'" in bug["traceback"]
    assert "raise self.errors[self.name]" in caplog.text  # the traceback, logged at debug

    os_err = failed["Test-raises[os]"]
    assert (os_err["kind"], os_err["errno"], os_err["path"]) == ("os", errno.EACCES, "/etc/shadow")
    assert os_err["traceback"] is None

    cmd = failed["Test-raises[cmd]"]
    assert (cmd["kind"], cmd["command"], cmd["exit_status"]) == ("resource", "false", 3)
    assert cmd["error"] == "command exited with status 3"


def test_a_failed_command_gives_its_command_and_exit_status(tmp_path):
    g = GraphBuilder("exec")
    g.add(Exec(name="e", shell="/bin/sh", cmd="echo oops; exit 3"))
    result = run_async(api.run_async(g, converged_timeout=0, state_dir=tmp_path / "s"))
    (fail,) = [e for e in result.events if isinstance(e, Failed)]
    assert (fail.kind, fail.command, fail.exit_status) == ("resource", "echo oops; exit 3", 3)
