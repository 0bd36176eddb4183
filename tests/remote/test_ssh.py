"""Connecting to real sshd hosts: target URLs, host keys, authentication, errors."""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import pwd
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, run_async, wait_for
from sshd import ClientKey, SshAgent, SshServer, free_port, keygen

from pymgmt import redaction
from pymgmt.remote.ssh import RemoteError, SshOptions, Target, connect, parse_target

LOCAL_USER = pwd.getpwuid(os.getuid()).pw_name


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


# -- connect(): the real thing ----------------------------------------------------------


def options_for(key: ClientKey | None, known_hosts: Path, **more: Any) -> SshOptions:
    return SshOptions(identities=(key.private,) if key else (), known_hosts=known_hosts, **more)


async def connect_and_run(target: Target, options: SshOptions, command: str) -> tuple[str, int]:
    conn = await connect(target, options)
    try:
        done = await conn.run(command)
        return str(done.stdout), int(done.exit_status or 0)
    finally:
        conn.close()
        await conn.wait_closed()


def refused(target: Target, options: SshOptions) -> RemoteError:
    """The RemoteError `connect` raises (fails the test if it connects)."""

    async def attempt() -> RemoteError:
        with pytest.raises(RemoteError) as caught:
            conn = await connect(target, options)
            conn.close()
            await conn.wait_closed()
        return caught.value

    return run_async(attempt())


def test_key_auth_logs_in_and_runs_a_command(
    sshd: Callable[..., SshServer], client_key: ClientKey, known_hosts: Callable[..., Path]
) -> None:
    server = sshd()
    target = parse_target(server.url())
    out, status = run_async(
        connect_and_run(target, options_for(client_key, known_hosts(server)), "echo hi; exit 3")
    )
    assert (out, status) == ("hi\n", 3)
    assert len(server.accepted_logins()) == 1


def test_the_ssh_agents_key_is_used_without_ssh_id(
    sshd: Callable[..., SshServer],
    client_key: ClientKey,
    known_hosts: Callable[..., Path],
    ssh_agent: Callable[..., SshAgent],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = sshd()
    agent = ssh_agent(client_key.private)
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))  # no ~/.ssh keys
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.socket))
    out, _ = run_async(
        connect_and_run(parse_target(server.url()), options_for(None, known_hosts(server)), "id -u")
    )
    assert out == "0\n"


def test_an_unknown_host_key_is_refused_with_its_fingerprint(
    sshd: Callable[..., SshServer], client_key: ClientKey, tmp_path: Path
) -> None:
    server = sshd()
    kh = tmp_path / "no-such-known-hosts"
    error = refused(parse_target(server.url()), options_for(client_key, kh))
    assert error.host == server.host
    assert str(error).startswith(f"{server.host}: unknown host key ssh-ed25519 ")
    assert server.host_key_fingerprint in str(error)
    assert "--ssh-accept-new" in str(error) and "ssh-keyscan" in str(error)
    assert server.accepted_logins() == []
    assert not kh.exists()


def test_accept_new_records_the_key_and_the_next_connect_needs_no_flag(
    sshd: Callable[..., SshServer], client_key: ClientKey, tmp_path: Path
) -> None:
    server = sshd()
    kh = tmp_path / "new-dir" / "known_hosts"
    target = parse_target(server.url())
    run_async(connect_and_run(target, options_for(client_key, kh, accept_new=True), "true"))
    assert kh.read_text() == server.known_hosts_line() + "\n"
    assert kh.stat().st_mode & 0o777 == 0o600
    out, _ = run_async(connect_and_run(target, options_for(client_key, kh), "echo again"))
    assert out == "again\n"
    # accepting again adds no second line
    run_async(connect_and_run(target, options_for(client_key, kh, accept_new=True), "true"))
    assert kh.read_text() == server.known_hosts_line() + "\n"


@pytest.mark.parametrize("accept_new", [False, True])
def test_a_changed_host_key_is_refused_even_with_accept_new(
    sshd: Callable[..., SshServer], client_key: ClientKey, tmp_path: Path, accept_new: bool
) -> None:
    server, other = sshd(), sshd()
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line(key=other.host_public_key) + "\n")
    before = kh.read_text()
    error = refused(parse_target(server.url()), options_for(client_key, kh, accept_new=accept_new))
    assert "HOST KEY CHANGED" in str(error) and "man in the middle" in str(error)
    assert server.host_key_fingerprint in str(error)
    assert kh.read_text() == before
    assert server.accepted_logins() == []


def test_a_key_the_server_does_not_know_is_permission_denied(
    sshd: Callable[..., SshServer], known_hosts: Callable[..., Path], tmp_path: Path
) -> None:
    server = sshd()
    stranger = ClientKey(tmp_path / "stranger", keygen(tmp_path / "stranger"))
    error = refused(parse_target(server.url()), options_for(stranger, known_hosts(server)))
    assert str(error).startswith(f"{server.host}: permission denied for user 'root'")
    assert f"publickey (--ssh-id {stranger.private})" in str(error)
    assert "the server accepts publickey" in str(error)


