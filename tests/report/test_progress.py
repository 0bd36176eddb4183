"""Progress (issue 12): long applies are said while they run; a live status line.

`Progress` is driven here by the events the engine emits, on a real event
loop with its real timers, with intervals shortened (the CLI tests run the
real ones against a real agent). Each step waits on the condition it
expects, with a deadline.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re

from helpers import run_async, until

from pymgmt.report.events import Applying, Checked, Failed, GraphStarted, GraphSwapped, Settled
from pymgmt.report.logs import Output
from pymgmt.report.progress import Progress

DATE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d "


def _lines(out: io.StringIO) -> list[str]:
    return [re.sub(DATE, "", x) for x in out.getvalue().splitlines()]


def _done(vertex: str) -> Checked:
    return Checked(vertex, "start", [], True, False, False, 0.0)


def test_a_package_transaction_is_announced_as_it_begins() -> None:
    out = io.StringIO()
    progress = Progress(Output(out, journal=False), announce_after=60, every=60)

    async def main() -> None:
        progress.emit(GraphStarted("g", "test", 1, 0))
        progress.emit(Applying("Pkg[cowsay]", "start", ["state"]))
        assert _lines(out) == ["INFO  Pkg[cowsay]: applying state (a package transaction)"]
        progress.emit(_done("Pkg[cowsay]"))
        progress.close()

    run_async(main())


def test_another_apply_is_announced_once_it_runs_long_then_every_interval() -> None:
    out = io.StringIO()
    progress = Progress(Output(out, journal=False), announce_after=0.05, every=0.2)

    async def main() -> None:
        progress.emit(GraphStarted("g", "test", 2, 0))
        progress.emit(Applying("Exec[quick]", "start", ["run"]))
        progress.emit(Applying("Exec[build]", "start", ["run"]))
        progress.emit(_done("Exec[quick]"))  # done before its time: never announced
        assert _lines(out) == []
        await until(lambda: len(_lines(out)) >= 1, "the announcement")
        assert _lines(out) == ["INFO  Exec[build]: applying run (running for 0 s)"]
        await until(lambda: len(_lines(out)) >= 3, "two 'still running' lines")
        assert _lines(out)[1:3] == [
            "INFO  Exec[build]: still running: applying for 0.2 s",
            "INFO  Exec[build]: still running: applying for 0.4 s",
        ]
        progress.emit(Failed("Exec[build]", "apply", "exit status 1"))
        said = len(_lines(out))
        await asyncio.sleep(0.5)  # several intervals: nothing more may come
        assert len(_lines(out)) == said
        assert progress._timer is None  # an idle agent wakes for nothing
        progress.close()

    run_async(main())


def test_the_live_status_counts_checked_applying_pending_and_failed() -> None:
    out = io.StringIO()
    output = Output(out, journal=False, live=True)
    progress = Progress(output, announce_after=60, every=60, status_after=0.05)

    async def main() -> None:
        progress.emit(GraphStarted("g", "test", 4, 0))
        progress.emit(Applying("Exec[a]", "start", ["run"]))
        progress.emit(Failed("File[b]", "check", "no such user"))
        progress.emit(_done("File[c]"))
        await until(lambda: output.status_shown, "the status line")
        assert output.status_text == (
            "pymgmt: 2/4 checked, 1 applying (Exec[a] 0 s), 1 pending, 1 failed"
        )
        progress.emit(_done("Exec[a]"))
        progress.emit(_done("File[d]"))
        progress.emit(Settled(4, ["File[b]"]))
        assert not output.status_shown  # converged: the line goes
        progress.close()

    run_async(main())
    assert progress._timer is None


def test_a_quick_run_never_draws_a_status_line() -> None:
    out = io.StringIO()
    output = Output(out, journal=False, live=True)
    progress = Progress(output, status_after=0.2)

    async def main() -> None:
        progress.emit(GraphStarted("g", "test", 1, 0))
        progress.emit(_done("File[a]"))
        progress.emit(Settled(1, []))
        await asyncio.sleep(0.4)
        progress.close()

    run_async(main())
    assert out.getvalue() == ""


def test_status_lines_stay_off_a_quiet_output() -> None:
    # -q: the Output's level is WARNING; progress lines are INFO
    out = io.StringIO()
    progress = Progress(Output(out, journal=False, level=logging.WARNING))

    async def main() -> None:
        progress.emit(Applying("Pkg[x]", "start", ["state"]))
        progress.emit(_done("Pkg[x]"))
        progress.close()

    run_async(main())
    assert out.getvalue() == ""


def test_applies_that_end_begin_again_or_leave_the_graph_are_followed_without_a_walk() -> None:
    """What falls due waits in queues, not in a walk of every apply (issue 13):
    an apply that ended, or left the graph, is never said; one that began
    again is said once, from its new start; the status counts stay right."""
    out = io.StringIO()
    output = Output(out, journal=False, live=True)
    progress = Progress(output, announce_after=0.05, every=0.3, status_after=60)
    names = [f"Exec[{n}]" for n in "abcde"]
    a, b, c, d, _ = names

    async def main() -> None:
        progress.emit(GraphStarted("g", "test", 5, 0))
        for name in (a, b, c, d):
            progress.emit(Applying(name, "start", ["run"]))
        progress.emit(_done(a))
        progress.emit(Applying(a, "event", ["run"]))  # again: now the youngest
        progress.emit(GraphSwapped("g", kept=4, replaced=[], added=[], removed=[d]))
        assert progress.status_text(progress._now()) == (
            "pymgmt: 1/4 checked, 3 applying (Exec[b] 0 s, Exec[c] 0 s, Exec[a] 0 s), 1 pending"
        )
        await until(lambda: len(_lines(out)) >= 3, "three announcements")
        assert _lines(out) == [f"INFO  {n}: applying run (running for 0 s)" for n in (b, c, a)]
        progress.emit(_done(c))
        await until(lambda: len(_lines(out)) >= 5, "two 'still running' lines")
        assert sorted(_lines(out)[3:]) == [
            f"INFO  {n}: still running: applying for 0.3 s" for n in (a, b)
        ]
        progress.emit(_done(a))
        progress.emit(_done(b))
        assert progress.status_text(progress._now()) == "pymgmt: 3/4 checked, 0 applying, 1 pending"
        progress.emit(Settled(4, []))
        said = len(_lines(out))
        await asyncio.sleep(0.4)  # past the next interval: nothing more may come
        assert len(_lines(out)) == said
        assert progress._timer is None
        progress.close()

    run_async(main())
