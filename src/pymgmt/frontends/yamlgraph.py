"""The mgmt YAML graph format, read strictly, with file:line:column errors.

Files of mgmt's own examples run unchanged::

    graph: mygraph
    comment: optional, ignored
    resources:
      file:
      - name: file1
        path: /tmp/f1
        mode: 0644          # unquoted (YAML 1.1 octal) and '0644' mean the same
        meta: {noop: true}
    edges:
    - name: e1
      from: {kind: exec, name: exec1}
      to: {kind: file, name: file1}
      notify: false
    collect:
    - kind: file
      pattern: /tmp/

Unlike mgmt (whose parser ignores unknown keys) every key is checked, and
every problem in the file is reported in one pass, each with its location and
a "did you mean" for misspelt kinds and fields.

A ``@@name`` resource is applied here like any other, and also published
for other hosts to collect: its key is in `Graph.exported`. ``collect:``
entries (`Collect`) say which of other hosts' exports this host takes in.

The rooms: `yamlsyntax` (libyaml, readable syntax errors), `yamlbuild`
(nodes to a declared graph, each piece checked with its location),
`yamlfile` (the live file frontend), and `compile.accept` (the graph-wide
checks and compiling every frontend's graph goes through). This module
keeps the entry points.
"""

from __future__ import annotations

import logging

from ..graph.model import Collect
from .compile import Compiled, accept
from .graphfile import read_graph_file, source_name
from .yamlbuild import declare
from .yamlfile import YamlFrontend
from .yamlmodel import YamlGraph

log = logging.getLogger("pymgmt.yamlgraph")


def load(path: str) -> YamlGraph:
    """Read, fully validate and compile a graph file (``-``: standard input); InputErrors."""
    return parse(read_graph_file(path), source_name(path))


def load_with_text(path: str) -> tuple[bytes, Compiled]:
    """Read and accept a graph file: the bytes read, and the compiled result.

    ``Compiled.declared`` is the declared graph: handed to `YamlFrontend`
    as ``first`` (with the bytes) and the Compiled to the Engine as
    ``accepted``, nothing is read or compiled twice for an unchanged file.
    """
    text = read_graph_file(path)
    return text, accept(declare(text, source_name(path)))


def parse(text: bytes | str, filename: str) -> YamlGraph:
    """The validated, compiled graph; its warnings are logged (and kept on it)."""
    graph = accept(declare(text, filename)).graph
    assert isinstance(graph, YamlGraph)
    return graph


__all__ = [
    "Collect",
    "Compiled",
    "YamlFrontend",
    "YamlGraph",
    "declare",
    "load",
    "load_with_text",
    "parse",
]
