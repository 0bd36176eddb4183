"""Exported resources on the wire: a resource to bytes and back.

The format is JSON, derived from each kind's `param()` declarations, so a new
kind needs no code here::

    {"v": 1, "kind": "file", "name": "f3b", "params": {"path": "/x/y/f3b", ...}}

Only declared params travel, never metaparams: as in mgmt, the collecting
host decides how a collected resource is run (retry, sema, ...), not the
host that exported it.

Decoding reads what another host wrote, which this agent (running as root)
must treat as hostile: the size is capped before parsing, the JSON is strict
(UTF-8, no NaN, no duplicate keys, no unknown fields), the kind must be one
the caller asked for, every param must be declared by that kind and its
value is checked by the same `check_value` every frontend uses, then by the
kind's own `problems()`. A refusal is a `DecodeError` whose reason is short:
it never quotes a long value, nor any value of a param declared secret.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection
from typing import Any

from ..errors import PymgmtError
from ..resources.base import Resource, kinds, param_default
from ..types import PATH_MAX, check_value, nul_problem

#: the format version written; a reader refuses any other
VERSION = 1
#: the largest export read: a collected file's content may be 1 MiB, plus JSON's
#: escaping of it (up to 6 bytes a byte for control characters is not covered:
#: such content is refused, it is not a config file) and the other params
MAX_BYTES = (1 << 20) + (64 << 10)
#: the longest a reason quotes any value
_QUOTE_MAX = 60


class DecodeError(PymgmtError):
    """An export that cannot be used; `reason` is short and safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(res: Resource) -> bytes:
    """The export of `res`: its kind, name and each declared param not at its default, as JSON.

    The values are the resource's declared ones: what Send/Recv filled in
    (a running resource's ``recv_fields``, one ``vars.NAME`` too) is left
    out, so a received value, a secret above all, is never exported. A
    param left at its default is left out, as the reader fills defaults in:
    so a param that a newer pymgmt adds (a file's ``template``, issue 15)
    does not make an older collector refuse every export during a rolling
    upgrade, only those that use it.
    """
    declared = res.params()
    params = {
        f.name: _plain(value)
        for f in res.params_fields()
        if f.name in declared and not _is_default(f, value := declared[f.name])
    }
    doc = {"v": VERSION, "kind": res.kind, "name": res.name, "params": params}
    text = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    # A lone surrogate (possible from the Python API) is written as is: the
    # readers refuse the export as invalid UTF-8 and say so, where it matters.
    return text.encode("utf-8", "surrogatepass")


def _is_default(f: dataclasses.Field[Any], value: object) -> bool:
    """Whether `value` is `f`'s default (the same type too: True is not 1 here).

    A required param has none, so it is always written.
    """
    default = param_default(f)
    return type(value) is type(default) and value == default


def _plain(value: object) -> object:
    """JSON's shape of a param value (tuples become lists)."""
    if isinstance(value, tuple):
        return list(value)
    return value


def decode(data: bytes, allowed: Collection[str] | None = None) -> Resource:
    """The resource in `data`, or DecodeError; `allowed` limits the kinds accepted.

    With `allowed` None every registered kind is accepted (tests, tools).
    """
    if len(data) > MAX_BYTES:
        raise DecodeError(f"the export is {len(data):,} bytes, more than the {MAX_BYTES:,} allowed")
    doc = _parse(data)
    if not isinstance(doc, dict):
        raise DecodeError("the export is not a JSON object")
    fields = set(doc)
    if fields != {"v", "kind", "name", "params"}:
        extra = sorted(fields - {"v", "kind", "name", "params"})
        missing = sorted({"v", "kind", "name", "params"} - fields)
        what = f"unknown field {quote(extra[0])}" if extra else f"no {missing[0]!r} field"
        raise DecodeError(f"the export has {what}")
    version = doc["v"]
    if type(version) is not int or version != VERSION:
        raise DecodeError(f"the export's format version is {quote(version)}, not {VERSION}")
    cls = _kind(doc["kind"], allowed)
    name = doc["name"]
    if not isinstance(name, str) or not name:
        raise DecodeError("the export's name is not a non-empty string")
    if "\0" in name or len(name.encode("utf-8", "surrogatepass")) >= PATH_MAX:
        raise DecodeError("the export's name has a NUL or is too long")
    if not name.isprintable():
        # it becomes a vertex name, shown in every log line and report about it
        raise DecodeError(f"the export's name {quote(name)} has control characters")
    params = doc["params"]
    if not isinstance(params, dict):
        raise DecodeError("the export's params are not a JSON object")
    return _build(cls, name, params)


