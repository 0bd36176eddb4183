"""Tracebacks the interpreter prints itself are redacted too.

An exception that escapes the command (or a thread, or an asyncio task
nobody awaits) is printed by sys.excepthook, threading.excepthook or the
"asyncio" logger, not by pymgmt's log handler. No graph makes the CLI crash
on purpose (that would be a bug to fix), so a real interpreter runs the
CLI's own logging setup and then crashes in all three ways, with a
registered secret in each message.
"""

from __future__ import annotations

import subprocess
import sys

SECRET = "hunter22-s3cret"

SCRIPT = f"""
import asyncio, gc, threading
from pymgmt import redaction
from pymgmt.report.logs import setup_logging

setup_logging()
redaction.register({SECRET!r})

def in_thread():
    raise RuntimeError("thread {SECRET}")

t = threading.Thread(target=in_thread, name="worker")
t.start()
t.join()

async def boom():
    raise RuntimeError("task {SECRET}")

async def main():
    asyncio.get_running_loop().create_task(boom())
    await asyncio.sleep(0)

asyncio.run(main())
gc.collect()
raise RuntimeError("main {SECRET}")
"""


def test_uncaught_tracebacks_are_redacted():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "Exception in thread worker" in err and "thread <redacted>" in err, err
    assert "Task exception was never retrieved" in err and "task <redacted>" in err, err
    assert "Traceback" in err and "RuntimeError: main <redacted>" in err, err
    assert SECRET not in err, err
