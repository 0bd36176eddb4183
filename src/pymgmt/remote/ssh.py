"""SSH targets and connections: ``ssh://`` URLs, host-key checks, authentication, clear errors.

A remote graph file names its host as mgmt does, with a ``remote:`` key
holding ``ssh://[user[:password]@]host[:port]``; `parse_target` turns that
into a `Target`. `connect` opens an authenticated asyncssh connection to it,
and every way that can fail becomes one `RemoteError` whose message names
the host and says what to do, because the user of ``--remote`` has many
hosts on screen at once and must see at a glance which one failed and why.

What `connect` guarantees, as OpenSSH would with ``StrictHostKeyChecking``:

* the host's key is checked against a known_hosts file (``~/.ssh/known_hosts``
  unless ``--ssh-known-hosts``); an unknown key is refused with its SHA256
  fingerprint and the two ways to trust it; with ``--ssh-accept-new`` it is
  trusted and recorded (OpenSSH's ``accept-new``); a key *different* from a
  recorded one is always refused, with or without the flag: that is what a
  man in the middle looks like;
* authentication tries the ``--ssh-id`` keys (else ``~/.ssh``'s and the SSH
  agent's), then the URL's password, then, with ``--allow-interactive`` on a
  terminal, a password typed at a prompt;
* a password never appears in any output: `parse_target` registers it with
  `pymgmt.redaction` before anything else can see it, `Target` hides it
  from repr, and no error message quotes it.

asyncssh is imported inside the functions that need it: it costs ~150 ms,
which ``pymgmt --version`` and every run without ``--remote`` should not pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import getpass
import ipaddress
import logging
import os
import pwd
import re
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import unquote, urlsplit

from .. import redaction
from ..errors import PymgmtError

if TYPE_CHECKING:
    import asyncssh

log = logging.getLogger("pymgmt.remote")

DEFAULT_PORT = 22
#: how the form of a target is spelled in error messages
FORM = "ssh://[user[:password]@]host[:port]"
#: OpenSSH's NumberOfPasswordPrompts
PASSWORD_PROMPTS = 3


class RemoteError(PymgmtError):
    """A remote host could not be used; the message names the host and says why."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


# -- targets ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where to connect and as whom: one ``ssh://`` URL, parsed."""

    user: str
    host: str
    port: int = DEFAULT_PORT
    #: from the URL; never shown (repr, label, errors), registered as a secret
    password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """``user@host:port`` (an IPv6 address in brackets), for logs and errors."""
        return f"{self.user}@{_bracketed(self.host)}:{self.port}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


#: a host name (not an address): letters, digits, dots, dashes, underscores
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?")
_warned_urls: set[str] = set()
_warned_lock = threading.Lock()


def parse_target(url: str) -> Target:
    """Parse ``ssh://[user[:password]@]host[:port]``; ValueError says what is wrong.

    The user defaults to the local user's name, as ssh's does. A password is
    accepted (mgmt allows it) but registered as a secret at once and warned
    about once per URL: the graph file holds it in clear text. Characters
    that mean something in a URL (``@ : / ? #``) must be percent-encoded in
    the user or password. A path, query or fragment is an error rather than
    ignored, so a typo never silently targets something else.
    """
    shown = _masked(url)
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() != "ssh":
        raise ValueError(f"{shown!r} is not an ssh:// URL (expected {FORM})")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        # Not urllib's words: they quote the "port", which may be a password
        # cut short by an unencoded '/' ("ssh://u:pa/ss@h").
        reason = (
            "brackets must hold an IPv6 address"
            if "IPv6" in str(e) or "address" in str(e)
            else "the port must be a number from 1 to 65535"
        )
        raise ValueError(
            f"{shown!r}: {reason} (expected {FORM}; percent-encode '/', '?', '#' and '@' "
            "in a user name or password)"
        ) from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"{shown!r} has a path, query or fragment; only {FORM} is allowed "
            "(percent-encode '/', '?', '#' and '@' in a user name or password)"
        )
    hostport = parts.netloc.rpartition("@")[2]
    if not re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*)(:[0-9]*)?", hostport):
        raise ValueError(f"{shown!r}: {hostport!r} is not host or host:port (expected {FORM})")
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"{shown!r} names no host (expected {FORM})")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{shown!r}: {host!r} in brackets is not an IPv6 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{shown!r}: {host!r} is not a host name or address")
    if port == 0:
        raise ValueError(f"{shown!r}: port 0 is not a port to connect to")
    if parts.username is not None:
        user = unquote(parts.username)
        if not user or any(c.isspace() or c in "/\\" for c in user):
            raise ValueError(f"{shown!r}: {user!r} is not a user name")
    else:
        user = _local_user()
    password = unquote(parts.password) if parts.password else None
    target = Target(user=user, host=host, port=port or DEFAULT_PORT, password=password)
    if password is not None:
        redaction.register(password)
        with _warned_lock:
            first = url not in _warned_urls
            _warned_urls.add(url)
        if first:
            log.warning(
                "%s: a password in an ssh:// URL is readable by anyone who can read "
                "the graph file; prefer keys",
                target.label,
            )
    return target


