"""`pymgmt run`'s output as an operator meets it (issue 12), from a real agent.

The contract (README "Output"): log lines, progress and the recap on
stderr, each line with a date, a level and the resource; stdout carries the
``--json`` events only; ``--log-level``, ``--log-format json``; under
systemd's journal, syslog priorities instead of dates; on a terminal a live
status line that never shares a row with a log line.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import (
    DEADLINE,
    PYMGMT,
    graph_doc,
    json_lines,
    run_once,
    terminal_rows,
    wait_for,
    write_graph,
)

DATE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
LINE = re.compile(DATE + r" (DEBUG|INFO |NOTICE|WARNING|ERROR) \S")


def _graph(tmp_path: Path, managed: Path, *, sleep: float = 0, fail: bool = False) -> Path:
    files = [{"name": "f", "path": str(managed / "f"), "content": "wanted\n"}]
    execs = [{"name": "said", "cmd": "echo hello from exec", "shell": "/bin/sh"}]
    if sleep:
        execs.append({"name": "slow", "cmd": f"sleep {sleep}", "shell": "/bin/sh"})
    if fail:
        execs.append({"name": "bad", "cmd": "exit 3", "shell": "/bin/sh"})
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("logs", files=files, execs=execs))
    return graph


def _before_recap(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    end = next(i for i, x in enumerate(lines) if x.startswith("Recap of graph"))
    return lines[:end]


def test_human_output_goes_to_stderr_every_line_dated_levelled_with_its_resource(tmp_path, managed):
    proc = run_once(_graph(tmp_path, managed), tmp_path / "s")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # stdout is for --json
    lines = _before_recap(proc.stderr)
    assert lines and all(LINE.match(x) for x in lines), lines
    changed = r" NOTICE File\[f\]: CheckApply\(apply=True\): changed: "
    assert any(re.search(changed, x) for x in lines), lines
    assert proc.stderr.rstrip().splitlines()[-1].startswith("OK: ")  # the recap ends it


def test_json_events_alone_on_stdout_and_log_lines_on_stderr(tmp_path, managed):
    proc = run_once(_graph(tmp_path, managed), tmp_path / "s", "--json", "--log-level", "debug")
    assert proc.returncode == 2, proc.stderr
    events = json_lines(proc.stdout)  # fails on any line that is not JSON
    assert events[-1]["event"] == "recap"
    said = [x for x in proc.stderr.splitlines() if "hello from exec" in x]
    assert said and all(LINE.match(x) for x in said), proc.stderr
    assert re.search(r" DEBUG Exec\[said\]: output: hello from exec", said[0]), said


def test_log_level_hides_what_is_less_severe_but_never_the_recap(tmp_path, managed):
    graph = _graph(tmp_path, managed, fail=True)
    warning = run_once(graph, tmp_path / "s", "--log-level", "warning")
    assert warning.returncode == 6, warning.stderr
    lines = [re.sub(DATE + " ", "", x) for x in _before_recap(warning.stderr)]
    assert "ERROR Exec[bad]: FAILED in apply: command exited with status 3" in lines
    assert all(x.startswith(("ERROR ", "WARNING ")) for x in lines), lines
    assert "Recap of graph" in warning.stderr
    (managed / "f").unlink()
    notice = run_once(graph, tmp_path / "s", "--log-level", "notice")
    lines = _before_recap(notice.stderr)
    assert any(" NOTICE File[f]: " in x for x in lines), lines
    assert not any(" INFO " in x for x in lines), lines
    debug = run_once(graph, tmp_path / "s", "--log-level", "debug")
    unchanged = r" DEBUG File\[f\]: CheckApply\(apply=False\)"
    assert any(re.search(unchanged, x) for x in debug.stderr.splitlines()), debug.stderr


def test_log_level_and_v_or_q_together_are_a_usage_error(tmp_path, managed):
    proc = run_once(_graph(tmp_path, managed), tmp_path / "s", "-v", "--log-level", "info")
    assert proc.returncode == 1
    assert "give -v/-q or --log-level, not both" in proc.stderr
    assert not (managed / "f").exists()


def test_log_format_json_makes_every_stderr_line_an_object(tmp_path, managed):
    proc = run_once(_graph(tmp_path, managed, fail=True), tmp_path / "s", "--log-format", "json")
    assert proc.returncode == 6, proc.stderr
    assert proc.stdout == ""
    docs = [json.loads(x) for x in proc.stderr.splitlines()]
    assert all(re.fullmatch(DATE, d["time"]) and d["level"] and d["message"] for d in docs)
    failed = [d for d in docs if d.get("resource") == "Exec[bad]"]
    assert failed[0]["level"] == "error" and "exited with status 3" in failed[0]["message"]
    assert docs[-1]["message"] == "recap" and docs[-1]["recap"]["exit_code"] == 6


def _under_the_journal(tmp_path: Path, graph: Path) -> tuple[int, list[str]]:
    """Run once as systemd runs a service: JOURNAL_STREAM names the stream stderr is."""
    journal = tmp_path / "journal"
    argv = [*PYMGMT, "run", "--prefix", str(tmp_path / "s"), "--converged-timeout", "0"]
    with open(journal, "w") as err:
        st = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        code = subprocess.run(
            [*argv, str(graph)], stdout=subprocess.DEVNULL, stderr=err, env=env, timeout=60
        ).returncode
    return code, journal.read_text().splitlines()


def test_under_the_journal_lines_carry_syslog_priorities_and_no_date(tmp_path, managed):
    code, lines = _under_the_journal(tmp_path, _graph(tmp_path, managed, fail=True))
    assert code == 6
    assert all(re.match(r"<[0-7]>", x) for x in lines), lines
    assert not any(re.search(DATE, x) for x in lines), lines
    assert "<3>ERROR Exec[bad]: FAILED in apply: command exited with status 3" in lines
    assert any(x.startswith("<5>NOTICE File[f]: ") for x in lines), lines


def test_an_apply_that_runs_long_is_said_while_it_runs(tmp_path, managed):
    proc = run_once(_graph(tmp_path, managed, sleep=1.5), tmp_path / "s")
    assert proc.returncode == 2, proc.stderr
    lines = [re.sub(DATE + " ", "", x) for x in proc.stderr.splitlines()]
    started = lines.index("INFO  Exec[slow]: applying run (running for 1 s)")
    done = next(i for i, x in enumerate(lines) if x.startswith("NOTICE Exec[slow]: "))
    assert started < done
    assert not any("Exec[said]: applying" in x for x in lines)  # a quick one is not


@pytest.mark.slow
def test_anything_still_busy_is_said_every_20_seconds(tmp_path, managed):
    proc = run_once(_graph(tmp_path, managed, sleep=21), tmp_path / "s", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [re.sub(DATE + " ", "", x) for x in proc.stderr.splitlines()]
    assert "INFO  Exec[slow]: still running: applying for 20 s" in lines, lines


def test_on_a_terminal_a_live_status_line_never_garbles_a_log_line(tmp_path, managed):
    graph = _graph(tmp_path, managed, sleep=2)
    argv = [*PYMGMT, "run", "--prefix", str(tmp_path / "s"), "--converged-timeout", "0"]
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*argv, str(graph)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=follower,
            env={**os.environ, "TERM": "xterm"},
        )
        os.close(follower)
        follower = -1
        written = _read_until_exit(leader, proc)
    finally:
        for fd in (leader, follower):
            if fd >= 0:
                os.close(fd)
    assert proc.returncode == 2, written
    assert "\r\x1b[Kpymgmt: " in written  # the status line was drawn
    status = r"pymgmt: \d+/3 checked, 1 applying \(Exec\[slow\] \d+ s\)"
    assert re.search(status, written), re.findall(r"pymgmt: [^\r\n]*", written)
    rows = terminal_rows(written.replace("\r\n", "\n"))[:-1]  # \r\n: the pty's own
    recap = next(i for i, x in enumerate(rows) if x.startswith("Recap of graph"))
    assert rows[:recap] and all(LINE.match(x) for x in rows[:recap]), rows
    assert not any("pymgmt: " in x for x in rows), rows  # it never stayed on a row
    assert rows[-1].startswith("OK: "), rows


def _read_until_exit(fd: int, proc: subprocess.Popen[bytes]) -> str:
    """All the agent wrote to the terminal, until it exits (a deadline bounds a hang)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + DEADLINE + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    proc.wait(timeout=DEADLINE)
    return b"".join(chunks).decode(errors="replace")


