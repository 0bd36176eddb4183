"""Helpers for the web tests: start an agent with --prometheus, talk HTTP to it.

Everything goes over real loopback sockets to a real `pymgmt run` process.
The agent listens on port 0 (the kernel picks a free port) and names the
address in its log line, which `serving` waits for.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from helpers import Agent, wait_for

_URL = re.compile(r"web: metrics at (http://\S+?)metrics")
#: the flags of a served agent: port 0, the port it got is in its log line
LISTEN = ("--prometheus", "--prometheus-listen", "127.0.0.1:0")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def serving(agent: Agent) -> str:
    """The base URL (``http://127.0.0.1:PORT/``) the agent says it serves at."""

    def found() -> str | None:
        if agent.proc.poll() is not None:
            raise AssertionError(f"the agent exited before serving\n{agent.describe()}")
        m = _URL.search(agent.stderr)
        return m.group(1) if m else None

    return wait_for(found, what="the agent's 'web: metrics at' log line")


def send_password(doc: dict[str, Any], file: str, length: int) -> None:
    """Add to the graph `doc` a password ``pw`` sent into the file named `file` (its content)."""
    doc["resources"]["password"] = [{"name": "pw", "length": length}]
    doc.setdefault("edges", []).append(
        {
            "name": f"pw->{file}",
            "from": {"kind": "password", "name": "pw"},
            "to": {"kind": "file", "name": file},
            "send": "password",
            "recv": "content",
        }
    )


def get(
    base: str, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> Reply:
    """One request over a fresh connection (the server closes each one)."""
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=15)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
    finally:
        conn.close()


def metrics(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Scrape /metrics and parse it with prometheus_client's own parser.

    The parser raises on anything that is not valid text exposition, so
    this checks the format too. Keys: (sample name, frozenset of labels).
    """
    from prometheus_client.parser import text_string_to_metric_families

    r = get(base, "/metrics")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """One sample's value; KeyError (with what there is) when the series is missing."""
    key = (name, frozenset(labels.items()))
    if key not in scraped:
        names = sorted({f"{n}{dict(lb)}" for n, lb in scraped if n == name})
        raise KeyError(f"no series {name}{labels}; there are: {names}")
    return scraped[key]
