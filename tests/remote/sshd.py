"""Real OpenSSH servers for the remote-execution tests: one "host" per sshd.

`SshServer` runs Debian's ``/usr/sbin/sshd`` (we are root) in the
foreground on its own loopback address ``127.0.1.N`` and a free port, with
everything it needs in a directory of its own: an ed25519 host key, an
``authorized_keys``, the ``sshd_config`` and a ``home/``, ``tmp/`` and
``cache/``. Sessions get ``HOME``, ``TMPDIR`` and ``XDG_CACHE_HOME`` pointing
there (sshd's ``SetEnv``), so two servers are two hosts as far as files and
caches go; ``HOME`` also keeps root's real ``~/.bashrc`` (which bash reads
for commands run over ssh, and which puts pyenv's shims on PATH) out of the
picture. ``path=`` replaces the session's PATH, so a test can make a host on
which no Python can be found. The session's working directory is still
root's home directory: sshd changes to the passwd entry's directory.

sshd's log goes to stderr (``-e``), read by a thread that stamps every line
with the wall-clock time it arrived (sshd's own log lines carry none) and
keeps a copy in ``sshd.log``; `accepted_logins`, `disconnects` and
`log_text` read those lines. The SFTP server logs every file it opens to
``sftp.log`` (`sftp_writes` counts the writes). Wall-clock, so a test can
put them next to the timestamps of pymgmt's ``--json`` events.

`close` kills the listener *and every process under it* (per-connection
sshd processes call setsid(), so they are not in its process group; a
session's commands live below them), reaps them and fails naming any that
would not die. Recipe and timings: shared/research/components.md §6.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from helpers import DEADLINE, wait_for

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
#: sshd's privilege-separation directory; it refuses to start without it
PRIVSEP_DIR = Path("/run/sshd")
#: loopback addresses 127.0.1.1 .. 127.0.1.254, one per server of this process
_addresses = (f"127.0.1.{n}" for n in itertools.cycle(range(1, 255)))
_address_lock = threading.Lock()


class SshdUnavailable(Exception):
    """No usable sshd here (not installed: run scripts/system/prepare; not root)."""


def sshd_problem() -> str | None:
    """Why no SshServer can run here, or None when it can."""
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing (apt-get install openssh-server; scripts/system/prepare does)"
    if os.geteuid() != 0:
        return "sshd must run as root to log users in"
    return None


def keygen(path: Path, comment: str = "") -> str:
    """Make an ed25519 key pair at `path` (+ ``.pub``); return the public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


@dataclass(frozen=True)
class ClientKey:
    """A client key pair: `private` (for --ssh-id / client_keys) and its public line."""

    private: Path
    public_line: str


