"""An unchanged check's JSON line is written without the encoder: the very same line.

`JsonReporter` writes the line of a `Checked` with no changes itself (an
agent's start reports 100,000 of them, issue 13). These tests compare it,
character for character, with what the encoder writes for the same event.
"""

from __future__ import annotations

import io
import json
import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from pymgmt.report.console import _ENCODER, JsonReporter, _unchanged_line
from pymgmt.report.events import ChangeInfo, Checked

_TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from('"\\\n\t\x00\x7f\u2028\udcffé☃'))
_SECONDS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 1e-05, 1e300])


def _encoded(now: float, ev: Checked) -> str:
    return _ENCODER.encode({"time": now, "event": "checked", **ev._asdict()}) + "\n"


@settings(max_examples=500, deadline=None)
@given(
    vertex=_TEXT,
    reason=st.sampled_from(["start", "event", "tick", "upstream", "retry"]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    seconds=_SECONDS,
    note=_TEXT,
    now=st.floats(min_value=0, max_value=4e9).map(lambda t: round(t, 6)),
)
def test_the_line_is_the_encoders_line(vertex, reason, flags, seconds, note, now) -> None:
    applied, noop, drift, refreshed = flags
    ev = Checked(
        vertex=vertex,
        reason=reason,  # type: ignore[arg-type]
        changes=[],
        applied=applied,
        noop=noop,
        drift=drift,
        seconds=seconds,
        note=note,
        refreshed=refreshed,
    )
    line = _unchanged_line(now, ev)
    if math.isfinite(seconds):
        assert line == _encoded(now, ev)
    else:
        assert line is None  # NaN and infinities: the encoder's own words


def test_a_check_with_changes_or_lists_goes_through_the_encoder() -> None:
    base = Checked("File[f]", "start", [], False, False, False, 0.001)
    change = ChangeInfo(field="content", old="a", new="b")
    for ev in (
        base._replace(changes=[change]),
        base._replace(pending_on=["File[d]"]),
        base._replace(notified=["Svc[s]"]),
        base._replace(seconds=1),  # an int: not a float's repr
    ):
        assert _unchanged_line(1.5, ev) is None
    assert _unchanged_line(1.5, base) == _encoded(1.5, base)


def test_the_reporter_writes_an_unchanged_check_as_json_with_the_time() -> None:
    out = io.StringIO()
    before = time.time()
    JsonReporter(out).emit(Checked('File[/a "b"]', "start", [], False, False, False, 2e-05))
    line = json.loads(out.getvalue())
    assert out.getvalue().count("\n") == 1
    assert before - 1 <= line.pop("time") <= time.time() + 1
    assert line == {
        "event": "checked",
        "vertex": 'File[/a "b"]',
        "reason": "start",
        "changes": [],
        "applied": False,
        "noop": False,
        "drift": False,
        "seconds": 2e-05,
        "pending_on": [],
        "note": "",
        "refreshed": False,
        "notified": [],
    }
