"""The agent as a service: sd_notify messages and SIGHUP reloads, from a real agent.

The test plays systemd's part of the notify protocol: it binds the datagram
socket, hands it to the agent in NOTIFY_SOCKET (and WATCHDOG_USEC), and
reads what the agent says. tests/system/test_systemd_service.py runs the same under
a real systemd.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import DEADLINE, Agent, checked, event, wait_for

#: a wrapper that runs the agent without its last word (the graph file), so
#: the graph comes from the configuration file (Agent always appends one)
FROM_CONFIG = [sys.executable, "-c", "import os,sys; os.execv(sys.argv[1], sys.argv[1:-1])"]


class Systemd:
    """The receiving end of NOTIFY_SOCKET: every message the agent sent, in order."""

    def __init__(self) -> None:
        self.name = f"@pymgmt-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.messages: list[dict[str, str]] = []

    def env(self, watchdog_usec: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.name}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def wait(
        self, pred: Callable[[dict[str, str]], bool], *, since: int = 0, what: str = "a message"
    ) -> int:
        """The index of the first message from `since` on that matches; fail at the deadline."""
        deadline = time.monotonic() + DEADLINE
        while True:
            for i in range(since, len(self.messages)):
                if pred(self.messages[i]):
                    return i
            since = max(since, len(self.messages))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} from the agent; got {self.messages}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append(dict(line.split("=", 1) for line in data.split("\n")))

    def close(self) -> None:
        self.sock.close()


def says(key: str, status: str = "") -> Callable[[dict[str, str]], bool]:
    return lambda m: m.get(key) == "1" and status in m.get("STATUS", "")


@pytest.fixture
def systemd() -> Iterator[Systemd]:
    s = Systemd()
    yield s
    s.close()


@pytest.fixture
def start(no_leaks: None, prefix: Path) -> Iterator[Callable[..., Agent]]:
    """Start an agent with extra environment; killed and reaped after the test."""
    started: list[Agent] = []

    def start(graph: Path, *args: str, env: dict[str, str], from_config: bool = False) -> Agent:
        wrapper = FROM_CONFIG if from_config else ()
        a = Agent(graph, prefix, *args, env=env, wrapper=wrapper)
        started.append(a)
        return a

    yield start
    for a in started:
        a.close()


def file_res(path: Path, content: str = "x\n") -> str:
    return f"  - name: {path}\n    content: {content!r}\n"


def test_ready_once_every_vertex_watches_not_once_the_graph_converged(tmp_path, systemd, start):
    go = tmp_path / "go"
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "graph: g\nresources:\n  exec:\n  - name: waiter\n    shell: /bin/sh\n"
        f"    cmd: 'while [ ! -e {go} ]; do sleep 0.01; done'\n"
        f"  file:\n{file_res(tmp_path / 'f')}"
    )
    a = start(graph, env=systemd.env())
    a.wait_event(event("applying", vertex="Exec[waiter]"), what="the exec's apply")
    systemd.wait(says("READY", "watching 2 resources"), what="READY=1")
    # ready while the exec is still applying: it waits for `go`, made only now
    assert not a.find(checked("Exec[waiter]"))
    go.touch()
    a.wait_event(checked("Exec[waiter]", applied=True), what="the exec's end")
    systemd.wait(lambda m: m.get("STATUS") == "converged: 2 resources as wanted")
    a.stop(signal.SIGTERM)
    systemd.wait(says("STOPPING", "stopping: interrupted by SIGTERM"), what="STOPPING=1")


def test_watchdog_pings_keep_coming_from_the_event_loop(tmp_path, systemd, start):
    graph = tmp_path / "g.yaml"
    graph.write_text(f"graph: g\nresources:\n  file:\n{file_res(tmp_path / 'f')}")
    start(graph, env=systemd.env(watchdog_usec=100_000))
    i = systemd.wait(says("READY"), what="READY=1")
    for _ in range(3):
        i = systemd.wait(says("WATCHDOG"), since=i + 1, what="a WATCHDOG=1 ping")


def test_sighup_reads_the_configuration_and_the_graph_again(tmp_path, systemd, start):
    a_file, b_file, c_file = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    g1, g2 = tmp_path / "g1.yaml", tmp_path / "g2.yaml"
    g1.write_text(f"graph: g\nresources:\n  file:\n{file_res(a_file)}")
    config = tmp_path / "pymgmt.yaml"
    config.write_text(f"graph: {g1}\nno-watch: true\nsema: 0\n")
    agent = start(g1, "--config", str(config), env=systemd.env(), from_config=True)
    systemd.wait(says("READY"), what="READY=1")
    wait_for(a_file.exists, what="the first graph's file")

    # a new graph file and a new sema: the graph changes live, sema at a restart
    g2.write_text(f"graph: g\nresources:\n  file:\n{file_res(a_file)}{file_res(b_file)}")
    config.write_text(f"graph: {g2}\nno-watch: true\nsema: 2\n")
    since = len(systemd.messages)
    agent.send(signal.SIGHUP)
    i = systemd.wait(says("RELOADING"), since=since, what="RELOADING=1")
    systemd.wait(says("READY"), since=i + 1, what="READY=1 after the reload")
    wait_for(b_file.exists, what="the reloaded graph's new file")
    warning = "--sema (0 -> 2) changed but cannot change while the agent runs"
    wait_for(lambda: warning in agent.stderr, what="the warning naming --sema")

    # --no-watch: an edit of the graph alone is taken at the next SIGHUP
    g2.write_text(f"graph: g\nresources:\n  file:\n{file_res(c_file)}")
    agent.send(signal.SIGHUP)
    wait_for(c_file.exists, what="the edited graph's new file")
    assert agent.proc.poll() is None


def test_an_invalid_configuration_at_reload_keeps_the_running_settings(tmp_path, systemd, start):
    f = tmp_path / "f"
    graph = tmp_path / "g.yaml"
    graph.write_text(f"graph: g\nresources:\n  file:\n{file_res(f)}")
    config = tmp_path / "pymgmt.yaml"
    config.write_text("sema: 1\n")
    agent = start(graph, "--config", str(config), env=systemd.env())
    systemd.wait(says("READY"), what="READY=1")
    config.write_text("sema: 1\nsemaphore: 2\n")
    since = len(systemd.messages)
    agent.send(signal.SIGHUP)
    systemd.wait(
        says("READY", "the configuration is invalid: kept the running settings"),
        since=since,
        what="READY=1 with the refusal",
    )
    refusal = f"{config}:2:1: semaphore: not a flag of 'pymgmt run'"
    wait_for(lambda: refusal in agent.stderr, what="the refusal with its line")
    # still enforcing the graph
    mark = agent.mark()
    f.write_text("drift\n")
    agent.wait_event(checked(f"File[{f}]", applied=True), since=mark, what="the repair")
    assert agent.stop(signal.SIGTERM) == 0