def free_port(address: str) -> int:
    """A TCP port nothing listens on at `address` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def accepting(address: str, port: int) -> bool:
    """Something accepts TCP connections on address:port."""
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first listed, then theirs)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in _listdir(f"/proc/{parent}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{parent}/task/{task}/children") as f:
                kids = [int(p) for p in f.read().split()]
                out.extend(kids)
                todo.extend(kids)
    return out


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _gone(pid: int) -> bool:
    """`pid` has exited; reaped here if it was our child (we are a subreaper)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class SshServer:
    """One sshd, one "host": started by the constructor, stopped by `close`.

    `authorized` lines go into its ``authorized_keys`` (`authorize` adds more
    later). `permit_root_login` is sshd's PermitRootLogin value;
    `password_auth` turns PasswordAuthentication on (root has no usable
    password here, so a password login as root is refused: a test of the
    error, not of a way in). `path` overrides the sessions' PATH.
    """

    def __init__(
        self,
        directory: Path,
        *,
        authorized: Iterable[str] = (),
        permit_root_login: str = "prohibit-password",
        password_auth: bool = False,
        path: str | None = None,
        address: str | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        if problem := sshd_problem():
            raise SshdUnavailable(problem)
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        if address is None:
            with _address_lock:
                address = next(_addresses)
        self.host = address
        self.port = free_port(address)
        for sub in ("home", "tmp", "cache"):
            (self.dir / sub).mkdir(exist_ok=True)
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.host_public_key = " ".join(keygen(self.host_key, "").split()[:2])
        self.authorized_keys = self.dir / "authorized_keys"
        self.authorized_keys.write_text("".join(line.strip() + "\n" for line in authorized))
        self.pid_file = self.dir / "sshd.pid"
        self.log_file = self.dir / "sshd.log"
        self.sftp_log = self.dir / "sftp.log"
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            self._config_text(permit_root_login, password_auth, path, extra_config)
        )
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        subprocess.run([SSHD, "-t", "-f", str(self.config)], check=True, capture_output=True)

        self._lines: list[tuple[float, str]] = []
        self._lines_lock = threading.Lock()
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(
            target=self._read_log, name=f"sshd-log-{self.host}", daemon=True
        )
        self._reader.start()
        try:
            wait_for(self._up, what=f"sshd on {self.host}:{self.port} accepting")
        except BaseException:
            self.close()
            raise

    def _config_text(
        self, permit_root_login: str, password_auth: bool, path: str | None, extra: Sequence[str]
    ) -> str:
        env = [f"TMPDIR={self.dir / 'tmp'}", f"XDG_CACHE_HOME={self.dir / 'cache'}"]
        env.append(f"HOME={self.dir / 'home'}")
        if path is not None:
            env.append(f"PATH={path}")
        yes_no = "yes" if password_auth else "no"
        lines = [
            f"ListenAddress {self.host}:{self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"PermitRootLogin {permit_root_login}",
            f"PasswordAuthentication {yes_no}",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "AllowTcpForwarding yes",
            "AllowAgentForwarding yes",
            "LogLevel VERBOSE",
            # -l INFO: every file an SFTP client opens is logged (sftp_writes).
            # Not internal-sftp: its log goes to syslog (there is none here),
            # whatever sshd's -e/-E say. A subsystem runs through the user's
            # shell, which redirects the server's -e log into the file.
            f"Subsystem sftp {SFTP_SERVER} -e -l INFO 2>>{self.sftp_log}",
            "SetEnv " + " ".join(env),
            # many connections at once (--cconns 0): sshd's default drops some
            "MaxStartups 100",
            *extra,
        ]
        return "\n".join(lines) + "\n"

    def _read_log(self) -> None:
        assert self._proc.stderr is not None
        with self._proc.stderr as pipe, open(self.log_file, "a") as copy:
            for raw in pipe:
                now = time.time()
                line = raw.decode(errors="replace").rstrip("\r\n")
                with self._lines_lock:
                    self._lines.append((now, line))
                copy.write(f"{now:.6f} {line}\n")
                copy.flush()

    def _up(self) -> bool:
        if self._proc.poll() is not None:
            raise AssertionError(
                f"sshd on {self.host}:{self.port} exited with {self._proc.returncode}:\n"
                + self.log_text()
            )
        return accepting(self.host, self.port)

    # -- for the tests --------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The listening sshd's pid."""
        return self._proc.pid

    @property
    def host_key_fingerprint(self) -> str:
        """The host key's ``SHA256:...`` fingerprint, as ssh shows it."""
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{self.host_key}.pub"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()[1]

    def url(self, user: str = "root", password: str | None = None) -> str:
        """The ``ssh://`` target URL of this server for `user`."""
        cred = user if password is None else f"{user}:{password}"
        return f"ssh://{cred}@{self.host}:{self.port}"

    def authorize(self, public_line: str) -> None:
        """Let the key `public_line` log in from now on."""
        with open(self.authorized_keys, "a") as f:
            f.write(public_line.strip() + "\n")

    def known_hosts_line(self, key: str | None = None) -> str:
        """This server's line for a known_hosts file (another `key` to fake a changed one)."""
        return f"[{self.host}]:{self.port} {key or self.host_public_key}"

    def lines(self) -> list[tuple[float, str]]:
        """The log so far: (wall-clock time the line arrived, line)."""
        with self._lines_lock:
            return list(self._lines)

    def log_text(self) -> str:
        """The log so far, one line per line, without the timestamps."""
        return "".join(line + "\n" for _, line in self.lines())

    def matching(self, pattern: str) -> list[tuple[float, str]]:
        """The log lines that `pattern` (a regular expression) is found in."""
        rx = re.compile(pattern)
        return [(t, line) for t, line in self.lines() if rx.search(line)]

    def accepted_logins(self) -> list[float]:
        """When each successful login happened (``Accepted publickey/password``)."""
        return [t for t, _ in self.matching(r"^Accepted (publickey|password|keyboard-int)")]

    def disconnects(self) -> list[float]:
        """When each logged-in connection ended (``Disconnected from user``)."""
        return [t for t, _ in self.matching(r"^Disconnected from user ")]

    def sftp_writes(self, name_part: str) -> int:
        """How often a file whose path contains `name_part` was opened for writing over SFTP."""
        try:
            text = self.sftp_log.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        opens = (line for line in text.splitlines() if line.startswith('open "'))
        return sum(
            1
            for line in opens
            if name_part in line.split('"')[1] and "WRITE" in line.rsplit(" flags ", 1)[-1]
        )

    def processes(self) -> list[int]:
        """The pids running under this sshd: connections and their sessions' commands."""
        return descendants(self._proc.pid) if self._proc.poll() is None else []

    # -- stopping -----------------------------------------------------------------

    def close(self) -> None:
        """Kill sshd and everything under it, reap them, stop the log reader."""
        stuck: list[int] = []
        if self._proc.poll() is None:
            # Collect first: once the listener is dead its children are
            # re-parented (to us, the subreaper) and no longer found below it.
            victims = descendants(self._proc.pid)
            self._proc.kill()
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: all(_gone(p) for p in victims), what="sshd's processes to exit")
            stuck = [p for p in victims if not _gone(p)]
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=DEADLINE)
        self._reader.join(DEADLINE)
        if stuck or self._reader.is_alive():
            raise AssertionError(f"sshd on {self.host}:{self.port}: pids {stuck} would not exit")

    def __enter__(self) -> SshServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_known_hosts(path: Path, servers: Iterable[SshServer]) -> Path:
    """Write a known_hosts file trusting every one of `servers`; return its path."""
    path.write_text("".join(s.known_hosts_line() + "\n" for s in servers))
    path.chmod(0o600)
    return path


