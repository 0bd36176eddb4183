"""Short-lived helper programs the event loop asks something of.

Why one place: every such child (`dpkg-query`, `puppet`, `dot`) must be
killed and reaped when the task that asked is cancelled or gives up on a
timeout. Done separately at each call site, one forgotten `wait()` leaves a
zombie or a stray process running after the agent stopped.

Package transactions are not asked this way: they are never cut in half
(see `resources/pkg.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Answer:
    """What a finished child said: its exit status and both outputs."""

    code: int
    out: bytes
    err: bytes


async def ask(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Answer:
    """Run `argv` (no shell) to the end and return what it said.

    Raises OSError when it cannot start (FileNotFoundError: not installed)
    and TimeoutError after `timeout` seconds. On a timeout or a
    cancellation the child is killed and reaped before this returns.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())  # reaped, even while being cancelled
    assert proc.returncode is not None
    return Answer(proc.returncode, out, err)
