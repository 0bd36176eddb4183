"""SIGHUP: read the configuration file and the graph again (``systemctl reload``).

What can change under a running engine changes: the graph file (its path
and its content: the engine swaps graphs live, touching only what
changed), ``no-watch``, the verbosity and log level, ``graphviz``.
Anything else (the state directory, the hostname, the cluster, ``sema``,
``noop``, ...) is built into the running agent: a change is named in one
warning, and the running value stays until a restart. A configuration file
that has become invalid is refused with its problems; the agent keeps its
settings and still reads the graph again.

The reload runs inside the graph stream (`Reloading.graphs`), the task that
feeds the engine its graphs, so it needs no task of its own; systemd hears
``RELOADING=1`` as it begins and ``READY=1`` once the new graph is in (or
refused).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..frontends.base import Frontend, FrontendContext
from ..graph.model import Graph
from ..resources.base import Resource

if TYPE_CHECKING:
    from .systemd import SystemdReporter

log = logging.getLogger("pymgmt.reload")

#: settings a running agent takes on at a reload
LIVE = frozenset(
    {
        "file",
        "file_opt",
        "no_watch",
        "verbose",
        "quiet",
        "log_level",
        "graphviz",
        "graphviz_filter",
    }
)
#: namespace entries that are no setting of their own (derived, internal, the file itself)
_NOT_SETTINGS = frozenset(
    {
        "config",
        "config_file",
        "no_config",
        "ignored",
        "command",
        "detailed_exit",
        "cluster_flags",
        "depth",
        "remote_child",
        "tunnel",
    }
)


class _Reload:
    """The marker `_next` returns when SIGHUP came first."""


_RELOAD = _Reload()
_END = _Reload()


class Reloading:
    """A frontend whose graph source is rebuilt from the settings at each SIGHUP.

    `first` is the frontend the run started with; `make` builds the next
    one from the reloaded settings; `apply` takes on the live settings.
    """

    def __init__(
        self,
        first: Frontend,
        args: argparse.Namespace,
        make: Callable[[argparse.Namespace], Frontend],
        apply: Callable[[argparse.Namespace], None],
        systemd: SystemdReporter | None = None,
    ) -> None:
        self.first = first
        self.args = args
        self.make = make
        self.apply = apply
        self.systemd = systemd
        self.requested = asyncio.Event()

    def request(self) -> None:
        """The SIGHUP handler (on the event loop)."""
        self.requested.set()

    async def graphs(self, ctx: FrontendContext) -> AsyncIterator[Graph[Resource] | InputError]:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.request)
        inner, note = self.first, None
        try:
            while True:
                source = inner.graphs(ctx)
                try:
                    while (item := await self._next(source)) is not _RELOAD and item is not _END:
                        yield item  # type: ignore[misc]
                        if note is not None:  # the reloaded graph is in, or refused
                            self._reloaded(note)
                            note = None
                    if item is _END:
                        await self.requested.wait()  # a source that ended: wait for a reload
                finally:
                    await source.aclose()  # type: ignore[attr-defined]
                inner, note = self._reload()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)

    async def _next(self, source: Any) -> object:
        """The source's next graph, or _RELOAD if SIGHUP comes first (the wait is cancelled).

        Cancelling the source's pending step is ours to do: it ends that
        source, which `graphs` then closes and replaces.
        """
        step = asyncio.ensure_future(anext(source, _END))
        hup = asyncio.ensure_future(self.requested.wait())
        try:
            await asyncio.wait({step, hup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hup.cancel()
            if not step.done():
                step.cancel()
            await asyncio.wait({step, hup})
        return step.result() if not step.cancelled() else _RELOAD

    def _reload(self) -> tuple[Frontend, str]:
        """Read the configuration again; the next graph source, and a note for systemd."""
        self.requested.clear()
        if self.systemd is not None:
            self.systemd.reloading()
        source = getattr(self.args, "config", None)
        note = "reloaded"
        if source is not None and source.path is not None:
            log.info("SIGHUP: reading %s and the graph again", source.path)
            try:
                self._take(source.reread())
            except InputError as e:
                log.error(
                    "reload: the configuration is invalid, the running settings stay:\n  %s",
                    str(e).replace("\n", "\n  "),
                )
                note = "the configuration is invalid: kept the running settings"
        else:
            log.info("SIGHUP: reading the graph again")
        return self.make(self.args), note

    def _take(self, new: argparse.Namespace) -> None:
        """Take on the live settings that changed; name the others in a warning."""
        old = self.args
        changed = [
            k for k, v in vars(new).items() if k not in _NOT_SETTINGS and getattr(old, k, v) != v
        ]
        later = [k for k in changed if k not in LIVE]
        for k in changed:
            if k in LIVE:
                setattr(old, k, getattr(new, k))
        if any(k in LIVE for k in changed):
            try:
                self.apply(old)
            except Exception as e:  # a reload never stops the agent
                log.error("reload: could not take on the new settings: %s", e)
        if later:
            flags = ", ".join(
                f"--{k.replace('_', '-')} ({getattr(old, k)!r} -> {getattr(new, k)!r})"
                for k in later
            )
            log.warning(
                "reload: %s changed but cannot change while the agent runs: the running "
                "value stays until a restart (systemctl restart pymgmt)",
                flags,
            )

    def _reloaded(self, note: str) -> None:
        if self.systemd is not None:
            self.systemd.reloaded("" if note == "reloaded" else note)


class ReadOnce:
    """The graph file read once (--no-watch), after a reload: not watched, re-read at SIGHUP."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def graphs(self, ctx: FrontendContext) -> AsyncIterator[Graph[Resource] | InputError]:
        yield await asyncio.to_thread(_declared, self.path)
        await asyncio.Event().wait()


def _declared(path: str) -> Graph[Resource] | InputError:
    from ..frontends.graphfile import read_graph_file
    from ..frontends.yamlbuild import declare

    try:
        return declare(read_graph_file(path), path)
    except InputError as e:
        return e


__all__ = ["LIVE", "ReadOnce", "Reloading"]
