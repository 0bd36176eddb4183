"""DOT output of a graph (pure: returns text; the CLI writes and renders it)."""

from __future__ import annotations

from typing import Any

from .model import Graph, key_str


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph[Any]) -> str:
    lines = [f"digraph {_q(graph.name or 'graph')} {{", "  rankdir=LR;", "  node [shape=box];"]
    for key in graph.vertices:
        lines.append(f"  {_q(key_str(key))} [label={_q(key[0] + chr(10) + key[1])}];")
    for e in graph.edges:
        attrs = ["color=red", f"label={_q('notify')}"] if e.notify else []
        attr = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_q(key_str(e.src))} -> {_q(key_str(e.dst))}{attr};")
    lines.append("}")
    return "\n".join(lines) + "\n"
