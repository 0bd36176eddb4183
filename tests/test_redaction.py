"""A secret sent into an exec never shows in any output channel (issue 8, item 15).

A password is sent into an exec's ``cmd``; the command fails and prints the
secret. Real agents run in every mode a person or a machine reads (console,
``-v``, ``--json``, ``--noop``, ``--graphviz``), and every channel (stdout,
stderr, the DOT file) is searched for the secret's value.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers import run_once

from pymgmt import redaction
from pymgmt.report.events import ChangeInfo, Checked

GRAPH = """\
graph: leak
resources:
  password:
  - name: pw
    length: 40
  exec:
  - name: use-it
    cmd: "true"
    shell: /bin/sh
edges:
- name: e1
  from: {kind: password, name: pw}
  to: {kind: exec, name: use-it}
  send: password
  recv: cmd
"""

MODES = [
    (),
    ("-v",),
    ("--json",),
    ("--json", "-v"),
    ("--noop",),
    ("--noop", "-v"),
    ("--noop", "--json"),
]


def _secret(state: Path) -> str:
    (stored,) = state.glob("state/password-pw*/password")
    return stored.read_text()


def test_a_secret_sent_into_exec_is_in_no_output_channel(tmp_path):
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH)
    state = tmp_path / "state"
    dot = tmp_path / "graph.dot"
    first = run_once(graph, state, "--graphviz", str(dot))
    secret = _secret(state)
    assert len(secret) == 40
    outputs = {"first run": first.stdout + first.stderr, "dot": dot.read_text()}
    for mode in MODES:
        proc = run_once(graph, state, *mode)
        outputs[" ".join(mode) or "console"] = proc.stdout + proc.stderr
    for path in tmp_path.glob("graph.*"):
        if path.suffix in (".dot", ".svg"):
            outputs[path.name] = path.read_text()
    leaks = [name for name, text in outputs.items() if secret in text]
    assert not leaks, f"the secret is printed in: {leaks}"
    # The command did run with the secret, failed, and said so (redacted).
    assert "FAILED" in outputs["console"] and "<redacted>" in outputs["console"]
    assert "not found" in outputs["-v"]
    assert '"new": "<redacted>"' in outputs["--noop --json"]


# -- the registry itself -----------------------------------------------------------


@pytest.fixture
def fresh_registry(monkeypatch):
    """An empty registry for this test (the real one is process-wide)."""
    monkeypatch.setattr(redaction, "_values", set())
    monkeypatch.setattr(redaction, "_pattern", None)


def test_events_are_scrubbed_everywhere_inside(fresh_registry):
    ev = Checked(
        vertex="Exec[x]",
        reason="start",
        changes=[ChangeInfo("run", None, "echo 'Zq\"9'; ok")],
        applied=False,
        noop=True,
        drift=False,
        seconds=0.0,
        note='failed: Zq"9',
    )
    assert redaction.scrub(ev) is ev  # nothing registered: nothing to pay
    redaction.register('Zq"9')
    out = redaction.scrub(ev)
    assert out.changes[0].new == "echo '<redacted>'; ok"
    assert out.note == "failed: <redacted>"
    # the quoted forms are caught too (repr, JSON, DOT)
    assert redaction.redact(repr('Zq"9')) == "'<redacted>'"
    assert redaction.redact('"Zq\\"9"') == '"<redacted>"'


def test_log_records_are_redacted_with_their_arguments_and_traceback(fresh_registry):
    redaction.register("hunter22")
    record = logging.LogRecord("pymgmt.x", logging.INFO, __file__, 1, "got %s", ("hunter22",), None)
    try:
        raise ValueError("bad hunter22")
    except ValueError as e:
        record.exc_info = (type(e), e, e.__traceback__)
    assert redaction.RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "hunter22" not in text
    assert "got <redacted>" in text and "bad <redacted>" in text
