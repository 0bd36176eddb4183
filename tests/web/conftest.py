"""Fixtures of the web tests: a real agent serving --prometheus on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Agent, event
from webutil import LISTEN, serving


@pytest.fixture
def served(agent: Callable[..., Agent]) -> Callable[..., tuple[Agent, str]]:
    """Start an agent with --prometheus: (the agent, its base URL), once it settled.

    ``settled=False`` returns as soon as it serves.
    """

    def start(graph: Path, *args: str, settled: bool = True) -> tuple[Agent, str]:
        a = agent(graph, *LISTEN, *args)
        base = serving(a)
        if settled:
            a.wait_event(event("settled"), what="the first settled")
        return a, base

    return start
