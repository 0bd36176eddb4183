"""AutoEdges of pkg and svc: a package before the files and units it ships,
a unit file before its service. Uses this machine's dpkg database (read-only)."""

from __future__ import annotations

import os
import shutil
import subprocess

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
    """The engine compiles (AutoEdges may run dpkg-query) without stalling every watch.

    The thread that compiles is seen in the "Adding AutoEdge" log record it emits.
    """
    import asyncio
    import logging
    import threading

    from helpers import run_async

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
        from pymgmt.engine.engine import Engine
        from pymgmt.report.events import GraphSwapped
        from pymgmt.world.local import LocalWorld

        swaps: list[object] = []

        class Sink:
            def emit(self, event: object) -> None:
                if isinstance(event, GraphSwapped):
                    swaps.append(event)

        engine = Engine(world=LocalWorld("t"), reporter=Sink(), state_dir=tmp_path / "state")
        front = YamlFrontend(str(g), debounce=0.01)
        task = asyncio.create_task(engine.run(front))
        try:
            while engine.graph is None:  # noqa: ASYNC110 - the first graph
                await asyncio.sleep(0.005)
            records.clear()
            write("2")
            while not swaps:  # noqa: ASYNC110 - the reload, compiled by the engine
                await asyncio.sleep(0.005)
        finally:
            engine.stop("test")
            await task

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


# -- what the search costs: dpkg-query runs only when it can matter, once ------------------


@pytest.fixture
def dpkg_calls(tmp_path, monkeypatch):
    """Every dpkg-query the compile runs (its first argument, one line a call), logged by a
    wrapper first on PATH that then runs the real one."""
    from pymgmt.resources import pkg

    real = shutil.which("dpkg-query")
    log = tmp_path / "dpkg-calls"
    wrapper = tmp_path / "bin" / "dpkg-query"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(pkg, "_SHIPPED", {})  # a cold cache: nothing known yet

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    return calls


@needs_dpkg
def test_a_graph_of_packages_only_asks_dpkg_nothing(dpkg_calls):
    pkgs = [Pkg(name=n) for n in ("base-files", "hostname", "libc6")]
    assert _edges(*pkgs) == set()
    assert dpkg_calls() == []


@needs_dpkg
def test_all_packages_are_looked_up_in_one_query(dpkg_calls):
    edges = _edges(
        Pkg(name="base-files"),
        Pkg(name="hostname"),
        Pkg(name="no-such-package-pymgmt"),
        File(name="/etc/issue"),
        File(name="/bin/hostname"),
    )
    assert edges == {
        ("Pkg[base-files]", "File[/etc/issue]"),
        ("Pkg[hostname]", "File[/bin/hostname]"),
    }
    assert len(dpkg_calls()) == 1, dpkg_calls()


@needs_dpkg
def test_a_package_named_with_its_architecture_still_ships_its_files(dpkg_calls):
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert _edges(Pkg(name=f"base-files:{arch}"), File(name="/etc/issue")) == {
        (f"Pkg[base-files:{arch}]", "File[/etc/issue]")
    }
