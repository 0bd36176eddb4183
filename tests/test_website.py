"""Issue 15's "done means": a small web site converges, stays converged, and heals.

``examples/website.yaml`` as a new user would write it: a service user and
its group, a web root it owns, a config built from a template with a
generated database password, and a build step that runs only when its input
changes. It runs for real (useradd, setpriv, Jinja2, the agent's inotify
watches) in a mount namespace whose /etc is a private copy, so the
machine's own accounts are never touched; its paths live in a directory the
service user can reach.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import (
    PYMGMT,
    checked,
    etc_entries,
    etc_wrapper,
    in_mounts_of,
    json_lines,
    recap_of,
    wait_for,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "website.yaml"
PLACEHOLDER = "/tmp/pymgmt-examples"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(the graph, its root): the example moved under a root the service user can reach."""
    top = Path(tempfile.mkdtemp(prefix="pymgmt-website-", dir="/tmp"))
    top.chmod(0o755)  # pytest's tmp_path is 0700: the service user could not get in
    graph = tmp_path / "website.yaml"
    graph.write_text(EXAMPLE.read_text().replace(PLACEHOLDER, str(top)))
    yield graph, top / "srv"
    shutil.rmtree(top)


def _run(etc: Path, tmp_path: Path, graph: Path) -> subprocess.CompletedProcess[str]:
    argv = [*etc_wrapper(etc), str(etc), *PYMGMT, "run", "--prefix", str(tmp_path / "state")]
    argv += ["--converged-timeout", "0", "--json", str(graph)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _password(srv: Path) -> str:
    """The password the config holds: on exactly one line of it."""
    lines = [ln for ln in (srv / "app.conf").read_text().splitlines() if "password" in ln]
    assert len(lines) == 1, lines
    value = lines[0].split(" = ", 1)[1]
    assert len(value) == 24
    return value


def _builds(srv: Path) -> int:
    log = srv / "build.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_the_site_converges_in_one_run_then_reports_converged(tmp_path, private_etc, site):
    graph, srv = site
    first = _run(private_etc, tmp_path, graph)
    assert first.returncode == 2, first.stderr
    assert not [e for e in json_lines(first.stdout) if e.get("event") == "failed"], first.stdout
    uid = int(etc_entries(private_etc, "passwd")["site"][2])
    gid = int(etc_entries(private_etc, "group")["site"][2])
    for path in ("", "www", "www/index.html", "app.conf", "www/site.css", "build.log"):
        st = (srv / path).stat()
        assert (st.st_uid, st.st_gid) == (uid, gid), path  # the build ran as the user too
    assert (srv / "app.conf").stat().st_mode & 0o777 == 0o640
    password = _password(srv)
    conf = (srv / "app.conf").read_text()
    assert conf.startswith(f"[server]\nroot = {srv}/www\nport = 8080\n"), conf
    assert (srv / "www/site.css").read_text() == (srv / "src/style.css").read_text()
    assert _builds(srv) == 1
    assert password not in first.stdout + first.stderr

    again = _run(private_etc, tmp_path, graph)
    assert again.returncode == 0, again.stderr
    outcomes = {k: v["outcome"] for k, v in recap_of(again)["resources"].items()}
    assert set(outcomes.values()) == {"unchanged"}, outcomes
    assert _builds(srv) == 1  # its input did not change: it did not run
    assert _password(srv) == password  # generated once, kept
    assert password not in again.stdout + again.stderr


def test_a_running_agent_repairs_drift_in_each_part(agent, tmp_path, private_etc, site):
    graph, srv = site
    a = agent(graph, wrapper=[*etc_wrapper(private_etc), str(private_etc)])
    a.wait_checked(["File[app.conf]", "Exec[build]", "User[site]"])
    wait_for(lambda: _builds(srv) == 1, what="the first build")
    password = _password(srv)

    def repaired(vertex: str, what: str, drift: Callable[[], object]) -> None:
        since = a.mark()
        drift()
        i = a.wait_event(checked(vertex, applied=True), since=since, what=what)
        assert a.events[i]["drift"], a.describe()

    index = srv / "www/index.html"
    repaired("File[" + str(index) + "]", "the page repaired", lambda: index.write_text("defaced"))
    wait_for(lambda: index.read_text() == "<h1>It works</h1>\n", what="the page's content")

    conf = srv / "app.conf"
    repaired("File[app.conf]", "the config re-rendered", lambda: conf.write_text("[database]\n"))
    wait_for(lambda: "password = " in conf.read_text(), what="the config's content")
    assert _password(srv) == password

    repaired(
        "User[site]", "the user made again", lambda: in_mounts_of(a.proc.pid, "userdel", "site")
    )
    wait_for(lambda: "site" in etc_entries(private_etc, "passwd"), what="the account")

    style = srv / "src/style.css"
    since = a.mark()
    repaired("File[" + str(style) + "]", "the input repaired", lambda: style.write_text("x"))
    # its repair was a change of the build's input: the build ran once more
    a.wait_event(checked("Exec[build]", applied=True), since=since, what="the rebuild")
    assert _builds(srv) == 2
    assert (srv / "www/site.css").read_text() == style.read_text()
    assert a.stop() == 0
    assert password not in json.dumps(a.events) + a.stderr + "".join(a.bad_lines)