def _masked(url: str) -> str:
    """`url` with anything that could be a password replaced, for error messages.

    Up to the *last* '@': an unencoded '@', '/', '?' or '#' in a password
    would otherwise leave part of it in the message.
    """
    _, sep, rest = url.partition("://")
    userinfo, at, _ = (rest if sep else url).rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return url.replace(userinfo, f"{user}:{redaction.MARK}", 1)


def _local_user() -> str:
    """The local user's name from the passwd database (what ssh uses), else $USER."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or getpass.getuser()


# -- options ------------------------------------------------------------------------


@dataclass(frozen=True)
class SshOptions:
    """How to connect: the ``--ssh-*`` flags, shared by every target of a run."""

    #: --ssh-id FILE (repeatable); empty: ~/.ssh/id_* and the agent
    identities: tuple[Path, ...] = ()
    #: --ssh-known-hosts FILE; None: ~/.ssh/known_hosts
    known_hosts: Path | None = None
    #: --ssh-accept-new: trust and record an unknown key (never a changed one)
    accept_new: bool = False
    #: --allow-interactive: prompt for a password on the terminal
    interactive: bool = False
    #: seconds for the TCP connection, key exchange and authentication
    #: (without the time a person spends typing at a prompt)
    connect_timeout: float = 15.0
    #: forward the local SSH agent (hierarchical remotes connect onwards with it)
    agent_forwarding: bool = False
    #: seconds of silence before asyncssh probes the server; a dead peer is
    #: noticed after 3 unanswered probes (0: never)
    keepalive_interval: float = 15.0

    def known_hosts_path(self) -> Path:
        """The known_hosts file these options check against."""
        return self.known_hosts or Path("~/.ssh/known_hosts").expanduser()


# -- connecting ----------------------------------------------------------------------


async def connect(target: Target, options: SshOptions) -> asyncssh.SSHClientConnection:
    """An authenticated connection to `target`, its host key verified; else RemoteError.

    The caller owns the connection (``conn.close()``, ``await conn.wait_closed()``).
    """
    import asyncssh

    known_path = options.known_hosts_path()
    known = await asyncio.to_thread(_read_known_hosts, target, known_path)
    keys: Sequence[asyncssh.SSHKeyPair] | tuple[()] = ()
    if options.identities:
        keys = await asyncio.to_thread(_load_identities, target, options.identities)
    prompting = options.interactive and sys.stdin is not None and sys.stdin.isatty()
    client = _client_class()(target, known, known_path, options.accept_new, prompting)

    sock = await _open_socket(target, options.connect_timeout)
    try:
        handshake = asyncssh.connect(
            target.host,
            target.port,
            sock=sock,
            username=target.user,
            password=target.password,
            client_keys=keys,
            known_hosts=known,
            client_factory=lambda: cast("asyncssh.SSHClient", client),
            agent_forwarding=options.agent_forwarding,
            keepalive_interval=options.keepalive_interval,
            keepalive_count_max=3,
            gss_auth=False,
            gss_kex=False,
        )
        if prompting:
            # No deadline while a person may be typing; asyncssh's login
            # timeout (2 minutes) still ends a server that never answers.
            conn = await handshake
        else:
            async with asyncio.timeout(options.connect_timeout):
                conn = await handshake
    except TimeoutError:
        sock.close()
        raise RemoteError(
            target.host,
            f"no SSH handshake within {options.connect_timeout:g} s on port {target.port} "
            "(is it an SSH server, and is it overloaded?)",
        ) from None
    except (asyncssh.Error, OSError) as e:
        sock.close()
        if isinstance(e, asyncssh.PermissionDenied):
            await _record_accepted(client, known_path)
        raise _handshake_error(target, options, client, e) from None
    except BaseException:
        sock.close()
        raise
    await _record_accepted(client, known_path)
    return conn


async def _open_socket(target: Target, timeout: float) -> socket.socket:
    """A TCP socket connected to the target, within `timeout`; else RemoteError.

    Done here, not by asyncssh, so the deadline covers the network part alone:
    a password prompt that follows must not eat into it.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
            last: OSError | None = None
            for family, kind, proto, _, address in infos:
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, address)
                    return sock
                except OSError as e:
                    sock.close()
                    last = e
                except BaseException:
                    sock.close()
                    raise
            raise last or OSError(errno.EHOSTUNREACH, "no address")
    except TimeoutError:
        raise RemoteError(
            target.host,
            f"timed out after {timeout:g} s connecting to port {target.port} "
            "(is the host up, and does a firewall drop the packets?)",
        ) from None
    except socket.gaierror as e:
        raise RemoteError(target.host, f"cannot resolve the host name: {e.strerror}") from None
    except ConnectionRefusedError:
        raise RemoteError(
            target.host, f"connection refused on port {target.port}: no SSH server listens there"
        ) from None
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            reason = f"unreachable ({reason})"
        raise RemoteError(target.host, f"cannot connect to port {target.port}: {reason}") from None


