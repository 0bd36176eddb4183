"""Real etcd for tests: free loopback ports, single members and 3-member clusters.

Two ways to get a member, for two kinds of test:

* `EtcdProcess` (sync, plain ``subprocess``): a bare etcd the test controls
  completely, to SIGKILL it and keep it dead, or restart it on its data
  dir. Fixtures `etcd_node` and `etcd_cluster` (3 members) start them and
  stop them after the test; `start_cluster` builds one by hand.
* `fast_config` + `serving` (async): the agent's own `EtcdServer`, as the
  agent runs it, with test timers; `world_on` starts an `EtcdWorld` on it.

Every member uses etcd's fast raft timers (heartbeat 10 ms, election 100 ms:
a fresh single node is healthy in ~0.1 s), listens on loopback only, and
lives under the test's tmp_path; the conftest leak check fails a test that
leaves one running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, wait_for

from pymgmt.world.etcd.server import EtcdConfig, etcd_binary

HEARTBEAT_MS = 10
ELECTION_MS = 100


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct free ports (held open together while picking, so distinct)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def healthy(client_url: str) -> bool:
    """etcd's own ``GET /health`` says true."""
    try:
        with urllib.request.urlopen(client_url + "/health", timeout=1.0) as r:
            return b'"health":"true"' in r.read()
    except OSError:
        return False


async def eventually(
    predicate: Callable[[], object], what: str = "a condition", timeout: float = DEADLINE
) -> None:
    """Await `predicate()` becoming truthy; fail after `timeout` s.

    For outside state (a process, a port) that has no event to await: polls.
    """
    deadline = time.monotonic() + timeout
    while not predicate():  # outside state: there is no event to await
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)


def fast_config(
    tmp_path: Path,
    name: str = "n1",
    *,
    host: str = "127.0.0.1",
    client_port: int | None = None,
    peer_port: int | None = None,
    **kw: Any,
) -> EtcdConfig:
    """An `EtcdConfig` for one member under `tmp_path`, fast timers, free ports."""
    client_port = client_port or free_port(host)
    peer_port = peer_port or free_port(host)
    kw.setdefault("heartbeat_ms", HEARTBEAT_MS)
    kw.setdefault("election_ms", ELECTION_MS)
    kw.setdefault("start_timeout", DEADLINE)
    return EtcdConfig(
        name=name,
        data_dir=tmp_path / f"etcd-{name}",
        listen_client_urls=(f"http://{host}:{client_port}",),
        listen_peer_urls=(f"http://{host}:{peer_port}",),
        **kw,
    )


