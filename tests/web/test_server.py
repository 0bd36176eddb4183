"""The HTTP server of a real agent: routes, read-only, loopback Host check, SSE, start-up errors."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers import (
    DEADLINE,
    PYMGMT,
    Agent,
    checked,
    event,
    graph_doc,
    wait_for,
    write_atomic,
    write_graph,
)
from webutil import LISTEN, get, send_password, serving


@pytest.fixture
def graph(tmp_path: Path, managed: Path) -> Path:
    g = tmp_path / "g.yaml"
    write_graph(g, graph_doc("web", files=[{"name": "a", "path": str(managed / "a"),
                                            "content": "a\n"}]))  # fmt: skip
    return g


def test_routes_answer_and_everything_but_get_is_refused(served, graph):
    _a, base = served(graph)
    page = get(base, "/")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert get(base, "/app.js").status == 200
    vertex = get(base, "/vertex/File%5Ba%5D").json()
    assert vertex["name"] == "File[a]"
    assert vertex["status"] == "converged"
    assert vertex["params"]["content"] == "a\n"
    assert get(base, "/vertex/File%5Bnope%5D").status == 404
    state = get(base, "/state.json").json()
    assert [v["name"] for v in state["vertices"]] == ["File[a]"]
    assert get(base, "/nothing-here").status == 404
    head = get(base, "/metrics", method="HEAD")
    assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) > 0
    for method in ("POST", "PUT", "DELETE"):
        refused = get(base, "/metrics", method=method)
        assert refused.status == 405, method
        assert refused.headers["allow"] == "GET, HEAD"


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
def test_the_graph_is_drawn_by_graphviz_once_per_graph(served, graph):
    a, base = served(graph, settled=False)
    a.wait_event(event("graph_started"), what="the graph")
    svg = get(base, "/graph.svg")
    assert svg.status == 200
    assert svg.headers["content-type"] == "image/svg+xml"
    assert "<title>File[a]</title>" in svg.text  # the node the page colours
    assert get(base, "/graph.svg").body == svg.body


def test_without_graphviz_there_is_no_picture_and_the_rest_works(tmp_path, prefix, graph):
    a = Agent(graph, prefix, *LISTEN, env={"PATH": str(tmp_path / "empty")})
    try:
        base = serving(a)
        a.wait_event(event("settled"), what="settled")
        svg = get(base, "/graph.svg")
        assert svg.status == 503
        assert "graphviz (dot) is not installed" in svg.text
        assert get(base, "/vertex/File%5Ba%5D").json()["status"] == "converged"
    finally:
        a.close()


def test_malformed_requests_get_an_answer_and_the_server_goes_on(served, graph):
    _, base = served(graph, settled=False)
    host, port = base.removeprefix("http://").rstrip("/").rsplit(":", 1)
    heads = {
        b"GET http://[ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n": b"400",
        b"NONSENSE\r\n\r\n": b"400",
    }
    for head, status in heads.items():
        with socket.create_connection((host, int(port)), timeout=DEADLINE) as s:
            s.sendall(head)
            assert s.recv(100).startswith(b"HTTP/1.1 " + status), head[:40]
    assert get(base, "/metrics").status == 200


def test_bound_to_loopback_it_refuses_a_foreign_host_header(served, graph):
    """A page on another site cannot read it by DNS rebinding a name to 127.0.0.1."""
    _a, base = served(graph, settled=False)
    port = base.rsplit(":", 1)[1].rstrip("/")
    assert get(base, "/metrics", headers={"Host": "evil.example:" + port}).status == 421
    assert get(base, "/vertex/File%5Ba%5D", headers={"Host": "evil.example"}).status == 421
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert get(base, "/metrics", headers={"Host": host}).status == 200, host


def test_the_event_stream_sends_a_snapshot_then_each_change(served, graph, managed):
    a, base = served(graph, settled=False)
    a.wait_event(checked("File[a]", applied=True), what="the first apply")
    a.wait_event(event("settled"), what="settled")
    with _events(base) as stream:
        first = stream.next_event()
        assert first[0] == "snapshot"
        assert [v["status"] for v in first[1]["vertices"]] == ["converged"]
        assert first[1]["nodes"] == {"File[a]": "File[a]"}
        assert "params" not in first[1]["vertices"][0]  # asked for on a click only
        since = a.mark()
        write_atomic(managed / "a", "drifted\n")
        a.wait_event(checked("File[a]", drift=True), since=since, what="the repair")
        seen = []
        while "converged" not in seen:
            name, data = stream.next_event()
            assert name == "vertex", (name, data)
            assert data["name"] == "File[a]"
            seen.append(data["status"])
        assert seen == ["applying", "converged"]


def test_a_graph_swapped_in_live_reaches_the_page(served, graph, managed):
    """Saving the graph file: the page gets a new snapshot, and the picture changes."""
    _a, base = served(graph)
    with _events(base) as stream:
        name, first = stream.next_event()
        assert name == "snapshot"
        files = [{"name": n, "path": str(managed / n), "content": "x\n"} for n in ("a", "b")]
        write_graph(graph, graph_doc("web", files=files))
        name, data = stream.next_event()
        while name != "snapshot":  # vertex events of the old graph may come first
            name, data = stream.next_event()
        assert data["generation"] == first["generation"] + 1
        assert sorted(v["name"] for v in data["vertices"]) == ["File[a]", "File[b]"]
    if shutil.which("dot"):
        assert "<title>File[b]</title>" in get(base, "/graph.svg").text


def test_the_agent_stops_promptly_with_a_page_still_listening(served, graph):
    a, base = served(graph, settled=False)
    with _events(base) as stream:
        assert stream.next_event()[0] == "snapshot"
        assert a.stop() == 0
        rest = stream.read_to_end()  # returns: the server closed the stream
        assert rest == b"" or rest.endswith(b"\n\n")  # whole events only


def test_connections_beyond_the_limit_are_refused_until_some_close(served, graph):
    from pymgmt.web.http import MAX_CONNECTIONS

    _a, base = served(graph, settled=False)
    pages = [_events(base) for _ in range(MAX_CONNECTIONS)]
    try:
        assert get(base, "/metrics").status == 503
    finally:
        for p in pages:
            p.__exit__()
    wait_for(lambda: get(base, "/metrics").status == 200, what="room again")


def test_an_address_in_use_is_refused_before_anything_changes(tmp_path, graph, managed):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [*PYMGMT, "run", "--prefix", str(tmp_path / "s"), "--converged-timeout", "0"]
        argv += ["--prometheus", "--prometheus-listen", f"127.0.0.1:{port}", str(graph)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1, r.stderr
    assert f"cannot serve metrics and the web view on 127.0.0.1:{port}" in r.stderr
    assert "nothing was changed" in r.stderr
    assert not (managed / "a").exists()


@pytest.mark.parametrize("bad", ["9233", "localhost:http", "::1:9233", "127.0.0.1:70000"])
def test_a_bad_listen_address_is_a_usage_error(tmp_path, graph, bad):
    argv = [*PYMGMT, "run", "--prefix", str(tmp_path / "s"), "--prometheus"]
    r = subprocess.run(
        [*argv, f"--prometheus-listen={bad}", str(graph)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1
    assert "argument --prometheus-listen" in r.stderr


def test_secrets_never_reach_any_route(served, tmp_path, managed):
    """A password sent into a file: its diff shows <redacted>, no route shows the value."""
    g = tmp_path / "g.yaml"
    doc = graph_doc("secret", files=[{"name": "secret", "path": str(managed / "secret")}])
    send_password(doc, "secret", 32)
    write_graph(g, doc)
    _a, base = served(g)
    secret = (managed / "secret").read_text()
    assert len(secret) == 32
    vertex = get(base, "/vertex/File%5Bsecret%5D").json()
    assert "content: <redacted>" in vertex["last_diff"]  # what it wrote, never shown
    assert vertex["params"].get("content") in (None, "<redacted>")
    bodies = [get(base, p).text for p in ("/state.json", "/metrics", "/vertex/File%5Bsecret%5D")]
    bodies.append(get(base, "/vertex/Password%5Bpw%5D").text)
    if shutil.which("dot"):
        bodies.append(get(base, "/graph.svg").text)
    with _events(base) as stream:
        bodies.append(json.dumps(stream.next_event()))
    for body in bodies:
        assert secret not in body


class _Stream:
    """A raw server-sent event stream over a socket (what EventSource reads)."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").rstrip("/").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=DEADLINE)
        self.sock.sendall(f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"text/event-stream" in head

    def _until(self, sep: bytes) -> bytes:
        deadline = time.monotonic() + DEADLINE
        while sep not in self.buf:
            assert time.monotonic() < deadline, f"no {sep!r} within {DEADLINE} s"
            chunk = self.sock.recv(65536)
            assert chunk, f"the stream ended before {sep!r}"
            self.buf += chunk
        out, self.buf = self.buf.split(sep, 1)
        return out

    def next_event(self) -> tuple[str, dict[str, object]]:
        """The next event (comments skipped): (name, data)."""
        while True:
            block = self._until(b"\n\n").decode()
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in fields:
                return fields["event"], json.loads(fields["data"])

    def read_to_end(self) -> bytes:
        """What comes until the server closes the connection."""
        rest = b""
        while chunk := self.sock.recv(65536):
            rest += chunk
        return rest

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def _events(base: str) -> _Stream:
    return _Stream(base)
