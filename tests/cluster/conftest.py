"""Fixtures for the multi-host tests: a `cluster` of real agents, always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster


@pytest.fixture
def cluster(no_leaks: None, tmp_path: Path) -> Iterator[Cluster]:
    """Hosts under tmp_path/cluster; every process and directory is gone afterwards.

    Depends on `no_leaks` so the agents and their etcd are gone before the leak check.
    """
    c = Cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.close()