def test_a_refused_url_password_is_never_shown(
    sshd: Callable[..., SshServer], known_hosts: Callable[..., Path], tmp_path: Path
) -> None:
    # root has no usable password here: sshd refuses any, as for a wrong one
    server = sshd(password_auth=True, permit_root_login="yes")
    secret = "Zq9-url-pass-word"
    stranger = ClientKey(tmp_path / "stranger", keygen(tmp_path / "stranger"))
    target = parse_target(server.url(password=secret))
    error = refused(target, options_for(stranger, known_hosts(server)))
    assert "permission denied" in str(error)
    assert "the password from the URL" in str(error)
    assert "password" in str(error).rsplit("the server accepts", 1)[1]
    assert secret not in str(error) and secret not in repr(target) and secret not in target.label
    assert secret not in server.log_text()
    assert redaction.redact(f"x{secret}y") == f"x{redaction.MARK}y"


def test_a_closed_port_is_refused_at_once(
    sshd: Callable[..., SshServer], client_key: ClientKey, known_hosts: Callable[..., Path]
) -> None:
    server = sshd()
    kh = known_hosts(server)
    closed = free_port(server.host)
    target = parse_target(f"ssh://root@{server.host}:{closed}")
    # A deadline far beyond run_async's: only a refusal can end this in time.
    error = refused(target, options_for(client_key, kh, connect_timeout=3600.0))
    assert str(error) == (
        f"{server.host}: connection refused on port {closed}: no SSH server listens there"
    )


