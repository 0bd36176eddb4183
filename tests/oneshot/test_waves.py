"""The order the fast path runs a plan in (oneshot/execute.py): by readiness."""

from __future__ import annotations

from pathlib import Path

from pymgmt.oneshot.apply import Outcome
from pymgmt.oneshot.execute import execute
from pymgmt.oneshot.plan import Plan


def _plan(root: Path, after: list[tuple[int, ...]]) -> Plan:
    plan = Plan("g", "g.yaml", len(after), sum(map(len, after)), [])
    n = len(after)
    plan.files = [(str(root / f"f{i}"), False, False, b"x", None, None, None) for i in range(n)]
    plan.names = [f"File[f{i}]" for i in range(len(after))]
    plan.after = after
    return plan


def _order(plan: Plan, todo: list[int]) -> list[int]:
    outcome = Outcome({i: [("state", "absent", "exists")] for i in todo})
    execute(plan, outcome.todo, [], outcome)
    assert not outcome.failed, outcome.failed
    return [i for _, _, i, _ in outcome.notices]


def test_each_file_comes_after_every_file_it_depends_on(tmp_path: Path) -> None:
    # 0 -> 1 -> 3, 0 -> 2, 4 alone; 1 is converged (not to change)
    plan = _plan(tmp_path, [(), (0,), (0,), (1,), ()])
    (tmp_path / "f1").write_bytes(b"x")
    assert _order(plan, [0, 2, 3, 4]) == [0, 4, 2, 3]


def test_a_chain_longer_than_the_recursion_limit_is_ordered(tmp_path: Path) -> None:
    n = 5000
    plan = _plan(tmp_path, [(), *((i,) for i in range(n - 1))])
    assert _order(plan, list(reversed(range(n)))) == list(range(n))
