"""DOT output of a graph (pure: returns text; the CLI writes and renders it).

Shown: every vertex as ``Kind[name]`` (a grouped vertex lists its members),
user edges solid, automatic edges dashed, ``notify`` edges red, and Send/Recv
edges labelled ``send -> recv``.
"""

from __future__ import annotations

from typing import Any

from .model import Graph, key_str


def _q(s: str) -> str:
    """A DOT quoted string; newlines become DOT's line breaks."""
    escaped = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(graph: Graph[Any]) -> str:
    lines = [f"digraph {_q(graph.name or 'graph')} {{", "  rankdir=LR;", "  node [shape=box];"]
    nl = "\n"
    for key, v in graph.vertices.items():
        members = getattr(v, "members", None) or []
        if members:
            names = "\n".join(sorted([key[1], *(m.name for m in members)]))
            label = f"{key[0]} (autogroup)\n{names}"
            lines.append(f"  {_q(key_str(key))} [label={_q(label)}, peripheries=2];")
        else:
            lines.append(f"  {_q(key_str(key))} [label={_q(key[0] + nl + key[1])}];")
    for e in graph.edges:
        attrs = []
        if e.auto:
            attrs.append("style=dashed")
        if e.notify:
            attrs.append("color=red")
        labels = [
            x
            for x in ("notify" if e.notify else "", f"{e.send} -> {e.recv}" if e.send else "")
            if x
        ]
        if labels:
            attrs.append(f"label={_q(', '.join(labels))}")
        attr = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_q(key_str(e.src))} -> {_q(key_str(e.dst))}{attr};")
    lines.append("}")
    return "\n".join(lines) + "\n"
