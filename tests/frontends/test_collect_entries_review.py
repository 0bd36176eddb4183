"""Two collect entries of one kind (review of issue 9).

Only the first entry of a kind was used, the second silently ignored: the
files the user expected in its directory (or under its tighter mode) never
came, and nothing said why.
"""

from __future__ import annotations

import pytest

from pymgmt.errors import InputError, InputErrors
from pymgmt.frontends.yamlgraph import parse


def test_a_second_collect_entry_of_a_kind_is_an_input_error() -> None:
    text = (
        "graph: g\ncollect:\n- {kind: file, pattern: /srv/a/}\n- {kind: file, pattern: /srv/b/}\n"
    )
    with pytest.raises(InputError) as info:
        parse(text, "g.yaml")
    e = info.value
    (err,) = e.errors if isinstance(e, InputErrors) else [e]
    assert err.field == "kind"
    assert err.location is not None and err.location.line == 4
    assert "file" in err.message and "line 3" in err.message
