"""Fixtures for the remote-execution tests: real sshd "hosts", a client key, an ssh-agent.

`sshd(**options)` starts an `SshServer` that lets `client_key` in (options
as `SshServer` takes them); every server, and every process under it, is
gone after the test. `known_hosts(*servers)` writes a known_hosts file
trusting them. `ssh_agent(*keys)` starts a real ssh-agent holding the keys.
Tests skip when sshd cannot run here, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from remote_harness import Initiator
from sshd import ClientKey, SshAgent, SshServer, keygen, sshd_problem, write_known_hosts


def _require_sshd() -> None:
    problem = sshd_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture
def client_key(tmp_path: Path) -> ClientKey:
    """An ed25519 key pair in tmp_path/client-key/ for the test's ssh client."""
    d = tmp_path / "client-key"
    d.mkdir()
    private = d / "id_ed25519"
    return ClientKey(private, keygen(private, "pymgmt-test-client"))


@pytest.fixture
def sshd(
    no_leaks: None, tmp_path: Path, client_key: ClientKey
) -> Iterator[Callable[..., SshServer]]:
    """Start sshd "hosts" (``sshd(**options)``); all are killed after the test.

    Depends on `no_leaks` so the servers and their sessions are gone before the
    leak check.
    """
    _require_sshd()
    servers: list[SshServer] = []

    def start(**options: Any) -> SshServer:
        options.setdefault("authorized", [client_key.public_line])
        server = SshServer(tmp_path / f"sshd-{len(servers) + 1}", **options)
        servers.append(server)
        return server

    yield start

    errors = []
    for server in servers:
        try:
            server.close()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("; ".join(errors), pytrace=False)


@pytest.fixture
def known_hosts(tmp_path: Path) -> Callable[..., Path]:
    """``known_hosts(*servers)``: a known_hosts file in tmp_path trusting the servers."""

    def write(*servers: SshServer) -> Path:
        return write_known_hosts(tmp_path / "known_hosts", servers)

    return write


@pytest.fixture
def ssh_agent(no_leaks: None) -> Iterator[Callable[..., SshAgent]]:
    """``ssh_agent(*key_paths)``: a real ssh-agent holding the keys; killed after the test."""
    agents: list[SshAgent] = []

    def start(*keys: Path) -> SshAgent:
        agent = SshAgent(keys)
        agents.append(agent)
        return agent

    yield start

    for agent in agents:
        agent.close()


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bundle cache for every test: the bundle is built once per session."""
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture
def initiator(
    tmp_path: Path, client_key: ClientKey, bundles: Path
) -> Iterator[Callable[..., Initiator]]:
    """``initiator(*servers, key=...)``: an `Initiator` trusting the servers' host keys."""
    made: list[Initiator] = []

    def make(*servers: SshServer, key: ClientKey | None = client_key) -> Initiator:
        kh = tmp_path / "known_hosts"
        kh.write_text("".join(s.known_hosts_line() + "\n" for s in servers))
        i = Initiator(tmp_path, key, kh, bundles)
        made.append(i)
        return i

    yield make
    for i in made:
        i.close()
