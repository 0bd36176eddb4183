"""Helpers for the frontend tests: run the real CLI, and photograph a directory."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

#: Runs `pymgmt ARGS...` as a child process: the CLI exactly as a user runs it.
_CLI = [sys.executable, "-c", "import sys; from pymgmt.cli.main import main; sys.exit(main())"]

Runner = Callable[..., list[subprocess.CompletedProcess[str]]]


def _run_all(*argvs: Sequence[str], timeout: float = 30) -> list[subprocess.CompletedProcess[str]]:
    """Start every command at once, then wait for each: the corpus stays fast.

    Every child is waited for (or killed and waited for), so none outlives the test.
    """
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    procs = [
        (
            argv,
            subprocess.Popen(
                [*_CLI, *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            ),
        )
        for argv in argvs
    ]
    results = []
    for argv, p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except BaseException:
            for _, q in procs:
                if q.poll() is None:
                    q.kill()
                q.communicate()
            raise
        results.append(subprocess.CompletedProcess([*_CLI, *argv], p.returncode, out, err))
    return results


@pytest.fixture
def pymgmt() -> Runner:
    """`pymgmt(["validate", f], ["run", ...])` runs the commands in parallel."""
    return _run_all


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | str | None]]:
    """Every path under `root` with its type, mode and content (or link target)."""
    out: dict[str, tuple[str, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath, name)
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


@pytest.fixture
def tree() -> Callable[[Path], dict[str, tuple[str, int, bytes | str | None]]]:
    """`tree(path)`: a comparable photograph of a directory (see `snapshot`)."""
    return snapshot
