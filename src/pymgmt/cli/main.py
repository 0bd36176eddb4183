"""Command line: argument parsing only; the work lives in cli/run.py.

Kept free of heavy imports (asyncio, yaml, the engine) so that
``pymgmt --version`` and ``--help`` cost little more than starting Python.
"""

from __future__ import annotations

import sys

from .._version import __version__

TYPE_CHECKING = False  # argparse is imported when a parser is built: --version skips it
if TYPE_CHECKING:
    import argparse


def _parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(
        prog="pymgmt",
        description="A parallel, event-driven configuration management engine.",
    )
    p.add_argument("--version", action="version", version=f"pymgmt {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="apply a graph and keep it converged",
        description="Apply a graph, then watch every resource and repair drift as it happens. "
        "With --converged-timeout N, exit N seconds after the graph is converged "
        "(exit codes: 0 no change, 2 changes made, 4 failures, 6 both, 1 bad input).",
    )
    run.add_argument("file", nargs="?", help="the graph file (mgmt YAML format)")
    run.add_argument("--file", "--yaml", dest="file_opt", metavar="FILE", help=argparse.SUPPRESS)
    run.add_argument(
        "--converged-timeout",
        "--converger-timeout",
        dest="converged_timeout",
        type=float,
        metavar="N",
        default=None,
        help="exit N seconds after the whole graph is converged and idle (0 = at once); "
        "default: run forever. A negative value means forever too.",
    )
    run.add_argument("--noop", action="store_true", help="change nothing; show what would change")
    run.add_argument(
        "--sema",
        type=int,
        default=0,
        metavar="N",
        help="at most N resources check/apply at once (1 = serial, like Puppet)",
    )
    run.add_argument("--graphviz", metavar="FILE.dot", help="write the graph as DOT to this file")
    run.add_argument("--hostname", help="the name this host uses in the cluster")
    run.add_argument("--prefix", help="state directory (default /var/lib/pymgmt, or ~/.cache)")
    run.add_argument("--json", action="store_true", help="stream events as JSON lines on stdout")
    run.add_argument(
        "--no-watch", action="store_true", help="do not re-read the graph file when it changes"
    )
    _verbosity(run)

    val = sub.add_parser("validate", help="check a graph file without touching the system")
    val.add_argument("file", help="the graph file")
    val.add_argument("--json", action="store_true", help="print the result as JSON")
    _verbosity(val)
    return p


def _verbosity(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-v", "--verbose", action="store_true", help="also log unchanged checks and diffs"
    )
    g.add_argument("-q", "--quiet", action="store_true", help="only failures and the recap")


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"pymgmt {__version__}")  # what argparse's version action prints
        return 0
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    if args.command == "run":
        args.file = args.file or args.file_opt
        if not args.file:
            parser.error("run: a graph file is required")
        from .run import run_command

        return run_command(args)
    from .run import validate_command

    return validate_command(args)


if __name__ == "__main__":
    sys.exit(main())
