"""`Record`, the base of the engine's events: a frozen dataclass's behaviour, cheaply defined.

Issue 13: ``@dataclass(frozen=True)`` compiled six methods per event class
at import (25 ms for two dozen classes); a Record subclass compiles its one
constructor when the first record of it is made.
"""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from pymgmt.report import events
from pymgmt.report.console import JsonReporter
from pymgmt.report.record import Record, field


class Point(Record):
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


def test_fields_in_order_by_position_or_name_with_defaults() -> None:
    assert Point(1) == Point(x=1, y=0, tags=[])
    assert Point(1, 2, ["a"])._asdict() == {"x": 1, "y": 2, "tags": ["a"]}
    assert Point(y=3, x=1)._asdict() == {"x": 1, "y": 3, "tags": []}
    assert list(Point(y=3, x=1)._asdict()) == ["x", "y", "tags"]


def test_a_default_factory_makes_a_new_value_for_each_record() -> None:
    a, b = Point(1), Point(1)
    a.tags.append("mine")
    assert b.tags == []


def test_wrong_arguments_are_type_errors_as_for_any_constructor() -> None:
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(1, z=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Point(1, 2, [], 4)  # type: ignore[call-arg]


def test_records_cannot_be_changed() -> None:
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.y  # type: ignore[misc]
    assert p._replace(x=2) == Point(2) and p == Point(1)


def test_equal_and_hashed_by_class_and_values() -> None:
    class Other(Record):
        x: int
        y: int = 0

    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(1, 3)
    assert Point(1, 2) != Other(1, 2)
    assert events.Converged(1.0) == events.Converged(1.0)
    assert hash(events.Stopping("r")) == hash(events.Stopping("r"))
    assert len({events.HostJoined("a"), events.HostJoined("a"), events.HostLeft("a")}) == 2
    with pytest.raises(TypeError):
        hash(Point(1))  # a list field: unhashable, as a frozen dataclass's


def test_repr_and_class_patterns() -> None:
    assert repr(Point(1)) == "Point(x=1, y=0, tags=[])"
    match events.Stopping("bye", True):
        case events.Stopping(reason, interrupted=True):
            assert reason == "bye"
        case _:
            pytest.fail("no match")


def test_a_class_compiles_its_constructor_only_when_first_used() -> None:
    class Unused(Record):
        a: int

    assert Unused.__init__ is Record.__init__
    Unused(1)
    assert Unused.__init__ is not Record.__init__
    assert Unused(2).a == 2


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="non-default field 'b'"):

        class Bad(Record):
            a: int = 0
            b: int


def test_the_json_event_lists_the_fields_in_order_with_nested_records() -> None:
    change = events.ChangeInfo("content", "a", "b")
    checked = events.Checked(
        vertex="File[f]",
        reason="start",
        changes=[change],
        applied=True,
        noop=False,
        drift=False,
        seconds=0.5,
    )
    out = io.StringIO()
    JsonReporter(out).emit(checked)
    line = json.loads(out.getvalue())
    assert list(line)[:4] == ["time", "event", "vertex", "reason"]
    assert line["event"] == "checked"
    assert line["changes"] == [{"field": "content", "old": "a", "new": "b", "diff": ""}]
    assert line["notified"] == [] and line["seconds"] == 0.5
