"""file: a file or directory, its content, mode and ownership.

Converged means: the path exists as the right type (a directory when the
path ends in ``/``, as in mgmt; a regular file otherwise) with the wanted
content, mode, owner and group -- or, with ``state: absent``, nothing is
there. Watched through the parent directory via the shared inotify hub, so
deletion, rewrite, rename-over, chmod and chown are all seen at once.

Writes are atomic and durable: a temporary file in the same directory is
created with the final mode from its first byte, written, fsynced and
renamed over the target, and the directory is fsynced. A crash at any moment
leaves the old content or the new, never a partial or empty file. The
temporary name is fixed per target, so a leftover from a crash is replaced
by the next write.
"""

from __future__ import annotations

import asyncio
import difflib
import grp
import hashlib
import os
import pwd
import re
import stat
from collections.abc import Generator
from typing import Literal

from ..errors import ResourceError
from ..fsutil import atomic_write
from ..traits import UID, Want
from .base import CONVERGED, Change, Context, Plan, Resource, param

_MODE_RE = re.compile(r"^0?[0-7]{3,4}$")
#: Above this size, file I/O leaves the event loop for a thread.
_INLINE_IO = 1 << 20
#: Above this size (or for binary data), diffs show digests instead of lines.
_DIFF_MAX = 256 << 10


