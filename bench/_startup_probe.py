"""Where one `pymgmt` run's time goes: marks at the phase boundaries, as JSON to OUT.

Usage: _startup_probe.py OUT PYMGMT-ARGS...   (run by bench/startup.py with
the interpreter of the pymgmt install under test)

It runs exactly what the console script runs (``import re``, then
``pymgmt.cli.main.main``), having imported what `main` would import lazily,
and notes CLOCK_MONOTONIC at: its first line, the one-shot fast path
(pymgmt.oneshot) begun and ended, imports done, the graph's load
(parse, or the cache, and compiling) begun and ended, ``asyncio.run`` (the
engine) begun and ended, and ``os._exit``; bench/startup.py adds the spawn
and the reaping of the process. Only the standard library is imported
before the first mark is taken.
"""

from __future__ import annotations

import time

T0 = time.monotonic()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402


def _wrap(owner: Any, name: str, before: str, after: str, marks: dict[str, float]) -> None:
    """Replace `owner.name` by a function that marks its start and end."""
    inner = getattr(owner, name)

    def marked(*args: Any, **kwargs: Any) -> Any:
        marks.setdefault(before, time.monotonic())
        try:
            return inner(*args, **kwargs)
        finally:
            marks[after] = time.monotonic()

    setattr(owner, name, marked)


def _import_full(cli: Any, marks: dict[str, float]) -> None:
    """Import what the full run imports lazily, and mark its phases."""
    if hasattr(cli, "import_asyncio_without_tls"):  # what main() does for such a run
        cli.import_asyncio_without_tls()
    import asyncio

    from pymgmt.cli import run

    marks["imported"] = time.monotonic()
    load = "_load_graph" if hasattr(run, "_load_graph") else "load_with_text"
    _wrap(run, load, "load_start", "load_end", marks)
    _wrap(asyncio, "run", "engine_start", "engine_end", marks)


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    marks: dict[str, float] = {"start": T0}
    import re  # noqa: F401  (pip's console script imports it first)

    from pymgmt.cli import main as cli

    try:
        from pymgmt.oneshot import command as oneshot
    except ImportError:  # an install from before the fast path
        _import_full(cli, marks)
    else:
        inner = oneshot.try_run

        def fast(words: list[str]) -> Any:
            marks["fast_start"] = time.monotonic()
            answer = inner(words)
            marks["fast_end"] = time.monotonic()
            if answer[0] is None:  # not answered: main() goes on to the full run
                _import_full(cli, marks)
            return answer

        oneshot.try_run = fast  # type: ignore[assignment]
    real_exit = os._exit

    def exit_marked(code: int) -> None:
        marks["exit"] = time.monotonic()
        with open(out, "w") as f:
            json.dump(marks, f)
        real_exit(code)

    os._exit = exit_marked  # type: ignore[assignment]
    sys.argv[0] = "pymgmt"
    exit_marked(cli.main(argv))


if __name__ == "__main__":
    main()
