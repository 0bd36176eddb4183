"""The output's reader goes away (``pymgmt run ... 2>&1 | head -1``): no traceback, no hang.

Issue 8, item 17's small case. The agent stops as if signalled (SIGPIPE:
exit 141 in run-once mode, 0 in forever mode) and says nothing more. The
log lines are on stderr (issue 12), the ``--json`` events on stdout: either
reader leaving stops it.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from helpers import DEADLINE, PYMGMT, graph_doc, write_graph


def _graph(tmp_path: Path, managed: Path, n: int = 1000) -> Path:
    """More to say than a pipe holds (64 KiB): the agent must meet the closed end."""
    graph = tmp_path / "graph.yaml"
    files = [{"name": f"f{i}", "path": str(managed / f"f{i}")} for i in range(n)]
    write_graph(graph, graph_doc("pipe", files=files))
    return graph


def _first_line_then_close(argv: list[str], *, both: bool = False) -> tuple[int, str]:
    """`both`: stderr into the same pipe (``2>&1``); what is said after is then lost."""
    stderr = subprocess.STDOUT if both else subprocess.PIPE
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline()
            proc.stdout.close()  # what head does after its line
            code = proc.wait(timeout=DEADLINE)
            err = proc.stderr.read().decode() if proc.stderr is not None else ""
        except subprocess.TimeoutExpired:
            raise AssertionError("the agent hung after its output was closed") from None
        finally:
            proc.kill()
    return code, err


def test_run_once_into_a_closed_pipe_exits_quietly(tmp_path, managed):
    argv = [*PYMGMT, "run", "--prefix", str(tmp_path / "s"), "--converged-timeout", "0"]
    code, _ = _first_line_then_close([*argv, str(_graph(tmp_path, managed))], both=True)
    assert code == 141  # 128 + SIGPIPE, as a shell says of a program the pipe killed


def test_forever_mode_stops_at_once_when_its_reader_goes(tmp_path, managed):
    # One line is all this agent has to say until something changes: it must
    # notice the reader leaving without writing again.
    graph = tmp_path / "graph.yaml"
    (managed / "f").write_text("")
    write_graph(graph, graph_doc("quiet", files=[{"name": "f", "path": str(managed / "f")}]))
    argv = [*PYMGMT, "run", "--prefix", str(tmp_path / "s"), "--json", str(graph)]
    code, err = _first_line_then_close(argv)
    assert "Traceback" not in err, err
    assert code == 0, err  # forever mode: a graceful stop


def test_piped_into_head_in_a_shell(tmp_path, managed):
    graph = _graph(tmp_path, managed)
    cmd = " ".join(
        shlex.quote(a)
        for a in [*PYMGMT, "run", "--prefix", str(tmp_path / "s"), "--converged-timeout", "0"]
    )
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {cmd} {shlex.quote(str(graph))} 2>&1 | head -1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout.startswith(tuple("0123456789")) and proc.stdout.count("\n") == 1  # dated
    assert proc.stderr == ""
    assert proc.returncode == 141