def test_under_the_journal_a_refused_start_is_an_error_too(tmp_path):
    """A start refused in plain words (an invalid graph) is filed as an error, not info."""
    graph = tmp_path / "bad.yaml"
    graph.write_text("graph: bad\nresources:\n  file:\n  - name: x\n    contnet: 1\n")
    code, lines = _under_the_journal(tmp_path, graph)
    assert code == 1
    assert lines[0] == "<3>error: the graph is invalid (1 problem); nothing was changed"
    assert len(lines) > 1 and all(x.startswith("<3>") for x in lines), lines


def test_a_reload_changes_the_log_level_of_every_line(tmp_path, managed, agent):
    """SIGHUP re-reads the configuration file: its log-level applies to the reporters' lines."""
    f = managed / "f"
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("g", files=[{"name": "f", "path": str(f), "content": "x\n"}]))
    config = tmp_path / "pymgmt.yaml"
    config.write_text("log-level: warning\n")
    a = agent(graph, "--config", str(config), json_mode=False)
    wait_for(lambda: f.exists() and f.read_text() == "x\n", what="the first apply")
    config.write_text("log-level: notice\n")
    a.send(signal.SIGHUP)

    def drift_repaired_and_said() -> bool:
        f.write_text("drift\n")
        wait_for(lambda: f.read_text() == "x\n", what="the repair")
        return "NOTICE File[f]: CheckApply(apply=True): repaired drift" in a.stderr

    wait_for(drift_repaired_and_said, what="a repair said once the reload took the level")
    before = a.stderr.split("NOTICE File[f]")[0]
    assert " NOTICE " not in before and " INFO " not in before  # warning, until the reload
