"""Durable writes in batches: many files made durable by one sync (issue 13).

A durable file write (`pymgmt.fsutil.atomic_write_at`) fsyncs the new file
before renaming it over the old one, then fsyncs the directory. Each fsync
waits for a journal commit and a disk cache flush of its own, so a first
apply of 1,000 files spent two thirds of its time there (py-spy, issue 13),
one file after another. The guarantee does not need one commit per file,
only that each file is durable before it replaces the old one. So the
engine offers resources a `DurableWrites` service (``ctx.durable``) that
runs the writes of every apply in flight as one batch, in one thread:

1. **stage**: each job of the batch runs (a resource's apply, off the event
   loop); its writes create and fill their temporary files exactly as
   `atomic_write_at` does (final mode and owner before the first byte), but
   do not sync them yet;
2. **sync**: every staged file is made durable at once: on ext4, xfs and
   btrfs one ``syncfs(2)`` per filesystem, which writes back the dirty files
   and commits the journal once; elsewhere (or when syncfs fails, to charge
   the error to the file it belongs to) an fsync of each file, issued from
   several threads so that the filesystem merges them into few commits;
3. **install**: each temporary file is renamed over its target;
4. **directories**: each directory a job changed is fsynced once;
5. every job's awaiter is woken: an apply returns once its change is durable.

A kill -9 or a crash at any moment leaves each file with its old content or
its new one: nothing is renamed before it is durable, and a temporary file
left behind has a fixed name that the next write replaces. A job that fails
(while staging, or its own file's sync or rename) fails alone: its
temporary file is removed and the others of the batch go on.

Batches form by group commit: jobs queue while a batch is written, and the
next batch takes everything queued. A batch opened while idle first lets the
event loop run until an iteration adds no job (every apply already under
way has joined), or `GATHER` seconds, whichever is first; a lone repair
therefore waits one loop iteration, not a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .batch import Job, Staging, batch_cap, write_batch

T = TypeVar("T")

#: The longest a batch opened while idle waits for more jobs to join (s).
GATHER = 0.005


class _Job(Job, Generic[T]):
    """One resource's apply in a batch, and who waits for it."""

    def __init__(self, fn: Callable[[Staging], T], future: asyncio.Future[T]) -> None:
        super().__init__(fn)
        self.future = future

    def resolve(self) -> None:
        """Hand the outcome to the awaiter (in the event loop's thread)."""
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


class DurableWrites:
    """Batches the durable writes of every apply in flight; see the module docstring."""

    def __init__(self, gather: float = GATHER) -> None:
        self._gather = gather
        self._queue: list[_Job[Any]] = []
        self._driver: asyncio.Task[None] | None = None
        # Every staged file holds an fd until the sync: stay well below the
        # process's limit, whatever else is open.
        self._cap = batch_cap()
        #: batches written and jobs run so far (tests and metrics read them)
        self.batches = 0
        self.jobs = 0

    async def run(self, fn: Callable[[Staging], T]) -> T:
        """Run `fn` in the next batch; return once its writes are durable.

        `fn` runs in a thread, never on the event loop. A caller cancelled
        while its job is still queued drops the job (nothing was done); once
        the batch has taken it, the caller waits for the batch to end (a
        durable write is never cut in half) and then the cancellation goes on.
        """
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(fn, loop.create_future())
        self._queue.append(job)
        if self._driver is None:
            self._driver = loop.create_task(self._drive(), name="pymgmt-durable-writes")
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:
            if job in self._queue:
                self._queue.remove(job)
                job.future.cancel()
            else:
                await asyncio.wait({job.future})
                if not job.future.cancelled():
                    job.future.exception()  # retrieved: its caller is gone
            raise

    async def _drive(self) -> None:
        """Write batch after batch while jobs are queued."""
        try:
            while self._queue:
                await self._settle()
                jobs, self._queue = self._queue[: self._cap], self._queue[self._cap :]
                if jobs:  # (empty if every caller was cancelled meanwhile)
                    await self._write(jobs)
        finally:
            self._driver = None
            for job in self._queue:  # only at loop teardown: nobody may wait for ever
                job.future.cancel()
            self._queue.clear()

    async def _settle(self) -> None:
        """Let the applies under way join while each loop iteration adds some."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._gather
        seen = 0
        while len(self._queue) > seen and len(self._queue) < self._cap:
            if loop.time() >= deadline:
                return
            seen = len(self._queue)
            await asyncio.sleep(0)

    async def _write(self, jobs: list[_Job[Any]]) -> None:
        self.batches += 1
        self.jobs += len(jobs)
        work = asyncio.ensure_future(asyncio.to_thread(write_batch, list[Job](jobs)))
        try:
            await asyncio.wait({work})  # unlike awaiting it, a cancellation leaves it running
        finally:
            if not work.done():  # cancelled (loop teardown): the writes still finish
                await asyncio.wait({work})
            broken = None if work.cancelled() else work.exception()
            for job in jobs:
                if broken is not None:  # our bug: nobody may believe a write is durable
                    job.fail(broken)
                job.resolve()


__all__ = ["GATHER", "DurableWrites", "Staging", "write_batch"]
