"""`pymgmt docs [KIND]`, `pymgmt schema` and `pymgmt completion bash|zsh`.

All three are generated when asked, from what the program declares: the
reference and the schema from the resource kinds (`pymgmt.reference`), the
completion scripts from the argument parser itself and the kinds, so a new
flag or kind is completed without anyone editing a script.

This module is imported whenever the command line is parsed (its parsers
are part of it), so it imports nothing at the top that `run` would not.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..report.exitcodes import EXIT_INPUT, EXIT_OK

if TYPE_CHECKING:
    import argparse

#: what `pymgmt docs` takes besides a kind's name
DOCS_TOPICS = ("meta",)
SHELLS = ("bash", "zsh")


def add_parsers(sub: Any) -> None:
    """The three commands' parsers, under the top-level parser's subparsers."""
    docs = sub.add_parser(
        "docs",
        help="the reference: every resource kind, its params and an example",
        description="Print the reference of every resource kind (its params with type, "
        "default and meaning, and an example), of one KIND, or of the metaparameters (meta).",
    )
    docs.add_argument("kind", nargs="?", metavar="KIND", help="a resource kind, or meta")
    docs.add_argument(
        "--markdown",
        action="store_true",
        help="the whole reference in Markdown (docs/reference.md)",
    )
    sub.add_parser(
        "schema",
        help="the graph format as a JSON schema, for editors",
        description="Print the JSON schema (draft-07) of the graph file format, generated from "
        "the resource kinds: an editor's YAML plugin validates and completes graphs with it.",
    )
    comp = sub.add_parser(
        "completion",
        help="a shell completion script: commands, flags, resource kinds",
        description="Print a completion script for SHELL. bash: "
        "'source <(pymgmt completion bash)' in ~/.bashrc. zsh: save it as _pymgmt in a "
        "directory of $fpath, or 'source <(pymgmt completion zsh)' after compinit.",
    )
    comp.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash or zsh")


def docs_command(args: argparse.Namespace) -> int:
    """Run `docs`, `schema` or `completion`; the exit code."""
    if args.command == "completion":  # read at every shell's start: no reference
        from . import completion

        print(completion.script(args.shell), end="")
        return EXIT_OK
    from .. import reference

    if args.command == "schema":
        import json

        print(json.dumps(reference.schema(), indent=2))
        return EXIT_OK
    if args.markdown:
        if args.kind is not None:
            return _usage("--markdown prints the whole reference: give no KIND")
        _show(reference.markdown())
        return EXIT_OK
    if args.kind is not None and args.kind not in topics():
        return _unknown_kind(args.kind)
    _show(reference.text(args.kind))
    return EXIT_OK


def _show(text: str) -> None:
    """Print `text`; on a terminal, through a pager ($PAGER, else less), as ansible-doc does.

    The whole reference is some 400 lines: a pager lets it be read from the
    top. A pager that cannot be started is no reason to show nothing.
    """
    if not sys.stdout.isatty():
        print(text, end="")
        return
    import os
    import shlex
    import subprocess

    try:
        argv = shlex.split(os.environ.get("PAGER") or "less -FRX")
        # argv list, no shell: the user's own pager, as git and man run it
        subprocess.run(argv, input=text, text=True, check=False)  # noqa: S603
    except (OSError, ValueError, IndexError):
        print(text, end="")
    except KeyboardInterrupt:  # ^C in the pager: the reading is over, not a crash
        pass


def topics() -> list[str]:
    """What `pymgmt docs` can show alone: every kind, and the metaparameters."""
    from ..resources.base import shipped_kinds

    return [*shipped_kinds(), *DOCS_TOPICS]


def _unknown_kind(kind: str) -> int:
    from ..types import suggest

    near = suggest(kind, topics())
    hint = f"; did you mean {near!r}?" if near else ""
    return _usage(f"no resource kind {kind!r}{hint} (kinds: {', '.join(topics())})")


def _usage(message: str) -> int:
    print(f"pymgmt docs: error: {message}", file=sys.stderr)
    return EXIT_INPUT
