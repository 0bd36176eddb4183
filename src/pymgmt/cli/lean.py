"""What a start need not import: two economies of the command line (issue 13).

A one-shot run of a small graph lasts about as long as Python takes to
start and import what it uses, so every import a run does not need is
time the run is slower than it must be. These two are the standard
library's own, taken where pymgmt knows more than the library does.
"""

from __future__ import annotations

import os
import sys


def terminal_width() -> int:
    """The width argparse formats help for: the terminal's, less 2.

    argparse asks `shutil.get_terminal_size` for it whenever it builds a
    formatter, which it does for every argument it declares; importing
    shutil (and with it bz2, lzma and fnmatch) costs a `pymgmt run` about
    4 ms for a help it never prints. The same answer, as shutil computes
    it: $COLUMNS, else the terminal on standard output, else 80.
    """
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns if columns > 0 else 80) - 2


def import_asyncio_without_tls() -> None:
    """Import asyncio as on a Python built without the ssl module.

    asyncio imports ssl only to offer TLS transports, and runs without it
    (``try: import ssl / except ImportError: ssl = None``). Loading OpenSSL
    and building ssl's enums costs a run 5-8 ms. Call this only for a run
    that never asks asyncio for TLS: no cluster or TLS flag, no --remote,
    no --prometheus (etcd's gRPC client has TLS of its own, and the web
    view serves plain HTTP; nothing else pymgmt runs speaks TLS). Whoever
    imports ssl later gets it as usual; only asyncio's TLS transports stay
    off in this process. A no-op if asyncio or ssl is imported already.
    """
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # makes `import ssl` raise ImportError
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]