def _handshake_error(
    target: Target, options: SshOptions, client: _ClientBase, error: Exception
) -> RemoteError:
    """The RemoteError that explains why the SSH handshake or login failed."""
    import asyncssh

    if client.host_key_problem:
        return RemoteError(target.host, client.host_key_problem)
    if isinstance(error, asyncssh.PermissionDenied):
        offered = client.server_methods()
        tried = client.tried(options, target)
        message = f"permission denied for user {target.user!r}: tried {tried or 'nothing'}"
        if offered:
            message += f"; the server accepts {', '.join(offered)}"
        return RemoteError(target.host, message)
    if isinstance(error, asyncssh.HostKeyNotVerifiable):
        return RemoteError(target.host, f"host key refused: {error.reason}")
    if isinstance(error, asyncssh.KeyExchangeFailed) and client.known_key_types:
        return RemoteError(
            target.host,
            f"key exchange failed ({error.reason}); known_hosts has only "
            f"{', '.join(client.known_key_types)} keys for this host, which it no longer "
            "offers: the host key may have changed",
        )
    if isinstance(error, asyncssh.DisconnectError):
        return RemoteError(target.host, f"SSH connection failed: {error.reason}")
    if isinstance(error, OSError):
        return RemoteError(target.host, f"SSH connection failed: {error.strerror or error}")
    return RemoteError(target.host, f"SSH connection failed: {error}")


# -- host keys ------------------------------------------------------------------------


def _read_known_hosts(target: Target, path: Path) -> asyncssh.SSHKnownHosts:
    """The known_hosts file's entries (none when it does not exist)."""
    import asyncssh

    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    except OSError as e:
        raise RemoteError(target.host, f"cannot read {path}: {e.strerror}") from None
    try:
        return asyncssh.import_known_hosts(text)
    except ValueError as e:
        raise RemoteError(target.host, f"{path} is not a known_hosts file: {e}") from None