def _parse(data: bytes) -> Any:
    """Strict JSON: valid UTF-8, no NaN/Infinity, no key twice, bounded depth."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("the export is not valid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("the export is nested too deeply") from None
    except ValueError as e:
        # json's message names a position, never the text itself
        raise DecodeError(f"the export is not valid JSON ({str(e)[:80]})") from None


def _no_constant(name: str) -> Any:
    raise DecodeError(f"the export holds {name}, which is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DecodeError(f"the export has the key {quote(k)} twice")
        out[k] = v
    return out


def _kind(kind: object, allowed: Collection[str] | None) -> type[Resource]:
    if not isinstance(kind, str):
        raise DecodeError("the export's kind is not a string")
    registered = kinds()
    if kind not in registered:
        raise DecodeError(f"the export's kind {quote(kind)} is not a known kind")
    if allowed is not None and kind not in allowed:
        raise DecodeError(f"the kind {quote(kind)} is not collected here")
    return registered[kind]


def _build(cls: type[Resource], name: str, params: dict[str, Any]) -> Resource:
    """The resource, after each param's type and the kind's own checks passed."""
    declared = {f.name: f for f in cls.params_fields()}
    for pname, value in params.items():
        if pname not in declared:
            raise DecodeError(f"{cls.kind} has no param {quote(pname)}")
        secret = pname in cls.secrets
        err = check_value(cls.param_types[pname], value)
        if not err and pname not in cls.binary_params:
            err = nul_problem(value)
        if err:
            shown = "a value of the wrong type or form (secret, not shown)" if secret else err
            raise DecodeError(f"param {pname!r}: {shorten(shown)}")
    for pname, f in declared.items():
        if pname not in params and _required(f):
            raise DecodeError(f"the export has no value for {cls.kind}'s required {pname!r}")
    values: dict[str, Any] = dict(params)
    try:
        res = cls(name=name, **values)
    except (TypeError, ValueError) as e:  # a kind's __post_init__ may refuse
        raise DecodeError(f"{cls.kind} refused the params: {shorten(str(e))}") from None
    for fname, msg in res.problems():
        raise DecodeError(f"param {fname!r}: {safe_message(res, fname, msg)}")
    return res


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def safe_message(res: Resource, fname: str, msg: str) -> str:
    """`msg` about `res`'s `fname`, short, and with no secret param's value in it."""
    if res.is_secret(fname):
        return "invalid (a secret value, not shown)"
    for s in res.secrets:
        value = getattr(res, s, None)
        if isinstance(value, str) and value and value in msg:
            msg = msg.replace(value, "<redacted>")
    return shorten(msg)


def shorten(text: str, limit: int = 160) -> str:
    """`text` cut to `limit` characters, each quoted value in it to a few dozen.

    A reason is read by people, not copied, and the messages of validators
    quote what they got: a hostile export may send a megabyte there.
    """
    text = _LONG_QUOTE.sub(_clip, text[:4096])
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: a quoted value longer than _QUOTE_MAX (repr() quotes with ' or ")
_LONG_QUOTE = re.compile(rf"(['\"])((?:(?!\1).){{{_QUOTE_MAX},}})(\1|$)", re.DOTALL)


def _clip(m: re.Match[str]) -> str:
    return f"{m.group(1)}{m.group(2)[: _QUOTE_MAX - 8]}...{m.group(1)}"


def printable(text: str, limit: int = 160) -> str:
    """`text` for a terminal or a log: each character a terminal would act on
    (escape sequences, newlines, bidi overrides...) written as its escape, then
    `shorten`ed. For text from other hosts that is shown, not quoted."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: 4 * limit])
    return shorten(text, limit)


def quote(value: object) -> str:
    """repr() of `value`, cut short: a hostile export may send megabytes."""
    text = repr(value)
    return text if len(text) <= _QUOTE_MAX else text[: _QUOTE_MAX - 4] + "...'"
