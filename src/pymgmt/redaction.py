"""Secret values never leave the process in clear text.

Redacting by field name (``password: <redacted>``) is not enough: a secret
sent into an exec's ``cmd`` comes back in the plan (``run 'echo s3cret'``),
in the command's error output and in the recap (issue 8, item 15). So the
*values* are known here, and every text that leaves the agent is scrubbed
of them:

* a value becomes secret when a password resource produces it, when a
  resource receives it over Send/Recv from a secret output, or when it is
  the value of a param declared ``secret=True`` (`register_value`);
* the engine passes every event through `scrub` before any reporter sees it
  (console, JSON, recap, the Python API's result);
* the CLI's log handler carries a `RedactingFilter` (messages, arguments and
  tracebacks); the CLI runs graphviz output through `redact` as well.

The registry is process-wide on purpose: a secret must not appear in any
output of this process, whichever engine or resource learned it. Values are
only ever added (a regenerated password keeps the old one redacted too).
A secret is replaced wherever it occurs, also inside longer text, so a very
short secret makes output hard to read; that is the price of never showing
it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from typing import Any, TypeVar

from .errors import InputError, InputErrors
from .report.record import Record

T = TypeVar("T")

#: What a secret is replaced with.
MARK = "<redacted>"

_lock = threading.Lock()
_values: set[str] = set()
#: compiled from _values; replaced whole on every change, so readers need no lock
_pattern: re.Pattern[str] | None = None


def register(value: str) -> None:
    """Treat `value` as secret from now on, in every output of this process."""
    global _pattern
    if not value:
        return
    # The forms a value takes once quoted by repr(), JSON or DOT.
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1]}
    forms.add(value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
    with _lock:
        if forms <= _values:
            return
        _values.update(forms)
        # longest first: a secret that contains another is replaced whole
        alternatives = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in alternatives))


def register_value(value: object) -> None:
    """Register every string inside `value` (a str, or a list/dict of them)."""
    if isinstance(value, str):
        register(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            register_value(k)
            register_value(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            register_value(v)
    elif value is not None and not isinstance(value, bool | int | float):
        register(str(value))


def is_secret(value: str) -> bool:
    """Whether `value` itself was registered as a secret (not merely contains one).

    For a store that keeps values beyond this process (the single-host
    World's file): what was secret when stored is registered again when read.
    """
    with _lock:
        return bool(value) and value in _values


def redact(text: str) -> str:
    """`text` with every registered secret replaced by ``<redacted>``."""
    pattern = _pattern
    return text if pattern is None else pattern.sub(MARK, text)


def scrub(obj: T) -> T:
    """A copy of `obj` (an event: dataclasses, lists, dicts, str) without secrets.

    Returns `obj` itself while no secret is registered, so graphs without
    secrets pay nothing.
    """
    pattern = _pattern
    return obj if pattern is None else _scrub(obj, pattern)


def _scrub(obj: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(obj, str):
        return pattern.sub(MARK, obj)
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if isinstance(obj, list | tuple):
        return type(obj)(_scrub(x, pattern) for x in obj)
    if isinstance(obj, dict):
        return {_scrub(k, pattern): _scrub(v, pattern) for k, v in obj.items()}
    if isinstance(obj, InputError):
        return _scrub_input_error(obj, pattern)
    if isinstance(obj, Record):  # the engine's events
        return obj._replace(**{n: _scrub(v, pattern) for n, v in obj._asdict().items()})
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = [f.name for f in dataclasses.fields(obj) if f.init]
        return dataclasses.replace(obj, **{n: _scrub(getattr(obj, n), pattern) for n in fields})
    text = str(obj)  # anything else is shown through its str()
    return pattern.sub(MARK, text) if pattern.search(text) else obj


def _scrub_input_error(e: InputError, pattern: re.Pattern[str]) -> InputError:
    """`e` rebuilt with its texts scrubbed, still an InputError (or InputErrors).

    A reloaded graph's errors travel in a GraphRejected event; the JSON
    reporter turns each into {message, file, line, ...}. Scrubbing one into
    a plain string would hand machines a bare line instead (review finding 8).
    """
    if isinstance(e, InputErrors):
        return InputErrors([_scrub_input_error(x, pattern) for x in e.errors])

    def sub(text: str | None) -> str | None:
        return None if text is None else pattern.sub(MARK, text)

    return InputError(
        pattern.sub(MARK, e.message),
        location=_scrub(e.location, pattern),
        field=sub(e.field),
        hint=sub(e.hint),
    )


class RedactingFilter(logging.Filter):
    """A handler filter: the record's message and traceback, with secrets replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        pattern = _pattern
        if pattern is None:
            return True
        record.msg = pattern.sub(MARK, record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = pattern.sub(MARK, record.exc_text)
        if record.stack_info:
            record.stack_info = pattern.sub(MARK, record.stack_info)
        return True
