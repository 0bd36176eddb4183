"""The order the fast path changes files in (oneshot/apply.py `waves`)."""

from __future__ import annotations

from pymgmt.oneshot.apply import waves
from pymgmt.oneshot.plan import Plan


def _plan(after: list[tuple[int, ...]]) -> Plan:
    plan = Plan("g", "g.yaml", len(after), sum(map(len, after)), [])
    plan.files = [(f"/f{i}", False, False, b"", None, None, None) for i in range(len(after))]
    plan.names = [f"File[f{i}]" for i in range(len(after))]
    plan.after = after
    return plan


def test_each_file_comes_after_every_file_it_depends_on() -> None:
    # 0 -> 1 -> 3, 0 -> 2, 4 alone; 1 is converged (not to change)
    plan = _plan([(), (0,), (0,), (1,), ()])
    assert waves(plan, {0: [], 2: [], 3: [], 4: []}) == [[0, 4], [2], [3]]


def test_a_chain_longer_than_the_recursion_limit_is_ordered() -> None:
    n = 5000
    plan = _plan([(), *((i,) for i in range(n - 1))])
    assert waves(plan, {i: [] for i in reversed(range(n))}) == [[i] for i in range(n)]
