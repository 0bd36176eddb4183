"""What the `user` and `group` kinds share: the system's own tools, and the files they edit.

Accounts are changed through shadow's tools (``useradd``, ``usermod``,
``userdel``, ``groupadd``, ``groupmod``, ``groupdel``), never by editing
``/etc/passwd`` ourselves: they take the lock every other tool takes, keep
``/etc/shadow`` and ``/etc/gshadow`` in step, and run the distribution's
hooks (nscd, sssd caches). Arguments are an argv list; no shell is involved.

A tool is never killed half-way: like a package transaction, a stop waits
for it (it takes milliseconds), so a lock file is never left behind.

Two of our own tools at once are serialised by the C library's
``lckpwdf`` (each waits its turn). But another program holding shadow's
lock file (``vipw`` while its editor is open, ``passwd`` writing) makes a
tool give up at once with "cannot lock ...; try again later"; released
without a change, no watch would fire, and the resource would stay failed.
So such a tool is run again, with a growing pause, for up to `LOCK_WAIT`
seconds (the lock is respected, never broken).

Accounts are read with the C library's lookups (``pwd``, ``grp``, off the loop), as every
other program on the machine sees them. The watch is inotify on the files
the tools replace (``/etc/passwd``, ``/etc/group``): an edit by any tool or
by hand is seen at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable

from ..errors import ResourceError
from .base import Context, off_loop

#: the files a user or group change rewrites (shadow's tools rename new copies in place)
WATCHED = ("/etc/passwd", "/etc/group")
#: where the tools are looked up (the system's, whatever the agent's PATH)
TOOL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def subscribe(ctx: Context) -> Callable[[], None]:
    """Watch the account files; returns what ends the watch."""
    subs = [ctx.inotify.subscribe(path, ctx.event) for path in WATCHED]

    def unsubscribe() -> None:
        for sub in subs:
            ctx.inotify.unsubscribe(sub)

    return unsubscribe


#: seconds a tool is tried again while another program holds the account files' lock
LOCK_WAIT = 60.0
#: the first pause between tries, doubled each time up to `_LOCK_PAUSE_MAX`
_LOCK_PAUSE, _LOCK_PAUSE_MAX = 0.05, 2.0
#: what shadow's tools say (LC_ALL=C) when a live program holds a lock file; not
#: "cannot lock", which a read-only /etc gives too, and waiting would not help
_LOCKED = b" already used by PID "


async def run_tool(argv: list[str], log: logging.Logger) -> None:
    """Run one of shadow's tools to its end (a cancelled caller still waits for it).

    Tried again while another program holds the lock (the module docstring
    says why). ResourceError with the tool's own message when it fails.
    """
    deadline = time.monotonic() + LOCK_WAIT
    pause = _LOCK_PAUSE
    while True:
        done = await off_loop(_run, argv)
        locked = done.returncode != 0 and _LOCKED in done.stderr
        if not locked or time.monotonic() + pause > deadline:
            break
        if pause == _LOCK_PAUSE:
            log.info("%s: the account files are locked by another program: waiting", argv[0])
        await asyncio.sleep(pause)
        pause = min(pause * 2, _LOCK_PAUSE_MAX)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        tail = "; ".join(said[-3:]) or "no message"
        waited = f" (still locked after {LOCK_WAIT:.0f} s)" if locked else ""
        raise ResourceError(f"{argv[0]} exited with status {done.returncode}{waited}: {tail}")


#: the settings file of shadow's tools
LOGIN_DEFS = "/etc/login.defs"
#: a constant script (the data are its arguments, never part of it): bind the
#: copy of login.defs ($0) over the real one in this mount namespace, then
#: become the tool ("$@"); the namespace, and the bind, end with the tool
_WITH_DEFS = 'mount --bind -- "$0" /etc/login.defs && exec "$@"'


async def run_tool_with_defs(argv: list[str], log: logging.Logger, name: str, value: str) -> None:
    """`run_tool`, the tool reading login.defs with setting `name` as `value`.

    What ``useradd -K NAME=VALUE`` does, for a tool without ``-K`` (Debian's
    userdel 4.13 has none): the tool runs in a mount namespace of its own
    (unshare), where a copy of login.defs with that one line changed is
    bound over the real file; nothing else on the machine sees the copy, and
    the real file is never written. When login.defs already says `value`
    (or has no such setting and `value` is ``no``, the default of a flag),
    the tool is run as it is.
    """
    copy = await off_loop(_defs_copy, name, value)
    if copy is None:
        await run_tool(argv, log)
        return
    try:
        wrapped = ["unshare", "--mount", "--propagation", "private", "--"]
        await run_tool([*wrapped, "/bin/sh", "-c", _WITH_DEFS, copy, *argv], log)
    finally:
        await off_loop(shutil.rmtree, os.path.dirname(copy), True)


def _defs_copy(name: str, value: str) -> str | None:
    """A private copy of login.defs with `name` set to `value`; None when it says so already."""
    try:
        with open(LOGIN_DEFS, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    setting = re.compile(rf"^[ \t]*{re.escape(name)}[ \t]+(\S+)", re.MULTILINE)
    found = setting.findall(text)
    now = found[-1] if found else ("no" if value == "no" else None)
    if now is not None and now.lower() == value.lower():
        return None
    text = setting.sub("#", text) + f"\n{name} {value}\n"
    directory = tempfile.mkdtemp(prefix="pymgmt-login-defs-")  # 0700, root's own
    path = os.path.join(directory, "login.defs")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(directory)
        raise
    return path


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": TOOL_PATH, "LC_ALL": "C"}
    try:
        return subprocess.run(  # noqa: S603 - an argv list, names validated by the kinds
            argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False
        )
    except FileNotFoundError:
        package = "util-linux" if argv[0] == "unshare" else "passwd"
        raise ResourceError(f"{argv[0]} is not installed (the {package!r} package)") from None


def account_name_problem(name: str, what: str) -> str | None:
    """A name shadow's tools accept on Debian: no ':', ',', '/', space or leading '-'.

    Not all digits either: a name that reads as a number would be taken for
    an id by every tool that accepts both. Not ``.`` or ``..``: Debian's
    useradd 4.13 takes them, but the default home ``/home/..`` and every
    tool that joins a name to a directory would climb out (newer shadow
    refuses them too).
    """
    if not name:
        return f"a {what} name must not be empty"
    if name.isdigit():
        return f"a {what} name must not be a number, got {name!r}"
    if name in (".", ".."):
        return f"a {what} name must not be {name!r}"
    if len(name) > 32:
        return f"a {what} name has at most 32 characters, got {len(name)}"
    if name.startswith("-") or any(c in name for c in ":,/\0") or any(c.isspace() for c in name):
        return f"not a valid {what} name: {name!r}"
    return None


def passwd_field_problem(value: str) -> str | None:
    """Why `value` cannot be a field of /etc/passwd (':' separates them, a newline ends one).

    useradd and usermod refuse such a home or shell too, but only at apply,
    after other resources of the graph have run: said here, it is an input
    error and nothing is touched.
    """
    if any(c in value for c in ":\n\0"):
        return "must not contain ':', a newline or NUL (fields of /etc/passwd)"
    return None