def _known_hosts_name(host: str, port: int) -> str:
    """How known_hosts (and ``ssh-keygen -R``) names host:port."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


async def _record_accepted(client: _ClientBase, path: Path) -> None:
    if client.accepted is not None:
        await asyncio.to_thread(_append_known_host, path, client.target, client.accepted)


def _append_known_host(path: Path, target: Target, key: asyncssh.SSHKey) -> None:
    """Append the key to known_hosts: O_APPEND under an flock, skipped if already there.

    Two connections to one new host may accept it at once; the second finds
    the line the first wrote and adds nothing.
    """
    kind, blob = key.export_public_key("openssh").decode().split()[:2]
    line = f"{_known_hosts_name(target.host, target.port)} {kind} {blob}"
    if not remember_host_keys(path, [line]):
        return
    log.warning(
        "%s: trusted its new host key %s %s (--ssh-accept-new) and recorded it in %s",
        target.label,
        kind,
        key.get_fingerprint("sha256"),
        path,
    )


def remember_host_keys(path: Path, lines: Sequence[str]) -> list[str]:
    """Append known_hosts `lines` not already in the file (O_APPEND under an flock);
    the lines added. The file is made 0600, its directory 0700, if missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with open(fd, closefd=False, encoding="utf-8", errors="replace") as f:
            existing = f.read()
        have = set(existing.splitlines())
        new = [line for line in dict.fromkeys(lines) if line not in have]
        if not new:
            return []
        text = "".join(line + "\n" for line in new)
        if existing and not existing.endswith("\n"):
            text = "\n" + text
        os.write(fd, text.encode())
        os.fsync(fd)
        return new
    finally:
        os.close(fd)


def known_hosts_name(host: str, port: int) -> str:
    """How known_hosts names `host`:`port` (``[host]:port`` unless port 22)."""
    return _known_hosts_name(host, port)


def _unknown_key_message(target: Target, key: asyncssh.SSHKey, path: Path) -> str:
    name = _known_hosts_name(target.host, target.port)
    return (
        f"unknown host key {key.get_algorithm()} {key.get_fingerprint('sha256')}: {name} is "
        f"not in {path}. If that is the host's key, add it "
        f"(ssh-keyscan -p {target.port} {target.host} >> {path}) "
        "or run with --ssh-accept-new to trust it on first use"
    )


def _changed_key_message(target: Target, key: asyncssh.SSHKey, path: Path) -> str:
    name = _known_hosts_name(target.host, target.port)
    return (
        f"HOST KEY CHANGED: the host presents {key.get_algorithm()} "
        f"{key.get_fingerprint('sha256')}, not the key {path} holds for {name}; "
        "someone may be intercepting the connection (man in the middle). If the change "
        f"is expected, remove the old key (ssh-keygen -R '{name}' -f {path}) and connect "
        "again; --ssh-accept-new never replaces a recorded key"
    )


# -- the asyncssh client ----------------------------------------------------------------


class _ClientBase(Protocol):
    """What `connect` reads back from its asyncssh client after the handshake."""

    target: Target
    host_key_problem: str | None
    accepted: asyncssh.SSHKey | None
    known_key_types: list[str]

    def server_methods(self) -> list[str]: ...

    def tried(self, options: SshOptions, target: Target) -> str: ...


