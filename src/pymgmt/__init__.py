"""pymgmt: a parallel, event-driven configuration management engine.

Layout (data flows one way: frontend -> graph -> engine -> resources)::

    errors.py       one exception tree
    types.py        the param type language shared by every frontend
    metaparams.py   engine-enforced per-resource settings
    graph/          PURE: model, toposort, graphviz
    engine/         asyncio: engine (changeover), worker per vertex, converger
    resources/      one module per kind, base.py holds the resource API
    events/         shared watchers (the inotify hub)
    frontends/      declared graphs: yamlgraph.py (mgmt's format), api.py (Python);
                    compile.py accept() (the one graph-wide validation, run by the engine)
    world/          base.py (the World protocol), local.py (single host)
    report/         typed events, console and JSON reporters, the recap
    cli/            argument parsing only

The public API is imported lazily, so ``pymgmt --version`` stays instant.
"""

from __future__ import annotations

from ._version import __version__

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~5 ms of --version
if TYPE_CHECKING:
    from typing import Any

_API = {
    "GraphBuilder": "pymgmt.frontends.api",
    "run": "pymgmt.frontends.api",
    "RunResult": "pymgmt.frontends.api",
    "Resource": "pymgmt.resources.base",
    "MetaParams": "pymgmt.metaparams",
    "File": "pymgmt.resources.file",
    "Exec": "pymgmt.resources.exec",
    "Noop": "pymgmt.resources.noop",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(f"module 'pymgmt' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)