class SshAgent:
    """A real ``ssh-agent -D -a SOCK`` holding `keys`; `env` points clients at it."""

    def __init__(self, keys: Iterable[Path]) -> None:
        # A short directory of its own: a socket path over 108 bytes cannot be
        # bound, and pytest's tmp_path for a long test name gets close.
        self._dir = Path(tempfile.mkdtemp(prefix="pymgmt-agent-"))
        self.socket = self._dir / "agent.sock"
        self._proc = subprocess.Popen(
            ["ssh-agent", "-D", "-a", str(self.socket)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(self._up, what="ssh-agent's socket")
            for key in keys:
                subprocess.run(
                    ["ssh-add", "-q", str(key)],
                    env={**os.environ, "SSH_AUTH_SOCK": str(self.socket)},
                    check=True,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                )
        except BaseException:
            self.close()
            raise

    def _up(self) -> bool:
        if self._proc.poll() is not None:
            raise AssertionError(f"ssh-agent exited with {self._proc.returncode}")
        return self.socket.is_socket()

    @property
    def env(self) -> dict[str, str]:
        """The environment variables that make ssh clients use this agent."""
        return {"SSH_AUTH_SOCK": str(self.socket)}

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=DEADLINE)
        shutil.rmtree(self._dir, ignore_errors=True)
