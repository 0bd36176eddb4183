"""How a batch of `pymgmt.batch` syncs its files, and how big it may be (issue 13).

Each case runs in a fresh interpreter (`python -c`), so that what a batch
imports and the descriptor limit it sees are its own: real files, a real
filesystem, real resource limits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Writes N files through one batch (one thread, as the one-shot fast path
#: does) into DIR, then prints whether libc's syncfs was bound (through
#: `_ctypes`, ctypes' C half), whether the `ctypes` package was imported,
#: and how many jobs failed.
_BATCH = """
import os, sys, json
from pymgmt.batch import Job, write_batch
where, n = sys.argv[1], int(sys.argv[2])
def job(i):
    def fn(staging):
        dfd = os.open(where, os.O_PATH | os.O_DIRECTORY)
        try:
            staging.write_at(dfd, f"f{i}", b"%d\\n" % i, 0o644, None, None)
        finally:
            os.close(dfd)
    return Job(fn)
jobs = [job(i) for i in range(n)]
write_batch(jobs, threads=1)
print(json.dumps({"libc": "_ctypes" in sys.modules, "ctypes": "ctypes" in sys.modules,
                  "failed": [str(j.error) for j in jobs if j.error is not None]}))
"""


def _python(script: str, *args: object) -> str:
    """What `script` prints, run by a fresh interpreter with `args`."""
    argv = [sys.executable, "-c", script, *map(str, args)]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _batch(where: Path, n: int) -> dict[str, object]:
    return dict(json.loads(_python(_BATCH, where, n)))


def _syncfs_filesystem(path: Path) -> bool:
    """Whether `path` is on ext2/3/4, xfs or btrfs (where big batches use syncfs)."""
    out = subprocess.run(
        ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True
    ).stdout.strip()
    return out in ("ext2/ext3", "ext4", "xfs", "btrfs")


def test_a_batch_of_two_files_or_more_syncs_its_filesystem_once(tmp_path):
    """One syncfs beats even 10 fsyncs from threads (bench/sync_modes.py)."""
    if not _syncfs_filesystem(tmp_path):
        pytest.skip("the temporary directory is not on ext4, xfs or btrfs")
    for n in (2, 10):
        where = tmp_path / str(n)
        where.mkdir()
        # syncfs, through libc, without the ctypes package (3-4 ms of a 10-file run)
        assert _batch(where, n) == {"libc": True, "ctypes": False, "failed": []}
        assert all((where / f"f{i}").read_bytes() == b"%d\n" % i for i in range(n))


def test_a_lone_file_is_fsynced_without_ctypes(tmp_path):
    assert _batch(tmp_path, 1) == {"libc": False, "ctypes": False, "failed": []}
    assert (tmp_path / "f0").read_bytes() == b"0\n"


_LIMIT = """
import resource, sys
from pymgmt.batch import batch_cap, raise_fd_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
before = batch_cap()
raise_fd_limit()
print(before, batch_cap(), *resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def _limits(soft: int, hard: int) -> list[int]:
    return [int(x) for x in _python(_LIMIT, soft, hard).split()]


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one_for_bigger_batches():
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard descriptor limit is {hard}")
    # soft 256: batches of 64; raised to 4,096: batches of 1,024
    assert _limits(256, 4096) == [64, 1024, 4096, 4096]


def test_the_descriptor_limit_is_never_lowered():
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard descriptor limit is {hard}")
    assert _limits(4096, 4096) == [1024, 1024, 4096, 4096]
    assert _limits(64, 64) == [16, 16, 64, 64]


_ERRNO = """
import errno, os, sys
from pymgmt import batch
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
print(batch._syncfs_ok(fd))
os.close(fd)
try:
    batch._syncfs(fd)  # closed: EBADF, as syncfs(2) says it
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def test_syncfs_reports_its_errors_with_their_errno(tmp_path):
    """The binding keeps errno (a failed syncfs makes the batch fsync file by file)."""
    if not _syncfs_filesystem(tmp_path):
        pytest.skip("the temporary directory is not on ext4, xfs or btrfs")
    assert _python(_ERRNO, tmp_path).split() == ["True", "EBADF"]
