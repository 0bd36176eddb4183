"""`YamlGraph`, the declared graph of a YAML file, apart from the parser.

Its own module so that what holds one (the live frontend, the parse cache
of ``frontends/cache.py``) need not import PyYAML and the builder: a run
whose graph comes from the cache never parses (issue 13).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import Location
from ..graph.model import Graph, Key
from ..resources.base import Resource


@dataclass(eq=False)
class YamlGraph(Graph[Resource]):
    """A graph read from a YAML file (its `source`); ``@@`` names are in `exported`.

    The header keys of remote execution (``pymgmt run --remote FILE``, issue
    11) are kept as written, with where they were written: `remote` (mgmt's
    ``ssh://user@host:port`` target), `hostname` (the name the remote agent
    uses; default the URL's host) and `remotes` (pymgmt's hierarchical
    execution: graph files, relative to this one, that the remote host runs
    on further hosts). A graph run locally ignores them.
    """

    remote: str | None = None
    hostname: str | None = None
    remotes: list[str] = dataclasses.field(default_factory=list)
    #: where each header key above was written (key -> location)
    header_locations: dict[str, Location] = dataclasses.field(default_factory=dict)
    #: the lines of each resource's entry: (first line, last line, column of
    #: its mapping), 0-based; what `yamledit` re-reads of a one-resource edit
    item_lines: dict[Key, tuple[int, int, int]] = dataclasses.field(default_factory=dict)
