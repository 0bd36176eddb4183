"""The small type language of resource params.

A resource declares each param once, with a Python type annotation. This
module turns those annotations into checks that every frontend shares: the
YAML frontend converts nodes to values and the Python API passes values
directly, and both end in `check_value`, so a param has exactly one meaning.

Supported: ``str``, ``int``, ``float``, ``bool``, ``Literal[...]`` of strings,
``list[str]``, ``dict[str, str]``, and ``X | None`` of any of these.
"""

from __future__ import annotations

import datetime
import functools
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin


def describe(tp: Any) -> str:
    """A person's name for a type, used in "expected ..." messages."""
    if tp is str:
        return "a string"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "a boolean (true/false)"
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {describe(get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping of strings to strings"
    if is_optional(tp):
        return describe(unwrap_optional(tp))
    return getattr(tp, "__name__", str(tp))


@functools.cache  # called per param per resource by every frontend
def is_optional(tp: Any) -> bool:
    origin = get_origin(tp)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in get_args(tp)


@functools.cache
def unwrap_optional(tp: Any) -> Any:
    if not is_optional(tp):
        return tp
    rest = [a for a in get_args(tp) if a is not type(None)]
    return rest[0]


def type_name(value: object) -> str:
    """What a value is, in YAML words, for "got ..." messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"  # "a number" would not say what is wrong with it for an integer
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, datetime.date):  # a datetime too
        return "a timestamp"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def check_value(tp: Any, value: object) -> str | None:
    """Return None if `value` fits `tp`, else what was expected and what came."""
    if value is None:
        return None if is_optional(tp) else f"expected {describe(tp)}, got null"
    tp = unwrap_optional(tp)
    origin = get_origin(tp)
    ok: bool
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    elif origin is Literal:
        allowed = get_args(tp)
        if isinstance(value, str) and value not in allowed:
            hint = suggest(value, [str(a) for a in allowed])
            extra = f"; did you mean {hint!r}?" if hint else ""
            return f"expected {describe(tp)}, got {value!r}{extra}"
        ok = value in allowed
    elif origin is list:
        (item,) = get_args(tp)
        if not isinstance(value, list | tuple):
            ok = False
        else:
            for i, v in enumerate(value):
                err = check_value(item, v)
                if err:
                    return f"item {i}: {err}"
            return None
    elif origin is dict:
        if not isinstance(value, dict):
            ok = False
        else:
            for k, v in value.items():
                if not isinstance(k, str):
                    return f"expected {describe(tp)}, got a key that is not a string"
                if not isinstance(v, str):
                    return f"expected {describe(tp)}, got {type_name(v)} for key {k!r}"
            return None
    else:  # a nested declared structure (metaparams) checks itself
        ok = isinstance(value, tp)
    return None if ok else f"expected {describe(tp)}, got {type_name(value)}"


def suggest(word: str, choices: typing.Iterable[str]) -> str | None:
    """The nearest known name, for "did you mean" hints."""
    choices = list(choices)
    same_but_case = [c for c in choices if c.lower() == word.lower()]
    if same_but_case:
        return same_but_case[0]
    import difflib  # only for a misspelling: not on every start (issue 13)

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


# -- bounds on values that reach the operating system ------------------------------
#
# A graph is input from a person, and pymgmt runs as root: a value that makes
# no sense (a uid of -1, a retry delay of 2**64 ms, a path component of 300
# bytes, a NUL inside a command) is refused before anything runs, with its
# place in the file, instead of failing, or waiting for ever, at run time.
# README.md ("Limits") lists these numbers.

#: problems shown for one invalid graph; the rest are counted ("and K more")
MAX_PROBLEMS = 50
#: seconds in a day: the bound on waits, timeouts and poll intervals
DAY = 86_400
#: exec timeout and pollint, meta poll (seconds)
MAX_SECONDS = DAY
#: meta delay, maxdelay and timeout (milliseconds)
MAX_MILLISECONDS = DAY * 1000
#: timer interval (seconds): a year
MAX_TIMER_SECONDS = 365 * DAY
#: meta retry and burst
MAX_COUNT = 1_000_000
#: the largest uid or gid; (uid_t)-1 = 4294967295 means "leave unchanged" to chown
MAX_ID = 2**32 - 2
#: Linux's PATH_MAX (with its NUL) and NAME_MAX, in bytes
PATH_MAX = 4096
NAME_MAX = 255


def bound_problem(value: float, lowest: float, highest: float, unit: str = "") -> str | None:
    """ "must be between ..." when `value` is outside [lowest, highest]."""
    if lowest <= value <= highest:
        return None
    unit = f" {unit}" if unit else ""
    return f"must be between {lowest:,} and {highest:,}{unit}, got {value:,}"


def text_problem(text: str) -> str | None:
    """A NUL cannot pass through argv, environ or a path: the OS would cut there."""
    if "\0" in text:
        return "must not contain a NUL character (\\0)"
    return None


def nul_problem(value: object) -> str | None:
    """`text_problem` for a param value of any supported type (lists, mappings)."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, list | tuple):
        return next((text_problem(v) for v in value if isinstance(v, str) and "\0" in v), None)
    if isinstance(value, dict):
        for k, v in value.items():
            for text in (k, v):
                if isinstance(text, str) and "\0" in text:
                    return text_problem(text)
    return None


def path_problem(path: str) -> str | None:
    """An absolute path the kernel could take: no NUL, within PATH_MAX and NAME_MAX."""
    if not path.startswith("/"):
        return f"must be an absolute path, got {path!r}"
    if "\0" in path:
        return "must not contain a NUL character (\\0)"
    size = len(path.encode("utf-8", "surrogateescape"))
    if size >= PATH_MAX:
        return f"is longer than {PATH_MAX - 1:,} bytes, the most a path can have"
    if size <= NAME_MAX:
        return None  # no component can be longer than the whole path
    for part in path.split("/"):
        n = len(part.encode("utf-8", "surrogateescape"))
        if n > NAME_MAX:
            return (
                f"has a component of {n:,} bytes ({part[:20]!r}...); "
                f"one component has at most {NAME_MAX}"
            )
    return None


def canonical_path(path: str) -> str:
    """`path` with no empty component, keeping a final '/' (``/a//b/`` is ``/a/b/``).

    For comparing paths the kernel reads as one (a file and its own source,
    a tree and a copy inside it); ``.`` and ``..`` are refused, not resolved
    (see `dots_problem`).
    """
    plain = "/" + "/".join(p for p in path.split("/") if p)
    return plain + "/" if path.endswith("/") and plain != "/" else plain


def dots_problem(path: str) -> str | None:
    """A path with a ``.`` or ``..`` component: refused, as comparing it would need the disk."""
    if "/../" in path + "/" or "/./" in path + "/":
        return f"must be a normalised path, got {path!r}"
    return None


_NUMBERISH = re.compile(r"^[+-]?[0-9.]+([eE][+-]?[0-9]+)?$")


def account_problem(value: str, what: str) -> str | None:
    """An owner or group: a name, or a whole number 0..MAX_ID.

    ``-1``, ``1.5`` or ``1e3`` look like ids but are none: chown would read
    -1 as "unchanged", and getpwnam would fail only at run time.
    """
    if not value:
        return f"must be a {what} name or id, got an empty string"
    if value.isdigit():
        return bound_problem(int(value), 0, MAX_ID) if int(value) > MAX_ID else None
    if _NUMBERISH.match(value) or value.startswith("-"):
        return f"must be a {what} name or a whole number 0..{MAX_ID:,}, got {value!r}"
    if any(c in value for c in ":/,\0") or any(c.isspace() for c in value):
        return f"must be a {what} name or id, got {value!r}"
    return None
