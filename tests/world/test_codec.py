"""The export codec: every kind round-trips; hostile bytes are refused, briefly."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymgmt.resources.base import _REGISTRY, Resource, kinds, param
from pymgmt.resources.file import File
from pymgmt.types import check_value, is_optional, nul_problem, unwrap_optional
from pymgmt.world.codec import MAX_BYTES, DecodeError, decode, encode

#: strings a param of any kind may plausibly hold, mixed with random text
_WORDS = ["/tmp/a", "/tmp/b/c", "0644", "0600", "root", "installed", "exists", "true", "echo hi"]


def _values(tp: Any) -> st.SearchStrategy[Any]:
    """Values of a declared param type (and, for optionals, None)."""
    if is_optional(tp):
        return st.none() | _values(unwrap_optional(tp))
    origin = get_origin(tp)
    if tp is str:
        return st.sampled_from(_WORDS) | st.text(max_size=12)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-5, 10**6)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False, width=64)
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin is list:
        return st.lists(_values(get_args(tp)[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
    raise AssertionError(f"no strategy for {tp}")


def _resources(cls: type[Resource]) -> st.SearchStrategy[Resource]:
    fields = {name: _values(tp) for name, tp in cls.param_types.items()}
    name = st.sampled_from(["r1", "/tmp/a", "x@y"]) | st.text(min_size=1, max_size=10)
    return st.builds(lambda n, p: cls(name=n, **p), name, st.fixed_dictionaries(fields))


def _valid(res: Resource) -> bool:
    """What every frontend accepts: typed, no NUL where the OS would cut, no problems;
    and, for a name that comes from another host, no control character."""
    for fname, tp in res.param_types.items():
        value = getattr(res, fname)
        if check_value(tp, value) or (fname not in res.binary_params and nul_problem(value)):
            return False
    return "\0" not in res.name and res.name.isprintable() and not res.problems()


@pytest.mark.parametrize("kind", sorted(kinds()))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_kind_round_trips_exactly_what_validation_accepts(kind: str, data: Any) -> None:
    cls = kinds()[kind]
    res = data.draw(_resources(cls))
    raw = encode(res)
    if _valid(res):
        back = decode(raw, {kind})
        assert type(back) is cls
        assert back.same_as(res), (back, res)
        assert encode(back) == raw
    else:
        with pytest.raises(DecodeError):
            decode(raw, {kind})


def test_metaparams_do_not_travel() -> None:
    from pymgmt.metaparams import MetaParams

    res = File(name="f", path="/tmp/f", content="x", meta=MetaParams(retry=3))
    doc = json.loads(encode(res))
    assert doc == {
        "v": 1,
        "kind": "file",
        "name": "f",
        "params": {"path": "/tmp/f", "content": "x"},
    }
    assert decode(encode(res)).meta == MetaParams()


def test_params_at_their_default_are_left_out_and_read_back_as_defaults() -> None:
    """A param added by a newer pymgmt only stops an older collector when it is used."""
    res = File(name="f", path="/tmp/f", content="", mode="0644", state="exists")
    doc = json.loads(encode(res))
    assert doc["params"] == {"path": "/tmp/f", "content": "", "mode": "0644"}
    back = decode(encode(res), {"file"})
    assert back.same_as(res)
    assert (back.source, back.owner, back.state) == (None, None, "exists")
    # an older writer's export, every param spelt out, reads the same
    full = {"v": 1, "kind": "file", "name": "f", "params": {**doc["params"], "source": None}}
    assert decode(json.dumps(full).encode(), {"file"}).same_as(res)


def test_a_received_secret_is_never_exported() -> None:
    """Send/Recv fills the running copy: the export is the graph's declaration."""
    from pymgmt.frontends.compile import compile_graph
    from pymgmt.graph.model import Edge, Graph
    from pymgmt.resources.password import Password

    graph: Graph[Any] = Graph(name="t")
    graph.add(Password(name="pw"))
    f = File(name="/tmp/f", template="pw={{ pw }}\n", vars={"user": "app"})
    graph.add(f)
    edge = Edge(("password", "pw"), ("file", "/tmp/f"), "e", send="password", recv="vars.pw")
    graph.connect(edge)
    running = compile_graph(graph).graph.vertices[("file", "/tmp/f")]
    running.receive({"vars.pw": "s3cret-never-exported"}, frozenset({"vars.pw"}))
    assert running.vars == {"user": "app", "pw": "s3cret-never-exported"}
    assert f.vars == {"user": "app"}  # the declaration's dict is not the running one's
    assert encode(running) == encode(f)
    assert b"s3cret" not in encode(running)


