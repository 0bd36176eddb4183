"""The import contract: data flows one way (frontend -> graph -> engine -> resources).

These pin the two arrows that must never point backwards (graph/ stays pure,
resources/ never reach into the engine) and keep `pymgmt --version` free of
heavy imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "pymgmt"


def _imports(package: str) -> set[tuple[str, str]]:
    """(file, imported pymgmt subpackage) for every import in a subpackage."""
    found: set[tuple[str, str]] = set()
    for path in (SRC / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level >= 2:  # from ..engine import x
                    found.add((path.name, mod.split(".")[0]))
                elif mod.startswith("pymgmt."):
                    found.add((path.name, mod.split(".")[1]))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("pymgmt."):
                        found.add((path.name, alias.name.split(".")[1]))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("graph", {"engine", "resources", "world", "frontends", "cli", "events"}),
        ("resources", {"engine", "frontends", "cli"}),
        ("world", {"engine", "resources", "frontends", "cli"}),
        ("report", {"engine", "resources", "frontends", "cli"}),
    ],
)
def test_imports_never_point_backwards(package: str, forbidden: set[str]) -> None:
    bad = sorted(
        (f, m)
        for f, m in _imports(package)
        if m in forbidden and not (package == "world" and f in _TYPED_WORLD and m == "resources")
    )
    assert not bad, f"{package}/ must not import {forbidden}: {bad}"


#: world/'s typed layer over the key space: it turns exports into resources and
#: back (issue 9), so it sits above resources/; the World itself stays below
_TYPED_WORLD = {"codec.py", "resworld.py", "confine.py"}


def test_version_command_imports_nothing_heavy() -> None:
    code = (
        "import sys, pymgmt.cli.main as m\n"
        "try:\n    m.main(['--version'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'asyncio', 'yaml', 'ctypes', 'pymgmt.engine', 'pymgmt.report.events'}\n"
        "heavy &= set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("[]"), out


def _module_imports(path: Path) -> set[str]:
    """Sibling modules one file imports (``from .x import``, ``from . import x``)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pymgmt.engine."):
            found.add((node.module or "").split(".")[2])
    return found


@pytest.mark.parametrize("module", ["worker", "services"])
def test_a_worker_never_reaches_back_into_the_engine(module: str) -> None:
    """The Worker gets a narrow Services object, not the Engine (no engine <-> worker circle)."""
    assert "engine" not in _module_imports(SRC / "engine" / f"{module}.py")


def test_frontends_import_the_engine_only_to_run_a_built_graph() -> None:
    """Frontends yield declared graphs; only api.run_async (lazily) starts an Engine."""
    users = sorted(f for f, m in _imports("frontends") if m == "engine")
    assert users == ["api.py"], users
