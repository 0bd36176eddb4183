"""The live Puppet frontend: the manifest's graph, then a new one per saved edit.

Compiling takes Puppet seconds (its start-up, Facter, the compiler), so it
runs in a thread: the running graph's resources go on watching and
repairing meanwhile, and the Engine swaps the new graph in with its usual
changeover (only changed resources run again). A manifest that no longer
compiles is an `InputError` like an invalid YAML save: reported, and the
old graph keeps running.

What is watched: the manifest, every file that declared a resource of the
last catalog, and every file under Puppet's module path (classes, defined
types, templates and files of modules; the list is taken again after each
compilation). An edit made while a compilation runs is caught by comparing
modification times once the watches are set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from ... import children
from ...errors import InputError
from ...graph.model import Graph
from ...resources.base import Resource
from ..base import FrontendContext
from .catalog import Catalog, PuppetSource, compile_catalog, compile_catalog_async
from .graph import declared_graph
from .translate import Translation, translate

if TYPE_CHECKING:
    from ...events.inotify import Subscription

log = logging.getLogger("pymgmt.puppet")

#: edits come in bursts (an editor's save, a `git pull` of a module): wait for quiet
DEBOUNCE = 0.2
#: at most this many files under the module path are watched
MAX_WATCHED = 20_000


def compile_graph(source: PuppetSource, *, allow: bool) -> tuple[Translation, Graph[Resource]]:
    """Compile, translate and check `source`: the translation and its declared graph."""
    return graph_of_catalog(compile_catalog(source), source, allow=allow)


def graph_of_catalog(
    catalog: Catalog, source: PuppetSource, *, allow: bool
) -> tuple[Translation, Graph[Resource]]:
    """Translate and check a compiled catalog: the translation and its declared graph."""
    translation = translate(catalog, source.name, allow=allow, collect_dir=source.collect_dir)
    return translation, declared_graph(translation)


class PuppetFrontend:
    """Yields the manifest's declared graph, then a new one after each edit it depends on."""

    def __init__(
        self,
        source: PuppetSource,
        *,
        allow: bool = False,
        first: tuple[Translation, Graph[Resource]] | None = None,
        debounce: float = DEBOUNCE,
    ) -> None:
        self.source = source
        self.allow = allow
        self.debounce = debounce
        #: the translation and graph the caller compiled at start: yielded as they are
        self._first = first
        #: how many times Puppet compiled the manifest here (tests, benchmarks)
        self.compiles = 0

    async def graphs(self, ctx: FrontendContext) -> AsyncIterator[Graph[Resource] | InputError]:
        changed = asyncio.Event()
        watching = _Watches(ctx, changed.set)
        try:
            if not self.source.inline:
                watching.update([os.path.abspath(self.source.text)])  # before the first compile
            started = time.time_ns()
            first, self._first = self._first, None
            result = first if first is not None else await self._compile()
            yield _graph_of(result)
            # asked after the first graph runs: it costs Puppet's start-up again
            modulepath = await _modulepath(self.source)
            while True:
                await self._watch_files(watching, result, modulepath, started)
                await changed.wait()
                await _quiet(changed, self.debounce)
                changed.clear()
                started = time.time_ns()
                result = await self._compile()
                yield _graph_of(result)
        finally:
            watching.close()

    async def _compile(self) -> tuple[Translation, Graph[Resource]] | InputError:
        """Puppet as a child the loop waits for; translating (CPU) in a thread."""
        self.compiles += 1
        try:
            catalog = await compile_catalog_async(self.source)
            return await asyncio.to_thread(graph_of_catalog, catalog, self.source, allow=self.allow)
        except InputError as e:
            return e

    async def _watch_files(
        self,
        watching: _Watches,
        result: tuple[Translation, Graph[Resource]] | InputError,
        modulepath: list[str],
        since: int,
    ) -> None:
        files = await asyncio.to_thread(self._files, result, modulepath)
        watching.update(files)
        if await asyncio.to_thread(_changed_since, files, since):
            watching.callback()  # edited while Puppet compiled: compile again

    def _files(
        self, result: tuple[Translation, Graph[Resource]] | InputError, modulepath: list[str]
    ) -> list[str]:
        files: list[str] = [] if self.source.inline else [os.path.abspath(self.source.text)]
        if not isinstance(result, InputError):
            for t in result[0].resources:
                where = t.origin.location
                if where is not None and where.file.startswith("/"):
                    files.append(where.file)
        for root in modulepath:
            files += _walk(root, MAX_WATCHED - len(files))
        return sorted(set(files))


def _graph_of(
    result: tuple[Translation, Graph[Resource]] | InputError,
) -> Graph[Resource] | InputError:
    return result if isinstance(result, InputError) else result[1]


async def _quiet(changed: asyncio.Event, debounce: float) -> None:
    """Return once no change has come for `debounce` seconds."""
    while True:
        changed.clear()
        try:
            async with asyncio.timeout(debounce):
                await changed.wait()
        except TimeoutError:
            return


class _Watches:
    """The files subscribed to on the agent's inotify hub, kept to the last list given."""

    def __init__(self, ctx: FrontendContext, callback: Callable[[], None]) -> None:
        self.hub = ctx.inotify
        self.callback = callback
        self.subs: dict[str, Subscription] = {}

    def update(self, files: list[str]) -> None:
        wanted = set(files)
        for path in [p for p in self.subs if p not in wanted]:
            self.hub.unsubscribe(self.subs.pop(path))
        for path in files:
            if path not in self.subs:
                self.subs[path] = self.hub.subscribe(path, self.callback)

    def close(self) -> None:
        for sub in self.subs.values():
            self.hub.unsubscribe(sub)
        self.subs.clear()


async def _modulepath(source: PuppetSource) -> list[str]:
    """Puppet's module path for this configuration (`puppet config print modulepath`)."""
    argv = ["puppet", "config", "print", "modulepath"]
    if source.conf is not None:
        argv += ["--config", source.conf]
    try:
        answer = await children.ask(argv, timeout=120)
    except OSError as e:
        log.warning("cannot ask Puppet for its module path (%s): modules are not watched", e)
        return []
    except TimeoutError:
        log.warning("Puppet did not print its module path: modules are not watched")
        return []
    out = answer.out
    dirs = [d for d in out.decode("utf-8", "replace").strip().split(":") if d.startswith("/")]
    return [d for d in dirs if os.path.isdir(d)]


def _walk(root: str, limit: int) -> list[str]:
    """Up to `limit` regular files under `root`, symlinks not followed."""
    out: list[str] = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            if len(out) >= limit:
                return out
            out.append(os.path.join(dirpath, name))
    return out


def _changed_since(files: list[str], since: int) -> bool:
    for path in files:
        try:
            if os.stat(path).st_mtime_ns >= since:
                return True
        except OSError:
            continue
    return False


__all__ = ["PuppetFrontend", "compile_graph"]
