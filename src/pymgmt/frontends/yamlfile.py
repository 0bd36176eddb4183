"""The live YAML frontend: the file's declared graph, then a new one per save.

Reading and checking run in a thread (`asyncio.to_thread`): a 10k resource
graph takes over a second to read, and every other resource's watch must go
on meanwhile (issue 8, item 16). Compiling is the Engine's (`compile.accept`).
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

    async def graphs(self, ctx: FrontendContext) -> AsyncIterator[Graph[Resource] | InputError]:
        changed = asyncio.Event()
        hub = ctx.inotify
        sub = hub.subscribe(self.path, changed.set)  # before the first read: no gap
        try:
            last = await asyncio.to_thread(_read_bytes, self.path)
            first, self._first = self._first, None
            if first is not None and first[0] == last:
                yield first[1]  # reading it again would cost ~75 us per resource
            else:
                yield await asyncio.to_thread(_declare_or_error, last, self.path)
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
                last = data
                yield await asyncio.to_thread(_declare_or_error, data, self.path)
        finally:
            hub.unsubscribe(sub)


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
