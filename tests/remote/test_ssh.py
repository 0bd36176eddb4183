"""Connecting to real sshd hosts: target URLs, host keys, authentication, errors."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from helpers import wait_for
from sshd import ClientKey, SshAgent, SshServer


def ssh_argv(server: SshServer, key: ClientKey, known_hosts: Path, *command: str) -> list[str]:
    """The OpenSSH client's argv that runs `command` on `server` (the fixture's own check)."""
    return [
        "ssh", "-F", "/dev/null", "-i", str(key.private), "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-p", str(server.port), f"root@{server.host}", *command,
    ]  # fmt: skip


def test_sshd_fixture_is_a_host_of_its_own(
    sshd: Callable[..., SshServer], client_key: ClientKey, known_hosts: Callable[..., Path]
) -> None:
    a, b = sshd(), sshd()
    kh = known_hosts(a, b)
    assert a.host != b.host
    out = subprocess.run(
        ssh_argv(a, client_key, kh, "echo $HOME $TMPDIR $XDG_CACHE_HOME"),
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out == [str(a.dir / "home"), str(a.dir / "tmp"), str(a.dir / "cache")]
    wait_for(lambda: len(a.accepted_logins()) == 1, what="the login in a's log")
    assert b.accepted_logins() == []
    # an SFTP write is counted under its file name
    subprocess.run(
        ["sftp", "-F", "/dev/null", "-i", str(client_key.private), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={kh}", "-P", str(b.port), "-b", "-", f"root@{b.host}"],
        input=f"put {kh} {b.dir / 'tmp' / 'copied-file'}\n", text=True, check=True,
        capture_output=True,
    )  # fmt: skip
    wait_for(lambda: b.sftp_writes("copied-file") == 1, what="the SFTP write in b's log")
    assert b.sftp_writes("other") == 0


def test_sshd_close_kills_running_sessions(
    sshd: Callable[..., SshServer], client_key: ClientKey, known_hosts: Callable[..., Path]
) -> None:
    server = sshd()
    marker = server.dir / "tmp" / "started"
    proc = subprocess.Popen(
        ssh_argv(server, client_key, known_hosts(server), f"touch {marker}; exec sleep 600"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(marker.exists, what="the remote command to start")
        sleepers = [p for p in server.processes() if _cmdline(p).startswith("sleep")]
        assert len(sleepers) == 1
        server.close()
        assert not Path(f"/proc/{sleepers[0]}").exists()
        proc.wait(timeout=15)
    finally:
        proc.kill()
        proc.wait()


def test_sshd_path_override_hides_python(
    sshd: Callable[..., SshServer], client_key: ClientKey, known_hosts: Callable[..., Path]
) -> None:
    server = sshd(path="/nonexistent")
    done = subprocess.run(
        ssh_argv(server, client_key, known_hosts(server), "command -v python3 || echo none"),
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.stdout.strip() == "none"


def test_ssh_agent_holds_the_key(ssh_agent: Callable[..., SshAgent], client_key: ClientKey) -> None:
    agent = ssh_agent(client_key.private)
    listed = subprocess.run(
        ["ssh-add", "-L"], env={**os.environ, **agent.env},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert client_key.public_line.split()[1] in listed


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
