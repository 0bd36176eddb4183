"""The start → ready → close helper every long-lived component uses."""

from __future__ import annotations

import asyncio

import pytest

from pymgmt.service import ServiceExited, TaskStatus, start


async def _ready_then_wait(log: list[str], task_status: TaskStatus[str]) -> None:
    log.append("starting")
    task_status.started("url")
    try:
        await asyncio.Event().wait()
    finally:
        log.append("closed")


def test_start_returns_the_started_value_and_cancel_closes() -> None:
    log: list[str] = []

    async def main() -> str:
        async with asyncio.TaskGroup() as tg:
            value = await start(tg, lambda s: _ready_then_wait(log, s), name="svc")
            assert log == ["starting"]
            for t in asyncio.all_tasks():
                if t.get_name() == "svc":
                    t.cancel()
        return value

    assert asyncio.run(main()) == "url"
    assert log == ["starting", "closed"]


def test_a_failure_before_ready_is_raised_by_start_not_the_group() -> None:
    async def broken(task_status: TaskStatus[None]) -> None:
        raise OSError("port 2379 is in use")

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            with pytest.raises(OSError, match="2379"):
                await start(tg, broken, name="svc")

    asyncio.run(main())


def test_returning_before_ready_is_an_error() -> None:
    async def quits(task_status: TaskStatus[None]) -> None:
        return

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            with pytest.raises(ServiceExited, match="svc exited before it was ready"):
                await start(tg, quits, name="svc")

    asyncio.run(main())


def test_a_failure_after_ready_is_the_groups() -> None:
    async def dies(task_status: TaskStatus[None]) -> None:
        task_status.started()
        await asyncio.sleep(0)
        raise RuntimeError("crashed later")

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            await start(tg, dies, name="svc")

    with pytest.raises(ExceptionGroup) as ei:
        asyncio.run(main())
    assert ei.group_contains(RuntimeError, match="crashed later")


def test_cancelling_the_starter_cancels_the_service() -> None:
    log: list[str] = []

    async def slow(task_status: TaskStatus[None]) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            log.append("closed")

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            starter = tg.create_task(start(tg, slow, name="svc"))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            starter.cancel()

    asyncio.run(main())
    assert log == ["closed"]
