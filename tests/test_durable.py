"""Batched durable writes (issue 13): the applies in flight share one batch, each fails alone.

Real files in a temporary directory, a real event loop and real threads;
the batcher's own counters tell how many batches ran.
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from pathlib import Path

import pytest
from helpers import resource_context, run_async

from pymgmt.durable import DurableWrites, Staging
from pymgmt.fsutil import opened_dir, temp_name
from pymgmt.resources.file import File


def _write(path: Path, data: bytes, mode: int = 0o640, *, replace: bool = True):
    """A job writing `data` to `path` through the batch, as a resource's apply does."""

    def job(staging: Staging) -> str:
        with opened_dir(str(path.parent)) as dfd:
            staging.write_at(dfd, path.name, data, mode, None, None, replace=replace)
        return path.name

    return job


def _temps(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".pymgmt-tmp-"))


def test_file_applies_in_flight_share_one_batch(tmp_path):
    durable = DurableWrites()
    ctx = resource_context(tmp_path)
    ctx.durable = durable
    dirs = [tmp_path / f"d{i}" for i in range(3)]
    for d in dirs:
        d.mkdir()
    files = [
        File(name=f"f{i}", path=str(dirs[i % 3] / f"f{i}"), content=f"file {i}\n", mode="0604")
        for i in range(60)
    ]

    async def converge() -> None:
        for f in files:
            await f.init(ctx)
        plans = [await f.check() for f in files]
        await asyncio.gather(*(f.apply(p) for f, p in zip(files, plans, strict=True)))

    run_async(converge())
    assert (durable.batches, durable.jobs) == (1, 60)
    for i, f in enumerate(files):
        path = Path(f.path)
        assert path.read_text() == f"file {i}\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert not [t for d in dirs for t in _temps(d)]


def test_a_failing_job_fails_alone_and_leaves_no_temporary_file(tmp_path):
    durable = DurableWrites()

    def bad(staging: Staging) -> str:
        _write(tmp_path / "bad", b"never installed\n")(staging)
        raise OSError(28, "No space left on device (said by the test)")

    async def batch() -> list[object]:
        jobs = [_write(tmp_path / f"ok{i}", b"ok\n") for i in range(5)]
        jobs.insert(2, bad)
        return await asyncio.gather(*(durable.run(j) for j in jobs), return_exceptions=True)

    results = run_async(batch())
    assert durable.batches == 1
    assert isinstance(results[2], OSError) and "said by the test" in str(results[2])
    assert [r for i, r in enumerate(results) if i != 2] == [f"ok{i}" for i in range(5)]
    assert not (tmp_path / "bad").exists()
    assert all((tmp_path / f"ok{i}").read_bytes() == b"ok\n" for i in range(5))
    assert _temps(tmp_path) == []


def test_a_job_whose_rename_fails_fails_alone(tmp_path):
    """replace=False keeps a file that is already there: that job fails, the others go on."""
    durable = DurableWrites()
    (tmp_path / "kept").write_bytes(b"mine\n")

    async def batch() -> list[object]:
        jobs = [
            _write(tmp_path / "new", b"new\n"),
            _write(tmp_path / "kept", b"theirs\n", replace=False),
            _write(tmp_path / "made", b"made\n", replace=False),
        ]
        return await asyncio.gather(*(durable.run(j) for j in jobs), return_exceptions=True)

    first, second, third = run_async(batch())
    assert (first, third) == ("new", "made")
    assert isinstance(second, FileExistsError)
    assert (tmp_path / "kept").read_bytes() == b"mine\n"
    assert (tmp_path / "made").read_bytes() == b"made\n"
    assert _temps(tmp_path) == []


def test_a_stale_temporary_file_is_replaced_by_the_next_write(tmp_path):
    """A kill -9 between staging and rename leaves the fixed temporary name behind."""
    target = tmp_path / "conf"
    target.write_bytes(b"old\n")
    (tmp_path / temp_name("conf")).write_bytes(b"half a wri")
    run_async(DurableWrites().run(_write(target, b"new\n")))
    assert target.read_bytes() == b"new\n"
    assert _temps(tmp_path) == []


def test_the_write_is_in_place_with_its_mode_when_the_apply_returns(tmp_path):
    target = tmp_path / "conf"

    async def write_then_look() -> tuple[bytes, int]:
        await DurableWrites().run(_write(target, b"content\n", 0o600))
        return target.read_bytes(), stat.S_IMODE(target.stat().st_mode)

    assert run_async(write_then_look()) == (b"content\n", 0o600)


def test_a_caller_cancelled_while_queued_writes_nothing(tmp_path):
    target = tmp_path / "conf"

    async def cancel_at_once() -> None:
        task = asyncio.create_task(DurableWrites().run(_write(target, b"x\n")))
        await asyncio.sleep(0)  # queued; the batch still gathers
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_async(cancel_at_once())
    assert not target.exists()
    assert _temps(tmp_path) == []


def test_a_caller_cancelled_mid_batch_waits_for_its_write_to_be_durable(tmp_path):
    """A durable write is never cut in half: the cancellation goes on once it is done."""
    target = tmp_path / "conf"
    started, release = threading.Event(), threading.Event()
    seen_at_cancel: list[bool] = []

    def slow(staging: Staging) -> str:
        started.set()
        release.wait(30)
        return _write(target, b"whole\n")(staging)

    async def cancel_mid_write() -> None:
        task = asyncio.create_task(DurableWrites().run(slow))
        await asyncio.to_thread(started.wait, 30)
        task.cancel()
        await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        seen_at_cancel.append(target.exists())

    run_async(cancel_mid_write())
    assert seen_at_cancel == [True]
    assert target.read_bytes() == b"whole\n"


def test_directory_changes_of_a_job_are_made_durable_with_the_batch(tmp_path):
    """sync_dir: a mkdir or an unlink made by a job, fsynced once for the batch."""

    def mkdir(name: str):
        def job(staging: Staging) -> None:
            with opened_dir(str(tmp_path)) as dfd:
                os.mkdir(name, 0o750, dir_fd=dfd)
                staging.sync_dir(dfd)

        return job

    async def batch() -> None:
        durable = DurableWrites()
        await asyncio.gather(*(durable.run(mkdir(f"sub{i}")) for i in range(4)))
        assert durable.batches == 1

    run_async(batch())
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"sub{i}" for i in range(4)]


def test_a_batch_on_a_filesystem_without_syncfs_is_written_file_by_file():
    """tmpfs is not among the syncfs filesystems: each file is fsynced instead."""
    import tempfile

    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm")
    with tempfile.TemporaryDirectory(dir=shm) as d:
        where = Path(d)

        async def batch() -> list[str]:
            durable = DurableWrites()
            jobs = [_write(where / f"f{i}", b"%d\n" % i) for i in range(20)]
            return await asyncio.gather(*(durable.run(j) for j in jobs))

        assert run_async(batch()) == [f"f{i}" for i in range(20)]
        assert all((where / f"f{i}").read_bytes() == b"%d\n" % i for i in range(20))
        assert _temps(where) == []