def test_a_port_that_never_speaks_ssh_times_out(client_key: ClientKey, tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the TCP handshake; nothing answers
        port = silent.getsockname()[1]
        target = parse_target(f"ssh://root@127.0.0.1:{port}")
        error = refused(target, options_for(client_key, tmp_path / "kh", connect_timeout=0.5))
    assert str(error).startswith("127.0.0.1: no SSH handshake within 0.5 s on port")


# -- parse_target ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ssh://alice@example.com", Target("alice", "example.com", 22)),
        ("ssh://alice@example.com:2222", Target("alice", "example.com", 2222)),
        ("ssh://example.com:2222/", Target(LOCAL_USER, "example.com", 2222)),
        ("ssh://10.0.0.7", Target(LOCAL_USER, "10.0.0.7", 22)),
        ("SSH://bob@[::1]:2200", Target("bob", "::1", 2200)),
        ("ssh://bob@[fe80::2]", Target("bob", "fe80::2", 22)),
        ("ssh://a%40b@h", Target("a@b", "h", 22)),
        ("ssh://u:p%2Fw%40@h:23", Target("u", "h", 23, "p/w@")),
    ],
)
def test_parse_target(url: str, expected: Target) -> None:
    assert parse_target(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://example.com", "is not an ssh:// URL"),
        ("example.com", "is not an ssh:// URL"),
        ("ssh://", "names no host"),
        ("ssh://alice@", "names no host"),
        ("ssh://h:0", "port 0"),
        ("ssh://h:65536", "port must be a number"),
        ("ssh://h:ssh", "port must be a number"),
        ("ssh://h:1:2", "port must be a number"),
        ("ssh://h/etc", "path, query or fragment"),
        ("ssh://h?x=1", "path, query or fragment"),
        ("ssh://h#f", "path, query or fragment"),
        ("ssh://[::1", "IPv6"),
        ("ssh://[not-v6]:22", "IPv6"),
        ("ssh://[::1]junk", "is not host or host:port"),
        ("ssh://ho st", "is not a host name"),
        ("ssh://-oProxyCommand=x", "is not a host name"),
        ("ssh://@h", "is not a user name"),
    ],
)
def test_parse_target_refuses(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_target(url)


@pytest.mark.parametrize(
    "url",
    ["ssh://u:Hidden-77@h/x", "ssh://u:Hidden-77/x@h", "u:Hidden-77@h", "ssh://u:Hidden-77@h:x"],
)
def test_a_refused_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_target(url)
    assert "Hidden-77" not in str(caught.value)
    assert "Hidden" not in str(caught.value)


def test_a_url_password_is_secret_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    url = "ssh://carol:Pw-8f3kq@h.example:2022"
    with caplog.at_level(logging.WARNING, logger="pymgmt.remote"):
        target = parse_target(url)
        parse_target(url)
    assert target.password == "Pw-8f3kq"
    assert target.label == "carol@h.example:2022"
    assert "Pw-8f3kq" not in repr(target) and "Pw-8f3kq" not in str(target)
    assert redaction.redact("Pw-8f3kq") == redaction.MARK
    warnings = [
        r.getMessage() for r in caplog.records if "password in an ssh:// URL" in r.getMessage()
    ]
    assert warnings == [
        "carol@h.example:2022: a password in an ssh:// URL is readable by anyone who can "
        "read the graph file; prefer keys"
    ]


def test_the_user_defaults_to_the_local_users_name() -> None:
    assert parse_target("ssh://h").user == pwd.getpwuid(os.getuid()).pw_name


def test_an_ipv6_label_keeps_its_brackets() -> None:
    assert parse_target("ssh://u@[::1]:2200").label == "u@[::1]:2200"


# -- --allow-interactive: a password prompt on a real terminal ------------------------------

CONNECT_SCRIPT = """
import asyncio, sys
from pathlib import Path
from pymgmt.remote.ssh import RemoteError, SshOptions, connect, parse_target

async def main():
    options = SshOptions(
        identities=(Path(sys.argv[2]),), known_hosts=Path(sys.argv[3]), interactive=True
    )
    conn = await connect(parse_target(sys.argv[1]), options)
    conn.close()
    await conn.wait_closed()

try:
    asyncio.run(main())
    print("CONNECTED")
except RemoteError as e:
    print("REFUSED", e)
"""


def prompted_connect(argv: list[str], answers: list[str]) -> tuple[str, int]:
    """Run `argv` on a pseudo-terminal, answering each password prompt; (output, prompts seen)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    prompts = 0
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                if out.count(b"'s password: ") > prompts:
                    os.write(master, answers[prompts].encode() + b"\n")
                    prompts += 1
            elif proc.poll() is not None:
                break
        proc.wait(timeout=DEADLINE)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    return out.decode(errors="replace"), prompts


def test_allow_interactive_prompts_on_the_terminal_and_reports_the_tries(
    sshd: Callable[..., SshServer], known_hosts: Callable[..., Path], tmp_path: Path
) -> None:
    server = sshd(password_auth=True, permit_root_login="yes")
    stranger = ClientKey(tmp_path / "stranger", keygen(tmp_path / "stranger"))
    argv = [sys.executable, "-c", CONNECT_SCRIPT, server.url(), str(stranger.private)]
    wrong = ["typed-1-Kq", "typed-2-Kq", "typed-3-Kq", "never-asked"]
    out, prompts = prompted_connect([*argv, str(known_hosts(server))], wrong)
    assert prompts == 3
    assert f"root@{server.host}:{server.port}'s password: " in out
    assert "REFUSED" in out and "3 password(s) typed at the prompt" in out
    assert "typed-1-Kq" not in out  # not echoed


def test_allow_interactive_without_a_terminal_never_prompts(
    sshd: Callable[..., SshServer], known_hosts: Callable[..., Path], tmp_path: Path
) -> None:
    server = sshd(password_auth=True, permit_root_login="yes")
    stranger = ClientKey(tmp_path / "stranger", keygen(tmp_path / "stranger"))
    kh = known_hosts(server)
    done = subprocess.run(
        [sys.executable, "-c", CONNECT_SCRIPT, server.url(), str(stranger.private), str(kh)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert "password: " not in done.stdout + done.stderr
    assert done.stdout.startswith(f"REFUSED {server.host}: permission denied")
    assert "typed at the prompt" not in done.stdout


def test_agent_forwarding_hands_the_agent_to_the_remote(
    sshd: Callable[..., SshServer],
    client_key: ClientKey,
    known_hosts: Callable[..., Path],
    ssh_agent: Callable[..., SshAgent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = sshd()
    agent = ssh_agent(client_key.private)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.socket))
    options = options_for(client_key, known_hosts(server), agent_forwarding=True)
    out, status = run_async(connect_and_run(parse_target(server.url()), options, "ssh-add -L"))
    assert status == 0 and client_key.public_line.split()[1] in out
    plain = options_for(client_key, known_hosts(server))
    _, status = run_async(connect_and_run(parse_target(server.url()), plain, "ssh-add -L"))
    assert status == 2  # no agent to talk to


def test_accept_new_defaults_to_the_users_known_hosts_and_records_a_host_once(
    sshd: Callable[..., SshServer],
    client_key: ClientKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = sshd()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    target = parse_target(server.url())
    options = SshOptions(identities=(client_key.private,), accept_new=True)

    async def two_at_once() -> list[tuple[str, int]]:
        return list(
            await asyncio.gather(
                connect_and_run(target, options, "true"), connect_and_run(target, options, "true")
            )
        )

    run_async(two_at_once())
    kh = tmp_path / "home" / ".ssh" / "known_hosts"
    assert kh.read_text() == server.known_hosts_line() + "\n"
    assert kh.parent.stat().st_mode & 0o777 == 0o700
