"""The remote agent's side of remote execution: its line to the initiator, and its run directory.

An agent started by ``--remote`` (``pymgmt run --remote-child DIR ...``)
reads its stdin, which is the initiator's SSH session:

* ``converged``: the whole cluster has been converged for the timeout; stop
  as a converged run-once run does (exit 0/2/4/6, not "interrupted");
* ``stop SIGNAL``: the initiator was stopped by SIGNAL; stop as if we got it;
* the end of stdin without a word: the initiator is gone (killed, its
  connection lost). Stop at once, as for SIGHUP; the etcd behind the tunnel
  is gone too, so a graceful stop may hang on it: after `GONE_GRACE`
  seconds the process exits regardless. No orphan is left on the host.

At exit the agent removes its run directory (the graph files, and with
``--no-caching`` the bundle): the initiator removes it too, but cannot if it
was killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from ..engine.converger import Converger

log = logging.getLogger("pymgmt.remote")

#: seconds an orphaned agent has to stop gracefully before it just exits
GONE_GRACE = 5.0
#: the prefix of the run directories the initiator's probe makes (mkdtemp)
RUN_DIR_PREFIX = "pymgmt-run-"


class ParentLink:
    """Reads the initiator's words on stdin (see the module docstring)."""

    def __init__(
        self, interrupt: Callable[[signal.Signals, str], None], run_dir: Path | None = None
    ) -> None:
        self.interrupt = interrupt
        self.run_dir = run_dir
        #: the initiator said the whole cluster converged
        self.converged = asyncio.Event()

    async def wait_converged(self, converger: Converger, timeout: float) -> None:
        """The Engine's ``converged_wait``: the initiator decides, for the whole cluster."""
        await self.converged.wait()

    async def run(self) -> None:
        """Follow stdin until its end; runs until cancelled or the end."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
        try:
            while line := await reader.readline():
                self.heard(line.decode(errors="replace").strip())
        finally:
            transport.close()
        self.gone()

    def heard(self, word: str) -> None:
        if word == "converged":
            self.converged.set()
        elif word.startswith("stop "):
            name = word.removeprefix("stop ")
            sig = getattr(signal.Signals, name, signal.SIGTERM)
            self.interrupt(sig, f"the initiator was stopped by {sig.name}")
        elif word:
            log.warning("remote: the initiator said %r, which this agent does not know", word)

    def gone(self) -> None:
        """stdin ended without a word: stop, and make sure the process ends."""
        if self.converged.is_set():
            return  # the stop under way ends the process
        self.interrupt(signal.SIGHUP, "the initiator is gone (its SSH session closed)")
        timer = threading.Timer(GONE_GRACE, self._exit_now)
        timer.daemon = True
        timer.start()

    def _exit_now(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"pymgmt: still stopping {GONE_GRACE:g} s after the initiator "
                             "went away: exiting now\n")  # fmt: skip
            sys.stderr.flush()
        remove_run_dir(self.run_dir)
        os._exit(128 + signal.SIGHUP)


def remove_run_dir(run_dir: Path | None) -> None:
    """Remove the run directory the initiator made for this agent, if it is one.

    Only a real directory (not a symlink) named like the probe's, owned by
    this user: the path comes from the command line, and this may be root.
    """
    if run_dir is None:
        return
    try:
        st = os.lstat(run_dir)
    except OSError:
        return
    if (
        not stat.S_ISDIR(st.st_mode)
        or st.st_uid != os.geteuid()
        or not run_dir.name.startswith(RUN_DIR_PREFIX)
    ):
        log.warning("remote: %s is not a run directory of this agent: left alone", run_dir)
        return
    shutil.rmtree(run_dir, ignore_errors=True)  # fd-based walk: never follows a symlink


__all__ = ["GONE_GRACE", "ParentLink", "remove_run_dir"]
