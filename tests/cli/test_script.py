"""The installed `pymgmt` command imports no more than pymgmt needs (issue 13).

The console-script wrapper pip 23 (Python 3.11's own) generates imports
`re` before anything else (15 ms of a 45 ms `pymgmt --version` on a small
machine); the project ships a plain script instead (bin/pymgmt), whatever
pip installs it. PYTHONPROFILEIMPORTTIME lists every
module the interpreter imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("pymgmt")


@pytest.mark.skipif(not SCRIPT.is_file(), reason="pymgmt is not installed beside this Python")
def test_the_command_imports_neither_re_nor_asyncio_for_its_version() -> None:
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run(
        [str(SCRIPT), "--version"], capture_output=True, text=True, env=env, check=True
    )
    assert proc.stdout.startswith("pymgmt ")
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "pymgmt.cli.main" in imported
    assert not imported & {"re", "asyncio", "argparse", "typing"}, sorted(imported)
