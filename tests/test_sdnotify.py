"""systemd's notify protocol, received on a real datagram socket."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

from pymgmt.sdnotify import Notifier


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket in the abstract namespace, as systemd makes one; its name."""
    name = f"@pymgmt-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(5)
    yield sock, name
    sock.close()


def test_from_environ_takes_the_variables_away_from_children(listener):
    sock, name = listener
    env = {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    n = Notifier.from_environ(env)
    assert n is not None and env == {}  # an exec resource's command inherits none of them
    assert n.watchdog_interval == 1.5  # half of WatchdogSec
    n.ready("watching 3 resources")
    assert sock.recv(4096) == b"READY=1\nSTATUS=watching 3 resources"
    n.close()


def test_a_watchdog_meant_for_another_process_is_not_ours(listener):
    _, name = listener
    env = {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}
    n = Notifier.from_environ(env)
    assert n is not None and n.watchdog_interval is None
    n.close()


def test_no_socket_means_no_notifier():
    assert Notifier.from_environ({}) is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": "relative/path"}) is None


def test_a_value_stays_on_one_line(listener):
    sock, name = listener
    n = Notifier(name)
    n.stopping("stopping: the graph\nREADY=1")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping: the graph READY=1"
    n.reloading()
    lines = sock.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    n.close()


def test_nobody_listening_is_not_an_error(tmp_path):
    n = Notifier(str(tmp_path / "gone.sock"))
    assert n.send(status="x") is False  # systemd restarted: the message is lost, not fatal
    n.close()
