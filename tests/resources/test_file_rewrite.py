"""Rewriting a file keeps what the graph does not manage (issue 8, item 14), off the loop.

Owner, group, mode, extended attributes and the POSIX ACL belong to whoever
set them; a content-only resource replaces the bytes and nothing else.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
import threading
from pathlib import Path

import pytest
from helpers import graph_doc, resource_context, run_async, run_once, write_graph

from pymgmt.resources.file import File

NOBODY = 65534
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_MASK, _ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_UNDEFINED = 0xFFFFFFFF

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")


def _acl(*entries: tuple[int, int, int]) -> bytes:
    """The kernel's system.posix_acl_access format: a version, then (tag, perm, id)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


#: user::rw-, user:1234:---, group::r--, mask::r--, other::r--  -- a "deny" for uid 1234
ACL = _acl(
    (_ACL_USER_OBJ, 6, _UNDEFINED),
    (_ACL_USER, 0, 1234),
    (_ACL_GROUP_OBJ, 4, _UNDEFINED),
    (_ACL_MASK, 4, _UNDEFINED),
    (_ACL_OTHER, 4, _UNDEFINED),
)


def _run(tmp_path: Path, res: dict[str, object]) -> None:
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("rewrite", files=[res]))
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr


def test_a_content_rewrite_keeps_owner_group_mode_xattrs_and_acl(tmp_path):
    path = tmp_path / "app.conf"
    path.write_text("old\n")
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o640)
    os.setxattr(path, "user.origin", b"made by nobody")
    os.setxattr(path, "system.posix_acl_access", ACL)
    mode_with_acl = stat.S_IMODE(os.stat(path).st_mode)
    old_inode = os.stat(path).st_ino

    _run(tmp_path, {"name": "conf", "path": str(path), "content": "new\n"})

    st = os.stat(path)
    assert st.st_ino != old_inode, "the content must have been replaced (atomically)"
    assert path.read_text() == "new\n"
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert stat.S_IMODE(st.st_mode) == mode_with_acl
    assert os.getxattr(path, "user.origin") == b"made by nobody"
    assert os.getxattr(path, "system.posix_acl_access") == ACL


def test_managed_owner_and_mode_win_over_the_old_ones(tmp_path):
    path = tmp_path / "app.conf"
    path.write_text("old\n")
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o666)
    os.setxattr(path, "user.origin", b"kept")

    _run(
        tmp_path,
        {"name": "conf", "path": str(path), "content": "new\n", "owner": "0", "mode": "0600"},
    )

    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, NOBODY, 0o600)
    assert os.getxattr(path, "user.origin") == b"kept"


def test_file_capabilities_are_not_carried_over_to_new_content(tmp_path):
    """As the kernel does on any write: privileges of old code never pass to new content."""
    path = tmp_path / "tool"
    path.write_text("#!/bin/sh\n")
    # VFS_CAP_REVISION_2 with CAP_NET_RAW (bit 13) permitted
    os.setxattr(path, "security.capability", struct.pack("<IIIII", 0x02000000, 1 << 13, 0, 0, 0))
    os.setxattr(path, "user.origin", b"kept")

    _run(tmp_path, {"name": "tool", "path": str(path), "content": "#!/bin/sh\necho new\n"})

    assert "security.capability" not in os.listxattr(path)
    assert os.getxattr(path, "user.origin") == b"kept"


# -- the event loop never blocks on a write (issue 8, item 16) ---------------------------------

_opened_in: list[tuple[str, str]] = []
_recording = threading.Event()


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _recording.is_set() and event == "open" and ".pymgmt-tmp" in str(args[0]):
        _opened_in.append((str(args[0]), threading.current_thread().name))


sys.addaudithook(_audit)


def test_a_durable_write_runs_outside_the_event_loop_thread(tmp_path):
    path = tmp_path / "small.conf"
    path.write_text("old\n")
    res = File(name="conf", path=str(path), content="new\n")
    ctx = resource_context(tmp_path)

    async def converge() -> str:
        await res.init(ctx)
        await res.apply(await res.check())
        return threading.current_thread().name

    _opened_in.clear()
    _recording.set()
    try:
        loop_thread = run_async(converge())
    finally:
        _recording.clear()
    assert path.read_text() == "new\n"
    assert _opened_in, "the write's temporary file was never opened"
    assert all(thread != loop_thread for _, thread in _opened_in), _opened_in


# -- names at the kernel's limit (review finding 9) --------------------------------------------


def test_a_file_whose_name_is_255_bytes_long_can_be_written_and_rewritten(tmp_path):
    """The temporary name must not grow with the target's: 255 bytes is a valid name."""
    name = "n" * 251 + ".txt"
    assert len(name.encode()) == 255
    target = tmp_path / name
    _run(tmp_path, {"name": "long", "path": str(target), "content": "first\n"})
    assert target.read_text() == "first\n"
    _run(tmp_path, {"name": "long", "path": str(target), "content": "second\n"})
    assert target.read_text() == "second\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "graph.yaml", "state"])
