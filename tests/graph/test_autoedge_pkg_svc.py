"""AutoEdges of pkg and svc: a package before the files and units it ships,
a unit file before its service. Uses this machine's dpkg database (read-only)."""

from __future__ import annotations

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
