"""`pymgmt install-service`: the systemd unit and a first configuration.

The files come from the package's data (``pymgmt/data/``, also in the
wheel's ``share/pymgmt/``): the unit, with ``ExecStart=`` pointing at the
very pymgmt that runs this command (a venv's, pip's, a bundle's), a
configuration file and an empty graph. An operator's own configuration and
graph are never replaced; the unit, which is pymgmt's, always is.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..config import DEFAULT_PATH
from ..report.exitcodes import EXIT_INPUT, EXIT_OK

#: the unit's name and where the administrator's units live
UNIT = "pymgmt.service"
UNIT_DIR = Path("/etc/systemd/system")
#: what the shipped unit runs; replaced by the absolute path of this pymgmt
_SHIPPED_EXEC = "/usr/bin/env pymgmt run --config /etc/pymgmt/pymgmt.yaml"


def add_parser(sub: Any) -> None:
    from .main import _natural

    p = sub.add_parser(
        "install-service",
        help="install the systemd unit (Type=notify, watchdog, reload) and a first configuration",
        description="Write /etc/systemd/system/pymgmt.service, running this pymgmt with "
        "--config FILE, and, unless they exist, the configuration FILE and the graph it "
        "names. Then: systemctl enable --now pymgmt.",
    )
    p.add_argument(
        "--config",
        dest="config_file",
        default=str(DEFAULT_PATH),
        metavar="FILE",
        help=f"the configuration the service reads (default {DEFAULT_PATH})",
    )
    p.add_argument(
        "--watchdog",
        type=_natural,
        default=60,
        metavar="SECONDS",
        help="restart the agent if its event loop is stuck this long (default 60; 0: no watchdog)",
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        help="install into the tree DIR (an image being built) instead of /; no daemon-reload",
    )
    p.add_argument("--print", action="store_true", help="print the unit; write nothing")


def unit_text(executable: str, config: str, watchdog: int) -> str:
    """The shipped unit with this pymgmt and `config` in ExecStart, and the watchdog."""
    text = _data("pymgmt.service")
    text = text.replace(_SHIPPED_EXEC, f"{_quoted(executable)} run --config {_quoted(config)}")
    return text.replace("WatchdogSec=60s", f"WatchdogSec={watchdog}s")


def _quoted(word: str) -> str:
    """A word for a unit's command line: systemd splits on spaces like a shell."""
    if not any(c in word for c in " \t\"'\\$%;"):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%")
    return f'"{escaped}"'


def _data(name: str) -> str:
    from importlib.resources import files

    return (files("pymgmt") / "data" / name).read_text(encoding="utf-8")


def executable() -> str:
    """The absolute path of the pymgmt command that runs now."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "pymgmt" and argv0.is_file():
        return str(argv0.resolve())
    beside = Path(sys.executable).parent / "pymgmt"  # a venv's bin/
    if beside.is_file():
        return str(beside)
    import shutil

    return shutil.which("pymgmt") or "/usr/bin/env pymgmt"


def install_command(args: argparse.Namespace) -> int:
    config = args.config_file
    if not os.path.isabs(config):
        print(f"error: --config must be an absolute path, got {config!r}", file=sys.stderr)
        return EXIT_INPUT
    unit = unit_text(executable(), config, args.watchdog)
    if args.watchdog == 0:
        unit = unit.replace("WatchdogSec=0s\n", "")
    if args.print:
        sys.stdout.write(unit)
        return EXIT_OK
    root = Path(args.root or "/")
    graph = str(Path(config).parent / "graph.yaml")
    conf = _data("pymgmt.yaml").replace("/etc/pymgmt/graph.yaml", graph)
    try:
        _write(root, str(UNIT_DIR / UNIT), unit, replace=True)
        _write(root, config, conf, replace=False)
        _write(root, graph, _data("graph.yaml"), replace=False)
    except OSError as e:
        print(f"error: cannot install: {e}", file=sys.stderr)
        return EXIT_INPUT
    if args.root is None and Path("/run/systemd/system").is_dir():
        import subprocess

        subprocess.run(["systemctl", "daemon-reload"], check=False)
    print(f"next: systemctl enable --now {UNIT}   (logs: journalctl -u {UNIT})")
    return EXIT_OK


def _write(root: Path, path: str, text: str, *, replace: bool) -> None:
    """Write `path` under `root` atomically, 0644 from the first byte; say what was done.

    Directories on the way are made 0755 and walked without following a
    symlink root does not own (`fsutil`), as every path the agent writes.
    """
    from ..fsutil import atomic_write_at, opened_dir, split

    target = os.path.join(str(root), path.lstrip("/"))
    parent, name = split(os.path.abspath(target))
    with opened_dir(parent, create=0o755) as dfd:
        try:
            atomic_write_at(dfd, name, text.encode(), 0o644, None, None, replace=replace)
        except FileExistsError:
            print(f"kept {target} (it exists)")
            return
    print(f"wrote {target}")
