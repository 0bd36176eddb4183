"""Reachability as bitsets, computed in one pass over a topological order.

Bit i of ``reach[v]`` is set when the vertex at position i of `order` can be
reached from v by following edges. With Python's big integers an OR of two
10k-bit sets is a few hundred machine words, so the closure of a 10k-vertex
graph costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .model import Key


def descendants(order: Sequence[Key], children: Mapping[Key, Sequence[Key]]) -> dict[Key, int]:
    """Bitset of every vertex reachable from each vertex (not itself)."""
    pos = {k: i for i, k in enumerate(order)}
    reach: dict[Key, int] = {}
    for k in reversed(order):
        bits = 0
        for c in children.get(k, ()):
            bits |= (1 << pos[c]) | reach[c]
        reach[k] = bits
    return reach


def ancestors(order: Sequence[Key], parents: Mapping[Key, Sequence[Key]]) -> dict[Key, int]:
    """Bitset of every vertex that can reach each vertex (not itself)."""
    pos = {k: i for i, k in enumerate(order)}
    anc: dict[Key, int] = {}
    for k in order:
        bits = 0
        for p in parents.get(k, ()):
            bits |= (1 << pos[p]) | anc[p]
        anc[k] = bits
    return anc
