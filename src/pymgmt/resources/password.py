"""password: generates a random secret once, keeps it, and sends it.

The value lives in the resource's state directory, mode 0600 from its first
byte, written atomically; it is never logged or shown in a diff (plans and
events only ever say ``<redacted>``). Another resource receives it along an
edge with ``send: password`` / ``recv: <param>``. A refresh notification
regenerates it; so does deleting or damaging the stored file.

The state directory is walked like any path the agent touches as root
(`fsutil.open_dir`): its directories are made 0700 without following a
symlink another user could have planted, and the file is opened without
following one.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import string
from typing import Any, ClassVar

from .. import fsutil
from ..redaction import register
from .base import CONVERGED, Change, Context, Plan, Resource, off_loop, param

_DEFAULT_CHARSET = string.ascii_letters + string.digits


class Password(Resource, kind="password"):
    """A random secret, generated once and kept across runs.

    Kept 0600 in the agent's state directory and never shown: every output
    says ``<redacted>``. An edge with ``send: password`` and ``recv: PARAM``
    carries it into another resource's param (``recv: vars.NAME``: one
    variable of a file's template). A refresh notification generates a new
    one.
    """

    example = """\
graph: secret
resources:
  password:
  - name: db
    length: 32
  file:
  - name: /etc/app/db.secret
    mode: "0600"
edges:
- name: db-secret
  from: {kind: password, name: db}
  to: {kind: file, name: /etc/app/db.secret}
  send: password
  recv: content
"""

    length: int = param(64, doc="number of characters (1 to 4096)")
    charset: str = param(
        _DEFAULT_CHARSET, doc="characters to choose from (at least two different ones)"
    )

    outputs: ClassVar[dict[str, Any]] = {"password": str}
    secret_outputs: ClassVar[frozenset[str]] = frozenset({"password"})

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not 1 <= self.length <= 4096:
            out.append(("length", f"must be between 1 and 4096, got {self.length}"))
        if len(set(self.charset)) < 2:
            out.append(("charset", "needs at least two different characters"))
        return out

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self._path = os.path.abspath(ctx.state_dir / "password")  # the safe walk starts at /
        self._value: str | None = None
        self._regenerate = False

    def refresh(self) -> None:
        self._regenerate = True

    async def watch(self, ctx: Context) -> None:
        self._make_dir()
        sub = ctx.inotify.subscribe(self._path, ctx.event)
        try:
            ctx.ready()
            await asyncio.Event().wait()
        finally:
            ctx.inotify.unsubscribe(sub)

    def _make_dir(self) -> None:
        os.close(fsutil.open_dir(os.path.dirname(self._path), create=0o700))

    def _stored(self) -> str | None:
        parent, name = fsutil.split(self._path)
        try:
            with fsutil.opened_dir(parent) as dfd:
                fd = fsutil.open_node(dfd, name)
                if fd is None:
                    return None
                try:
                    value = fsutil.read_fd(fd).decode()
                finally:
                    os.close(fd)
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        ok = len(value) == self.length and set(value) <= set(self.charset)
        return value if ok else None

    async def check(self) -> Plan:
        stored = self._stored()
        if stored is not None and not self._regenerate:
            register(stored)
            self._value = stored
            return CONVERGED
        why = "refresh" if self._regenerate and stored is not None else "missing or invalid"
        return Plan((Change("password", f"<{why}>", "<redacted>"),))

    async def apply(self, plan: Plan) -> None:
        value = "".join(secrets.choice(self.charset) for _ in range(self.length))
        register(value)  # before anyone can see it
        await off_loop(self._store, value)  # two fsyncs: not in the event loop
        self._value = value
        self._regenerate = False

    def _store(self, value: str) -> None:
        self._make_dir()
        fsutil.atomic_write(self._path, value.encode(), 0o600, None, None)

    def sends(self) -> dict[str, Any]:
        return {} if self._value is None else {"password": self._value}
