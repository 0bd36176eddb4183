"""The fast path's check and `File.check` call the very same files converged.

Each case builds a real file system state, then asks both: the file
resource's own check (in-process, as the engine would) and
`oneshot.apply.look` on a plan holding the entry a full run would store
for that resource (`plan._want`): converged when it finds nothing to
change. The fast path may only ever say "converged" where `File.check`
says so too; and where the check says converged, it
must too, or it would never answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import resource_context, run_async

from pymgmt.errors import ResourceError
from pymgmt.oneshot.apply import look
from pymgmt.oneshot.plan import Plan, _want
from pymgmt.resources.file import File

NOBODY = 65534

#: (id, the resource's params with {t} for the test's directory, what to set up)
CASES: list[tuple[str, dict[str, Any], Callable[[Path], object]]] = [
    ("as-wanted", {"content": "x\n", "mode": "0640"}, lambda t: _file(t / "f", b"x\n", 0o640)),
    ("missing", {"content": "x\n"}, lambda t: None),
    ("other-content", {"content": "x\n"}, lambda t: _file(t / "f", b"y\n")),
    ("longer", {"content": "x\n"}, lambda t: _file(t / "f", b"x\nx\n")),
    ("other-mode", {"mode": "0600"}, lambda t: _file(t / "f", b"", 0o644)),
    ("mode-only", {"mode": "0644"}, lambda t: _file(t / "f", b"anything", 0o644)),
    ("owner-ok", {"owner": "root", "group": "0"}, lambda t: _file(t / "f", b"")),
    ("other-owner", {"owner": "root"}, lambda t: _chowned(_file(t / "f", b""))),
    ("unknown-user", {"owner": "no-such-user-here"}, lambda t: _file(t / "f", b"")),
    ("a-directory", {"content": "x"}, lambda t: (t / "f").mkdir()),
    ("a-symlink", {"content": "x"}, lambda t: _symlink(t)),
    ("a-fifo", {}, lambda t: os.mkfifo(t / "f")),
    ("absent-ok", {"state": "absent"}, lambda t: None),
    ("absent-not", {"state": "absent"}, lambda t: _file(t / "f", b"")),
    ("absent-link", {"state": "absent"}, lambda t: _symlink(t)),
    ("no-parent", {"content": "x"}, lambda t: "no-parent"),
    ("dir-ok", {"path": "{t}/d/", "mode": "0755"}, lambda t: _dir(t / "d", 0o755)),
    ("dir-mode", {"path": "{t}/d/", "mode": "0700"}, lambda t: _dir(t / "d", 0o755)),
    ("dir-is-file", {"path": "{t}/d/"}, lambda t: _file(t / "d", b"")),
    ("big", {"content": "z" * 200_000}, lambda t: _file(t / "f", b"z" * 200_000)),
    ("big-other", {"content": "z" * 200_000}, lambda t: _file(t / "f", b"z" * 199_999 + b"y")),
]


def _file(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _dir(path: Path, mode: int) -> None:
    path.mkdir()
    os.chmod(path, mode)


def _chowned(path: Path) -> None:
    os.chown(path, NOBODY, NOBODY)


def _symlink(t: Path) -> None:
    _file(t / "real", b"x")
    (t / "f").symlink_to(t / "real")


async def _file_check(res: File, tmp_path: Path) -> bool | None:
    """True: converged; False: a change to make; None: an error."""
    await res.init(resource_context(tmp_path))
    try:
        return not (await res.check()).changes
    except (ResourceError, OSError):
        return None


@pytest.mark.parametrize(("params", "setup"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_both_checks_agree(
    tmp_path: Path, params: dict[str, Any], setup: Callable[[Path], object]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    params = {k: v.format(t=work) if k == "path" else v for k, v in params.items()}
    params.setdefault("path", str(work / "f"))
    if setup(work) == "no-parent":
        params["path"] = str(work / "missing" / "f")
    res = File(name="f", **params)
    verdict = run_async(_file_check(res, tmp_path))
    plan = Plan("g", "g.yaml", 1, 0, [])
    plan.files, plan.names, plan.after = [_want(res)], ["File[f]"], [()]
    assert (look(plan) == {}) == (verdict is True), verdict