@functools.cache
def _client_class() -> Callable[[Target, asyncssh.SSHKnownHosts, Path, bool, bool], _ClientBase]:
    """The asyncssh client class, built on first use (asyncssh is imported lazily)."""
    import asyncssh

    class Client(asyncssh.SSHClient):
        """Decides on host keys and supplies prompted passwords; remembers what it did."""

        def __init__(
            self,
            target: Target,
            known: asyncssh.SSHKnownHosts,
            known_path: Path,
            accept_new: bool,
            prompting: bool,
        ) -> None:
            self.target = target
            self.known = known
            self.known_path = known_path
            self.accept_new = accept_new
            self.prompting = prompting
            self.host_key_problem: str | None = None
            self.accepted: asyncssh.SSHKey | None = None
            self.known_key_types: list[str] = []
            self.conn: asyncssh.SSHClientConnection | None = None
            self.keys_tried = False
            self.prompts = 0
            #: the server's methods we can use, as seen while authenticating
            #: (asyncssh empties its own list as it tries them)
            self.offered: list[str] = []

        def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
            self.conn = conn
            port = None if self.target.port == DEFAULT_PORT else self.target.port
            host_keys = self.known.match(self.target.host, "", port)[0]
            self.known_key_types = sorted({k.get_algorithm() for k in host_keys})

        def validate_host_public_key(
            self, host: str, addr: str, port: int, key: asyncssh.SSHKey
        ) -> bool:
            # Called only for a key that is not among the host's known keys.
            if self.known.match(host, addr, None if port == DEFAULT_PORT else port)[0]:
                self.host_key_problem = _changed_key_message(self.target, key, self.known_path)
                return False
            if self.accept_new:
                self.accepted = key
                return True
            self.host_key_problem = _unknown_key_message(self.target, key, self.known_path)
            return False

        def _note_methods(self) -> None:
            if self.conn is None:
                return
            with contextlib.suppress(Exception):  # asyncssh's internals: best effort
                for method in self.conn.get_server_auth_methods():
                    if method not in self.offered:
                        self.offered.append(method)

        def public_key_auth_requested(self) -> None:
            # asyncssh asks here once its own keys are used up: publickey was tried.
            self._note_methods()
            self.keys_tried = True
            return None

        async def password_auth_requested(self) -> str | None:
            self._note_methods()
            if not self.prompting or self.prompts >= PASSWORD_PROMPTS:
                return None
            self.prompts += 1
            return await _ask(f"{self.target.label}'s password: ", echo=False)

        def kbdint_auth_requested(self) -> str | None:
            self._note_methods()
            # With a URL password asyncssh answers a password challenge itself.
            if self.target.password is not None or not self.prompting:
                return NotImplemented  # type: ignore[no-any-return]
            return ""

        async def kbdint_challenge_received(
            self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
        ) -> list[str] | None:
            if prompts and self.prompts >= PASSWORD_PROMPTS:
                return None
            self.prompts += bool(prompts)
            header = "\n".join(s for s in (name, instructions) if s)
            answers = []
            for i, (prompt, echo) in enumerate(prompts):
                lead = f"{header}\n" if header and i == 0 else ""
                answers.append(await _ask(f"{lead}{self.target.label} {prompt}", echo=echo))
            return answers

        def server_methods(self) -> list[str]:
            return list(self.offered)

        def tried(self, options: SshOptions, target: Target) -> str:
            methods = []
            offered = self.server_methods()
            if self.keys_tried or "publickey" in offered:
                if options.identities:
                    files = ", ".join(str(p) for p in options.identities)
                    methods.append(f"publickey (--ssh-id {files})")
                else:
                    methods.append("publickey (the keys in ~/.ssh and the SSH agent's)")
            password_offered = {"password", "keyboard-interactive"} & set(offered)
            if target.password is not None and password_offered:
                methods.append("the password from the URL")
            if self.prompts:
                methods.append(f"{self.prompts} password(s) typed at the prompt")
            return ", ".join(methods)

    return Client


_prompt_lock = threading.Lock()


async def _ask(prompt: str, *, echo: bool) -> str:
    """Ask on the terminal (in a thread: it blocks), one question at a time across connections."""

    def ask() -> str:
        with _prompt_lock:
            if echo:
                return input(prompt)
            return getpass.getpass(prompt)

    answer = await asyncio.to_thread(ask)
    if not echo:
        redaction.register(answer)  # a typed password is a secret like the URL's
    return answer


def _load_identities(target: Target, identities: tuple[Path, ...]) -> Sequence[asyncssh.SSHKeyPair]:
    """The --ssh-id key pairs, read now so a bad file is an error that names it."""
    import asyncssh

    pairs: list[asyncssh.SSHKeyPair] = []
    for path in identities:
        try:
            pairs.extend(asyncssh.load_keypairs([str(path)]))
        except OSError as e:
            raise RemoteError(target.host, f"cannot read the key {path}: {e.strerror}") from None
        except (asyncssh.KeyImportError, ValueError) as e:
            raise RemoteError(target.host, f"cannot use the key {path}: {e}") from None
    return pairs
