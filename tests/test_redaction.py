"""A secret sent into an exec never shows in any output channel (issue 8, item 15).

A password is sent into an exec's ``cmd``; the command fails and prints the
secret. Real agents run in every mode a person or a machine reads (console,
``-v``, ``--json``, ``--noop``, ``--graphviz``), and every channel (stdout,
stderr, the DOT file) is searched for the secret's value.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from helpers import event, json_lines, run_once, sendrecv_edge, write_atomic

from pymgmt import redaction
from pymgmt.fsutil import state_name
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


# -- exec output and argv: redacted before it is cut or split (review finding 2) ---------------

#: prints the command it runs (argv[2] of ``/bin/sh -c CMD``): the secret itself
_SELF = "tr '\\0' '\\n' </proc/$$/cmdline | sed -n 3p"


def _planted(tmp_path: Path, secret: str, *, shell: str) -> tuple[Path, Path]:
    """A graph sending password pw into exec use-it's cmd, pw already stored as `secret`.

    The secret is planted in the password's state (valid for its length and
    charset, so it is kept), which makes the secret an arbitrary text: here
    a shell script, or a string with quotes.
    """
    state = tmp_path / "state"
    stored = state / "state" / state_name("password", "pw")
    stored.mkdir(parents=True)
    (stored / "password").write_text(secret)
    doc = {
        "graph": "leak",
        "resources": {
            "password": [
                {"name": "pw", "length": len(secret), "charset": "".join(sorted(set(secret)))}
            ],
            "exec": [{"name": "use-it", "cmd": "true", "shell": shell}],
        },
        "edges": [sendrecv_edge("e1", "password:pw", "exec:use-it", "password", "cmd")],
    }
    graph = tmp_path / "graph.yaml"
    graph.write_text(yaml.safe_dump(doc))
    return graph, state


def _pieces(secret: str, size: int = 40) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def _padded(script: str, length: int = 700) -> str:
    return (script + " #").ljust(length, "p")


@pytest.mark.parametrize(
    "script",
    [
        # one output line of 700 characters: each shown line is cut at 500
        _padded(f"{_SELF}; exit 3"),
        # the 64 KiB kept tail begins inside the secret
        _padded(f"{_SELF} | tr -d '\\n'; head -c 65300 /dev/zero | tr '\\0' y; echo; exit 3"),
    ],
    ids=["long-line", "tail-cut"],
)
def test_a_long_secret_in_exec_output_leaks_no_piece(tmp_path, script):
    graph, state = _planted(tmp_path, script, shell="/bin/sh")
    for mode in [(), ("-v",), ("--json",), ("--json", "-v")]:
        proc = run_once(graph, state, *mode)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        text = proc.stdout + proc.stderr
        assert "status 3" in text
        leaked = [p for p in _pieces(script) if p in text]
        assert not leaked, f"{mode}: a piece of the secret is printed: {leaked[0]!r}"


@pytest.mark.parametrize("secret", ["ab'ba'xy", "ab'cd"], ids=["quotes", "unbalanced"])
def test_a_secret_cmd_is_never_shown_split_and_cannot_crash_the_split(tmp_path, secret):
    graph, state = _planted(tmp_path, secret, shell="")
    proc = run_once(graph, state, "--json", "-v")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 4, text
    for piece in ("abbaxy", "bbax", "ab'cd", "abcd"):  # the secret, split or not
        assert piece not in text, piece
    (failed,) = (e for e in json_lines(proc.stdout) if e.get("event") == "failed")
    assert failed["kind"] == "resource", json.dumps(failed)
    assert "Traceback" not in proc.stderr


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


# -- a reloaded graph's errors stay structured (review finding 8) ------------------------

SHORT = """\
graph: short
resources:
  password:
  - name: pw
    length: 3
    charset: "zq"
"""


def test_a_rejected_reload_keeps_structured_errors_when_a_secret_matches(agent, tmp_path):
    """A 3-character password's value written as an unknown key of the reloaded
    graph: the --json ``graph_rejected`` event still lists {message, file,
    line, ...} objects, with the secret replaced inside them."""
    graph = tmp_path / "graph.yaml"
    graph.write_text(SHORT)
    a = agent(graph)
    a.wait_checked(["Password[pw]"])
    secret = _secret(tmp_path / "state")
    since = a.mark()
    write_atomic(graph, SHORT + f"    {secret}: 1\n")
    i = a.wait_event(event("graph_rejected"), since=since, what="the rejection")
    (err,) = a.events[i]["errors"]
    assert isinstance(err, dict), err
    assert err["file"] == str(graph)
    assert (err["line"], err["column"]) == (7, 5)
    assert err["field"] == "<redacted>"
    assert "unknown field" in err["message"]
    assert secret not in json.dumps(a.events[i])


def test_scrubbed_input_errors_keep_their_type_and_location(fresh_registry):
    from pymgmt.errors import InputError, InputErrors, Location

    redaction.register("hunter22")
    one = InputError("bad hunter22", location=Location("/g.yaml", 3, 5), hint="not hunter22")
    two = InputError("fine", location=Location("/g.yaml", 9, 1), field="hunter22")
    both = InputErrors([one, two])
    out = redaction.scrub(both)
    assert type(out) is InputErrors and len(out.errors) == 2
    assert out.errors[0].as_dict() == {
        "message": "bad <redacted>",
        "file": "/g.yaml",
        "line": 3,
        "column": 5,
        "field": None,
        "hint": "not <redacted>",
    }
    assert out.errors[1].field == "<redacted>"
    assert "hunter22" not in str(out)