@contextlib.contextmanager
def _unwrapped() -> Iterator[None]:
    """A task group's lone error raised as itself, so tests can catch and read it."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


@asynccontextmanager
async def serving(config: EtcdConfig) -> AsyncIterator[Any]:
    """Run an `EtcdServer` for the block; it is stopped (and reaped) on exit."""
    from pymgmt import service
    from pymgmt.world.etcd.server import EtcdServer

    server = EtcdServer(config)
    task: asyncio.Task[Any] | None = None

    async def run(status: service.TaskStatus[list[str]]) -> None:
        nonlocal task
        task = asyncio.current_task()
        await server.run(status)

    with _unwrapped():
        async with asyncio.TaskGroup() as tg:
            await service.start(tg, run, name=f"etcd {config.name}")
            try:
                yield server
            finally:
                assert task is not None
                task.cancel()


@asynccontextmanager
async def world_on(endpoints: Sequence[str], hostname: str = "h1", **kw: Any) -> AsyncIterator[Any]:
    """Run an `EtcdWorld` for the block; closed (lease revoked) on exit."""
    from pymgmt import service
    from pymgmt.world.etcd.client import EtcdWorld

    world = EtcdWorld(hostname, endpoints, **kw)
    with _unwrapped():
        async with asyncio.TaskGroup() as tg:
            await service.start(tg, world.run, name=f"world {hostname}")
            try:
                yield world
            finally:
                await world.close()


class EtcdProcess:
    """One bare etcd member, run by the test itself (no supervisor)."""

    def __init__(
        self,
        tmp_path: Path,
        name: str,
        *,
        client_port: int,
        peer_port: int,
        initial_cluster: str = "",
        host: str = "127.0.0.1",
        token: str = "test",
    ) -> None:
        self.name = name
        self.config = EtcdConfig(
            name=name,
            data_dir=tmp_path / f"etcd-{name}",
            listen_client_urls=(f"http://{host}:{client_port}",),
            listen_peer_urls=(f"http://{host}:{peer_port}",),
            initial_cluster=initial_cluster,
            cluster_token=token,
            heartbeat_ms=HEARTBEAT_MS,
            election_ms=ELECTION_MS,
        )
        self.client_url = self.config.client_urls[0]
        self.peer_url = self.config.peer_urls[0]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EtcdProcess:
        """Spawn etcd (on its existing data dir, if any); does not wait."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.config.data_dir.mkdir(mode=0o700, exist_ok=True)
        with open(self.config.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.config.argv(etcd_binary()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_healthy(self, timeout: float = DEADLINE) -> None:
        wait_for(lambda: healthy(self.client_url), timeout, f"etcd {self.name} to be healthy")

    def kill(self) -> None:
        """SIGKILL and reap: a member lost without warning."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = DEADLINE) -> None:
        """SIGTERM, then SIGKILL after `timeout`; always reaped."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        try:
            return self.config.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def start_cluster(tmp_path: Path, n: int = 3, *, host: str = "127.0.0.1") -> list[EtcdProcess]:
    """`n` members of one new cluster, all healthy (stopped again if that fails)."""
    ports = free_ports(2 * n, host)
    names = [f"m{i + 1}" for i in range(n)]
    initial = ",".join(f"{nm}=http://{host}:{ports[2 * i + 1]}" for i, nm in enumerate(names))
    members = [
        EtcdProcess(
            tmp_path,
            nm,
            client_port=ports[2 * i],
            peer_port=ports[2 * i + 1],
            initial_cluster=initial,
            host=host,
        )
        for i, nm in enumerate(names)
    ]
    try:
        for m in members:
            m.start()
        for m in members:
            m.wait_healthy()
    except BaseException:
        stop_all(members)
        raise
    return members


def stop_all(members: Sequence[EtcdProcess], grace: float = 1.0) -> None:
    """Stop every member: SIGTERM to all at once, SIGKILL after `grace` s.

    A member stopping with its peers gone tries to hand over leadership and
    can take seconds; a test's throwaway cluster need not wait for that.
    """
    for m in members:
        if m.proc is not None and m.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                m.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for m in members:
        if m.proc is None:
            continue
        try:
            m.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            m.kill()


@pytest.fixture
def etcd_node(tmp_path: Path) -> Iterator[EtcdProcess]:
    """A healthy single-member etcd; stopped after the test."""
    client_port, peer_port = free_ports(2)
    node = EtcdProcess(tmp_path, "m1", client_port=client_port, peer_port=peer_port).start()
    try:
        node.wait_healthy()
        yield node
    finally:
        stop_all([node])


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[list[EtcdProcess]]:
    """Three healthy members of one cluster; stopped after the test."""
    members = start_cluster(tmp_path, 3)
    try:
        yield members
    finally:
        stop_all(members)


# -- the leak check --------------------------------------------------------------------


def etcd_processes() -> dict[int, str]:
    """pid -> command line of every process running an etcd binary."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "etcd":
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # dead, only not reaped yet
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


__all__ = [
    "ELECTION_MS",
    "HEARTBEAT_MS",
    "EtcdProcess",
    "etcd_cluster",
    "etcd_node",
    "etcd_processes",
    "eventually",
    "fast_config",
    "free_port",
    "free_ports",
    "healthy",
    "parent_of",
    "serving",
    "start_cluster",
    "stop_all",
    "world_on",
]
