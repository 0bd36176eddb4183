"""AutoEdges of pkg and svc: a package before the files and units it ships,
a unit file before its service. Uses this machine's dpkg database (read-only)."""

from __future__ import annotations

import contextlib
import shutil

import pytest

from pymgmt.frontends.compile import compile_graph
from pymgmt.graph.model import Graph
from pymgmt.resources.base import Resource
from pymgmt.resources.file import File
from pymgmt.resources.pkg import Pkg
from pymgmt.resources.svc import Svc

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg")


def _edges(*resources: Resource) -> set[tuple[str, str]]:
    g: Graph[Resource] = Graph(name="t")
    for r in resources:
        g.add(r)
    return {(str(g.vertices[e.src]), str(g.vertices[e.dst])) for e in compile_graph(g).autoedges}


@needs_dpkg
def test_a_package_comes_before_the_files_it_ships():
    assert _edges(Pkg(name="base-files"), File(name="/etc/issue"), File(name="/etc/other")) == {
        ("Pkg[base-files]", "File[/etc/issue]")
    }


@needs_dpkg
def test_a_package_comes_before_the_services_it_ships():
    edges = _edges(Pkg(name="systemd"), Svc(name="systemd-journald"))
    assert edges == {("Pkg[systemd]", "Svc[systemd-journald]")}


def test_a_managed_unit_file_comes_before_its_service():
    unit = File(name="/etc/systemd/system/app.service", content="[Service]\n")
    assert _edges(unit, Svc(name="app")) == {("File[/etc/systemd/system/app.service]", "Svc[app]")}


@needs_dpkg
def test_an_uninstalled_state_adds_no_edges():
    assert _edges(Pkg(name="base-files", state="uninstalled"), File(name="/etc/issue")) == set()


def test_a_live_reload_compiles_off_the_event_loop(tmp_path):
    """Compiling (AutoEdges may run dpkg-query) must not stall every watch of the agent.

    The thread that compiles is seen in the "Adding AutoEdge" log record it emits.
    """
    import asyncio
    import logging
    import threading

    from helpers import run_async

    from pymgmt.events.inotify import InotifyHub
    from pymgmt.frontends.yamlgraph import YamlFrontend

    g = tmp_path / "g.yaml"

    def write(version: str) -> None:
        g.write_text(
            f"graph: v{version}\nresources:\n  file:\n  - name: {tmp_path}/d/\n"
            f"  - name: {tmp_path}/d/f\n    content: '{version}'\n"
        )

    records: list[logging.LogRecord] = []

    class Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Adding AutoEdge"):
                records.append(record)

    async def reload_once() -> None:
        hub = InotifyHub()
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        hub_task = asyncio.create_task(hub.run(started))
        await started
        graphs = YamlFrontend(str(g), debounce=0.01).graphs(hub)
        try:
            await anext(graphs)  # the first graph
            records.clear()
            write("2")
            await anext(graphs)  # the reload
        finally:
            await graphs.aclose()
            hub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hub_task

    write("1")
    handler = Record()
    logger = logging.getLogger("pymgmt")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        run_async(reload_once())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert records, "the reload compiled no AutoEdge"
    assert all(r.thread != threading.main_thread().ident for r in records)