def _doc(**params: Any) -> bytes:
    return json.dumps({"v": 1, "kind": "file", "name": "f", "params": params}).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b"[1]", "not a JSON object"),
        (b'{"v":1,"kind":"file","name":"f","params":{},"x":1}', "unknown field 'x'"),
        (b'{"v":1,"kind":"file","name":"f"}', "no 'params' field"),
        (b'{"v":2,"kind":"file","name":"f","params":{}}', "format version is 2"),
        (b'{"v":true,"kind":"file","name":"f","params":{}}', "format version is True"),
        (b'{"v":1,"kind":"nuke","name":"f","params":{}}', "'nuke' is not a known kind"),
        (b'{"v":1,"kind":"exec","name":"f","params":{"cmd":"x"}}', "'exec' is not collected"),
        (b'{"v":1,"kind":"file","name":"","params":{}}', "name is not a non-empty string"),
        (b'{"v":1,"kind":"file","name":"a\\u0000b","params":{}}', "NUL"),
        (b'{"v":1,"kind":"file","name":"f","params":[]}', "params are not a JSON object"),
        (_doc(path="/tmp/f", hack="x"), "file has no param 'hack'"),
        (_doc(path=5), "param 'path': expected a string, got an integer"),
        (_doc(path="/tmp/f", state="gone"), "param 'state': expected one of"),
        (_doc(path="relative"), "param 'path': must be an absolute path"),
        (_doc(path="/tmp/a\x00b"), "param 'path': must not contain a NUL"),
        (_doc(path="/tmp/f", mode="7777777"), "param 'mode'"),
        (b'{"v":1,"v":1,"kind":"file","name":"f","params":{}}', "the key 'v' twice"),
        (b'{"v":NaN,"kind":"file","name":"f","params":{}}', "NaN, which is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_decode_refuses_junk_with_a_short_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as e:
        decode(data, {"file"})
    assert reason in e.value.reason
    assert len(e.value.reason) <= 200


def test_decode_refuses_oversize_before_parsing() -> None:
    data = _doc(path="/tmp/f", content="x" * MAX_BYTES)
    with pytest.raises(DecodeError, match="more than the"):
        decode(data, {"file"})


def test_a_huge_value_is_never_echoed() -> None:
    huge = "A" * 500_000
    for data in (_doc(path="/tmp/f", state=huge), _doc(path="/" + huge), _doc(mode=huge)):
        with pytest.raises(DecodeError) as e:
            decode(data, {"file"})
        assert len(e.value.reason) <= 200
        assert "A" * 100 not in e.value.reason


class _Vault(Resource):
    """A kind with a secret param, to prove its value never reaches a reason.

    Registered only for the tests that use it (the registry is process-wide).
    """

    token: str = param("", doc="a secret", secret=True)
    level: Literal["low", "high"] = param("low", doc="a choice")

    def problems(self) -> list[tuple[str, str]]:
        if self.token.startswith("bad"):
            return [("token", f"token {self.token!r} is not allowed")]
        if self.level == "high":
            return [("level", f"level high needs a token other than {self.token!r}")]
        return []


@pytest.mark.parametrize(
    "params",
    [
        {"token": "bad-s3cr3t-value"},
        {"token": "s3cr3t-value", "level": "high"},
        {"token": ["s3cr3t-value"]},
    ],
)
def test_a_secret_value_never_appears_in_a_reason(
    params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Vault, "kind", "test_codec_vault")
    monkeypatch.setitem(_REGISTRY, "test_codec_vault", _Vault)
    data = json.dumps({"v": 1, "kind": "test_codec_vault", "name": "v", "params": params}).encode()
    with pytest.raises(DecodeError) as e:
        decode(data)
    assert "s3cr3t" not in e.value.reason
    assert "s3cr3t" not in str(e.value)


def test_an_unencodable_string_is_exported_and_refused_by_readers() -> None:
    raw = encode(File(name="f", path="/tmp/f", content="\udc80"))
    with pytest.raises(DecodeError, match="not valid UTF-8"):
        decode(raw)
