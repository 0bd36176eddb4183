"""The log line format (issue 12): date, level, resource; JSON; journal priorities; status line.

Each test writes through a real `Output` into a real file (or a StringIO)
and reads back what a person, journald or a log shipper would get.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from pathlib import Path

import pytest
from helpers import terminal_rows

from pymgmt import redaction
from pymgmt.report.console import ConsoleReporter
from pymgmt.report.events import ChangeInfo, Checked, Failed, RemoteOutput
from pymgmt.report.logs import CLEAR, NOTICE, Output, OutputHandler, journal_stream

#: ``2026-11-27T22:30:01.123+00:00 ``: ISO 8601, milliseconds, the local offset
DATE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d "


def _changed(vertex: str = "File[/etc/x]", diff: str = "") -> Checked:
    return Checked(
        vertex, "start", [ChangeInfo("content", None, "sha", diff)], True, False, False, 0
    )


def test_a_line_has_an_iso_date_a_level_and_the_resource() -> None:
    out = io.StringIO()
    ConsoleReporter(output=Output(out, journal=False)).emit(_changed())
    assert re.fullmatch(
        DATE + r"NOTICE File\[/etc/x\]: CheckApply\(apply=True\): changed: content\n",
        out.getvalue(),
    ), out.getvalue()


def test_levels_follow_what_happened_and_the_level_filters() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(output=Output(out, level=logging.WARNING, journal=False))
    reporter.emit(_changed())  # NOTICE: below WARNING
    reporter.emit(Failed("Exec[a]", "apply", "exit status 1", retry_in=2.0))
    reporter.emit(Failed("Exec[b]", "apply", "exit status 1"))
    lines = out.getvalue().splitlines()
    assert [re.sub(DATE, "", x) for x in lines] == [
        "WARNING Exec[a]: FAILED in apply: exit status 1 (retrying in 2 s)",
        "ERROR Exec[b]: FAILED in apply: exit status 1",
    ]


def test_json_lines_carry_the_same_fields_separately() -> None:
    out = io.StringIO()
    ConsoleReporter(output=Output(out, fmt="json", journal=False, level=logging.DEBUG)).emit(
        _changed(diff="--- a\n+++ b\n+new\n")
    )
    (doc,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert re.fullmatch(DATE.strip(), doc["time"])
    assert doc["level"] == "notice" and doc["resource"] == "File[/etc/x]"
    assert doc["event"] == "checked"  # as the --json events name it
    assert doc["message"] == "CheckApply(apply=True): changed: content"
    assert doc["detail"] == "    --- a\n    +++ b\n    +new\n"


def test_under_the_journal_each_line_starts_with_its_priority_and_no_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert journal_stream(stream)
        output = Output(stream, level=logging.DEBUG)
        reporter = ConsoleReporter(output=output)
        reporter.emit(_changed(diff="+new\n"))  # -v: the diff under it
        reporter.emit(Failed("Exec[b]", "apply", "exit status 1"))
        output.block(logging.INFO, "Recap\n  File[x] changed\n")
    assert path.read_text().splitlines() == [
        "<5>NOTICE File[/etc/x]: CheckApply(apply=True): changed: content",
        "<5>    +new",
        "<3>ERROR Exec[b]: FAILED in apply: exit status 1",
        "<6>Recap",
        "<6>  File[x] changed",
    ]


def test_a_journal_stream_inherited_by_another_stream_is_not_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # systemd's variable stays set for a child whose stderr goes elsewhere
    journal = tmp_path / "journal"
    journal.write_text("")
    st = os.stat(journal)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    with open(tmp_path / "elsewhere", "w") as other:
        assert not journal_stream(other)
        Output(other).line(logging.INFO, "hello")
    assert re.fullmatch(DATE + r"INFO  hello\n", (tmp_path / "elsewhere").read_text())


def test_logging_records_get_the_same_format_their_resource_and_redaction() -> None:
    secret = "s3cret-for-output-test"
    redaction.register(secret)
    out = io.StringIO()
    log = logging.getLogger("pymgmt.test.output")
    handler = OutputHandler(Output(out, fmt="json", journal=False))
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    try:
        log.warning("Pkg[cowsay]: apt-get said %s", secret)
        log.info("no resource here")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(x) for x in out.getvalue().splitlines())
    assert first["resource"] == "Pkg[cowsay]" and first["level"] == "warning"
    assert first["message"] == "apt-get said <redacted>"
    assert "resource" not in second and second["message"] == "no resource here"


def test_a_terminal_escape_in_a_message_is_written_out_never_acted_on() -> None:
    out = io.StringIO()
    Output(out, journal=False).line(NOTICE, "name \x1b[2J here", "File[\rx]")
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert "File[\\rx]: name \\x1b[2J here" in out.getvalue()


def test_the_status_line_is_cleared_before_a_line_and_drawn_again_after() -> None:
    out = io.StringIO()
    output = Output(out, journal=False, live=True)
    output.status("pymgmt: 1/3 checked, 1 applying, 1 pending")
    output.line(logging.INFO, "one", "Exec[a]")
    output.status("pymgmt: 2/3 checked, 1 applying, 0 pending")
    output.line(logging.INFO, "two", "Exec[b]")
    output.status("")
    *lines, last = terminal_rows(out.getvalue())
    assert [re.sub(DATE, "", x) for x in lines] == ["INFO  Exec[a]: one", "INFO  Exec[b]: two"]
    assert last == ""  # the status line is gone at the end
    assert "pymgmt: 2/3 checked" in out.getvalue()


def test_no_status_line_where_it_could_not_be_cleared() -> None:
    out = io.StringIO()  # not a terminal
    output = Output(out, journal=False)
    output.status("pymgmt: 1/3 checked")
    output.line(logging.INFO, "one")
    assert CLEAR not in out.getvalue() and "checked" not in out.getvalue()
    for fmt, journal in (("json", False), ("text", True)):
        assert not Output(io.StringIO(), fmt=fmt, journal=journal, live=True).live


def test_another_hosts_lines_are_relayed_with_its_name_in_every_format() -> None:
    line = RemoteOutput("b", "2026-11-27T22:30:01.123+00:00 NOTICE File[f]: changed \x1b[2J")
    text, js, journal = io.StringIO(), io.StringIO(), io.StringIO()
    ConsoleReporter(output=Output(text, journal=False)).emit(line)
    ConsoleReporter(output=Output(js, fmt="json", journal=False)).emit(line)
    ConsoleReporter(output=Output(journal, journal=True, level=logging.ERROR)).emit(line)
    assert text.getvalue() == "[b] 2026-11-27T22:30:01.123+00:00 NOTICE File[f]: changed \\x1b[2J\n"
    doc = json.loads(js.getvalue())
    assert doc["host"] == "b" and doc["message"].endswith("changed \\x1b[2J")
    assert journal.getvalue().startswith("<6>[b] 2026-")  # whatever the level: the host said it
