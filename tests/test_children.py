"""pymgmt.children: a helper program is killed and reaped when its asker gives up."""

from __future__ import annotations

import asyncio
import os

import pytest

from pymgmt import children


def _gone(pid: int) -> bool:
    """True once `pid` is neither running nor a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] == "X"
    except FileNotFoundError:
        return True


def _my_children() -> set[int]:
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids.update(int(p) for p in f.read().split())
    return pids


async def _first_new_child(before: set[int]) -> int:
    """The pid of the child started after `before` was taken, seen while it runs."""
    async with asyncio.timeout(30):
        while not (new := _my_children() - before):  # noqa: ASYNC110 - /proc has no event
            await asyncio.sleep(0.005)
    return new.pop()


def test_the_answer_has_the_status_and_both_outputs() -> None:
    argv = ["sh", "-c", "cat; echo oops >&2; exit 3"]
    answer = asyncio.run(children.ask(argv, stdin=b"hello"))
    assert answer == children.Answer(3, b"hello", b"oops\n")


def test_a_missing_program_is_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        asyncio.run(children.ask(["/nonexistent/pymgmt-no-such-program"]))


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_child_is_killed_and_reaped_on_timeout_or_cancel(how: str) -> None:
    async def main() -> int:
        before = _my_children()
        task = asyncio.create_task(
            children.ask(["sleep", "600"], timeout=2 if how == "timeout" else None)
        )
        pid = await _first_new_child(before)
        if how == "cancel":
            task.cancel()
        with pytest.raises(TimeoutError if how == "timeout" else asyncio.CancelledError):
            await task
        return pid

    pid = asyncio.run(main())
    assert _gone(pid), f"pid {pid} was left behind"