class File(Resource, kind="file"):
    """A file or directory (path ending in ``/``) in a wanted state."""

    path: str = param("", doc="absolute path; defaults to the resource name")
    content: str | None = param(None, doc="exact content; unset leaves content alone")
    state: Literal["exists", "absent"] = param("exists", doc="whether the path should exist")
    mode: str | None = param(None, doc="octal permission bits such as '0644'")
    owner: str | None = param(None, doc="user name or uid")
    group: str | None = param(None, doc="group name or gid")

    # -- static validation ----------------------------------------------------

    @property
    def target(self) -> str:
        return self.path or self.name

    @property
    def is_dir(self) -> bool:
        return self.target.endswith("/")

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        field = "path" if self.path else "name"
        if not self.target.startswith("/"):
            why = "" if self.path else " (without 'path', the name is the path)"
            out.append((field, f"must be an absolute path, got {self.target!r}{why}"))
        elif "\0" in self.target or "/../" in self.target + "/" or "/./" in self.target:
            out.append((field, f"must be a normalised path, got {self.target!r}"))
        if self.mode is not None and not _MODE_RE.match(self.mode):
            out.append(("mode", f"expected an octal mode such as '0644', got {self.mode!r}"))
        if self.is_dir and self.content is not None:
            out.append(("content", "a directory (path ending in '/') cannot have content"))
        if self.state == "absent" and (self.content is not None or self.mode or self.owner):
            out.append(("state", "an absent file cannot also have content, mode or owner"))
        return out

    # -- AutoEdges: a file depends on its nearest managed ancestor directory --------

    def uids(self) -> list[UID]:
        return [UID("file", self.target.rstrip("/") or "/")]

    def wants(self) -> Generator[Want, bool, None]:
        parts = [p for p in self.target.split("/") if p]
        for depth in range(len(parts) - 1, -1, -1):
            matched = yield Want((UID("file", "/" + "/".join(parts[:depth])),))
            if matched:
                return

    # -- wanted state, computed once ---------------------------------------------

    def _wanted(self) -> None:
        self._fs_path = self.target.rstrip("/") or "/"
        self._want = None if self.content is None else self.content.encode()
        self._want_sha: str | None = None
        self._want_mode = None if self.mode is None else int(self.mode, 8)
        # Users and groups may appear later (a package creates them), so they
        # are resolved at check time, not at init.
        self._uid: int | None = None
        self._gid: int | None = None

    def want_sha256(self) -> str:
        """The cached checksum of the wanted content (computed once)."""
        if self._want_sha is None:
            self._want_sha = hashlib.sha256(self._want or b"").hexdigest()
        return self._want_sha

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self._wanted()

    def received(self, changed: frozenset[str]) -> None:
        # New content (e.g. a password) invalidates the cached checksum.
        self._wanted()

    # -- watch ------------------------------------------------------------------

    async def watch(self, ctx: Context) -> None:
        sub = ctx.inotify.subscribe(self._fs_path, ctx.event)
        try:
            ctx.ready()
            await asyncio.Event().wait()
        finally:
            ctx.inotify.unsubscribe(sub)

    # -- check ------------------------------------------------------------------

    async def check(self) -> Plan:
        if self.owner is not None:
            self._uid = _uid(self.owner)
        if self.group is not None:
            self._gid = _gid(self.group)
        try:
            st: os.stat_result | None = os.lstat(self._fs_path)
        except FileNotFoundError:
            st = None
        except NotADirectoryError:
            st = None
        if self.state == "absent":
            if st is None:
                return CONVERGED
            return Plan((Change("state", "exists", "absent"),))
        changes: list[Change] = []
        if st is None:
            changes.append(Change("state", "absent", "exists"))
            if self._want is not None:
                changes.append(await self._content_change(None))
        else:
            want_dir = self.is_dir
            if want_dir and not stat.S_ISDIR(st.st_mode):
                raise ResourceError(f"{self._fs_path} exists and is not a directory")
            if not want_dir and not stat.S_ISREG(st.st_mode):
                kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
                raise ResourceError(f"{self._fs_path} exists and is {kind}")
            if self._want is not None and await self._content_differs(st):
                changes.append(await self._content_change(st))
        if self._want_mode is not None:
            have = None if st is None else stat.S_IMODE(st.st_mode)
            if have != self._want_mode:
                changes.append(
                    Change(
                        "mode", None if have is None else f"{have:04o}", f"{self._want_mode:04o}"
                    )
                )
        if self._uid is not None and (st is None or st.st_uid != self._uid):
            changes.append(Change("owner", None if st is None else st.st_uid, self._uid))
        if self._gid is not None and (st is None or st.st_gid != self._gid):
            changes.append(Change("group", None if st is None else st.st_gid, self._gid))
        return Plan(tuple(changes))

    async def _content_differs(self, st: os.stat_result) -> bool:
        want = self._want
        assert want is not None
        if st.st_size != len(want):
            return True
        if st.st_size <= _INLINE_IO:
            return _read(self._fs_path) != want
        return await asyncio.to_thread(_sha256_of, self._fs_path) != self.want_sha256()

    async def _content_change(self, st: os.stat_result | None) -> Change:
        want = self._want
        assert want is not None
        new = f"sha256:{self.want_sha256()[:16]}"
        if st is None:
            old_text: bytes | None = None
            old = None
        elif st.st_size <= _DIFF_MAX:
            old_text = _read(self._fs_path)
            old = f"sha256:{hashlib.sha256(old_text).hexdigest()[:16]}"
        else:
            old_text = None
            old = f"sha256:{(await asyncio.to_thread(_sha256_of, self._fs_path))[:16]}"
        return Change("content", old, new, diff=_unified(self._fs_path, old_text, want, st))

    # -- apply ------------------------------------------------------------------

    async def apply(self, plan: Plan) -> None:
        fields = {c.field for c in plan.changes}
        path = self._fs_path
        if self.state == "absent":
            if self.is_dir:
                os.rmdir(path)  # refuses a non-empty directory, on purpose
            else:
                os.unlink(path)
            return
        if self.is_dir:
            if "state" in fields:
                mode = self._want_mode if self._want_mode is not None else 0o755
                _ensure_parent(path)
                os.mkdir(path, mode & 0o777)
                os.chmod(path, mode)
        elif "content" in fields or "state" in fields:
            want = self._want_mode
            if want is not None:
                mode = want
            else:
                try:
                    mode = stat.S_IMODE(os.stat(path).st_mode)
                except FileNotFoundError:
                    mode = 0o644 & ~_umask()
            data = self._want if self._want is not None else b""
            _ensure_parent(path)
            if len(data) > _INLINE_IO:
                await asyncio.to_thread(atomic_write, path, data, mode, self._uid, self._gid)
            else:
                atomic_write(path, data, mode, self._uid, self._gid)
            return
        if self._uid is not None or self._gid is not None:
            os.chown(
                path, -1 if self._uid is None else self._uid, -1 if self._gid is None else self._gid
            )
        if self._want_mode is not None:
            os.chmod(path, self._want_mode)


def _ensure_parent(path: str) -> None:
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        raise ResourceError(
            f"parent directory {parent} does not exist (manage it with a file resource "
            f"'{parent}/' first)"
        )


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _unified(path: str, old: bytes | None, new: bytes, st: os.stat_result | None) -> str:
    if (st is not None and old is None) or len(new) > _DIFF_MAX:
        return f"--- {path}\n+++ {path}\n(content too large to diff; checksums differ)\n"
    try:
        old_lines = [] if old is None else old.decode().splitlines(keepends=True)
        new_lines = new.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"--- {path}\n+++ {path}\nBinary content differs\n"
    lines = difflib.unified_diff(
        old_lines, new_lines, "/dev/null" if old is None else path, path, n=3
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def _uid(owner: str) -> int:
    if owner.isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise ResourceError(f"no such user {owner!r}") from None


def _gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ResourceError(f"no such group {group!r}") from None


def _umask() -> int:
    # os.umask can only be read by setting it; do it once per process.
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None
