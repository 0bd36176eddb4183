"""Services with a lifecycle: start, then ready, then close.

An embedded etcd, its client, the inotify hub and (later) SSH tunnels all
need the same three steps: start in the background, tell the starter when
they can be used (or why they cannot), and clean up when cancelled. One
helper does it for all of them, after trio's ``nursery.start`` and
``task_status.started()``, instead of a future per component.

A service is an async function taking a `TaskStatus`::

    async def run(task_status: TaskStatus[str]) -> None:
        proc = await spawn()
        try:
            await wait_healthy(proc)
            task_status.started(proc.url)   # start() returns this value
            await proc.wait()               # runs until cancelled
        finally:
            await stop(proc)                # cancelled: clean up here

    url = await start(tg, run, name="etcd")

`start` returns once the service called ``started``; if the service raised
before that, `start` raises the same exception (and the task group does not
see it); after that, a failure is the task group's as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class TaskStatus(Generic[T]):
    """Handed to a service: call `started` once it is ready for use."""

    def __init__(self) -> None:
        self._ready: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def started(self, value: T = None) -> None:  # type: ignore[assignment]
        if self._ready.done():
            raise RuntimeError("started() called twice")
        self._ready.set_result(value)

    @property
    def is_started(self) -> bool:
        return self._ready.done()


ServiceFn = Callable[[TaskStatus[T]], Coroutine[Any, Any, None]]


class ServiceExited(RuntimeError):
    """The service returned before it said it was ready."""


async def start(tg: asyncio.TaskGroup, fn: ServiceFn[T], *, name: str) -> T:
    """Run `fn` as a task of `tg`; return the value it passes to ``started``.

    Cancelling the caller while it waits cancels the service too.
    """
    status: TaskStatus[T] = TaskStatus()
    failure: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        try:
            await fn(status)
        except BaseException as e:
            if status.is_started:
                raise  # the task group's problem from now on
            if not failure.done():
                failure.set_result(e)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        if not status.is_started and not failure.done():
            failure.set_result(ServiceExited(f"{name} exited before it was ready"))

    task = tg.create_task(body(), name=name)
    try:
        waits: list[asyncio.Future[Any]] = [status._ready, failure]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.wait([task])
        raise
    if status._ready.done():
        return status._ready.result()
    err = failure.result()
    assert err is not None
    await asyncio.wait([task])
    raise err


__all__ = ["ServiceExited", "ServiceFn", "TaskStatus", "start"]
