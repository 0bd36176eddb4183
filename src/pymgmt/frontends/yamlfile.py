"""The live YAML frontend: the file's declared graph, then a new one per save.

Reading and checking run in a thread (`asyncio.to_thread`): a 10k resource
graph takes over a second to read, and every other resource's watch must go
on meanwhile (issue 8, item 16). Compiling is the Engine's (`compile.accept`).

A save that changes one resource's entry re-reads only that entry
(`yamledit.redeclare`); anything else is read in full.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from ..errors import InputError
from ..graph.model import Graph
from ..resources.base import Resource
from .base import FrontendContext
from .graphfile import read_graph_file
from .yamlmodel import YamlGraph


class YamlFrontend:
    """Yields the file's declared graph, then a new one each time the file is saved."""

    def __init__(
        self, path: str, *, debounce: float = 0.05, first: tuple[bytes, YamlGraph] | None = None
    ) -> None:
        self.path = os.path.abspath(path)
        self.debounce = debounce
        #: (text, declared graph) the caller has just read: yielded as it is if
        #: the file still holds that text, so the Engine, handed the caller's
        #: compiled result, compiles nothing a second time
        self._first = first
        #: how the graph of each save was read: "entry" (one resource's lines)
        #: or "full" (the whole file), for tests and benchmarks
        self.reads: list[str] = []

    async def graphs(self, ctx: FrontendContext) -> AsyncIterator[Graph[Resource] | InputError]:
        changed = asyncio.Event()
        hub = ctx.inotify
        sub = hub.subscribe(self.path, changed.set)  # before the first read: no gap
        try:
            last = await asyncio.to_thread(_read_bytes, self.path)
            first, self._first = self._first, None
            graph: YamlGraph | InputError
            if first is not None and first[0] == last:
                graph = first[1]  # reading it again would cost ~75 us per resource
            else:
                graph = await asyncio.to_thread(_declare_or_error, last, self.path)
            yield graph
            while True:
                await changed.wait()
                # Editors save in bursts (truncate, write, rename): wait for quiet.
                while True:
                    changed.clear()
                    try:
                        async with asyncio.timeout(self.debounce):
                            await changed.wait()
                    except TimeoutError:
                        break
                data = await asyncio.to_thread(_read_bytes, self.path)
                if data == last:
                    continue
                graph = await asyncio.to_thread(self._next_graph, last, data, graph)
                last = data
                yield graph
        finally:
            hub.unsubscribe(sub)

    def _next_graph(
        self, old: bytes | InputError, new: bytes | InputError, graph: YamlGraph | InputError
    ) -> YamlGraph | InputError:
        """The graph of the new bytes: one entry re-read if only it changed, else all."""
        if isinstance(old, bytes) and isinstance(new, bytes) and isinstance(graph, YamlGraph):
            # The Engine has taken `graph` in already (it asked for the next
            # one): its own link to the graph before it is no longer needed.
            graph.edited_from = None
            from .yamledit import redeclare  # PyYAML: not before the file changes (issue 13)

            edited = redeclare(old, new, graph)
            if edited is not None:
                self.reads.append("entry")
                return edited
        self.reads.append("full")
        return _declare_or_error(new, self.path)


def _read_bytes(path: str) -> bytes | InputError:
    try:
        return read_graph_file(path)
    except InputError as e:
        return e


def _declare_or_error(data: bytes | InputError, path: str) -> YamlGraph | InputError:
    if isinstance(data, InputError):
        return data
    from .yamlbuild import declare  # PyYAML: not before the file changes (issue 13)

    try:
        return declare(data, path)
    except InputError as e:
        return e
