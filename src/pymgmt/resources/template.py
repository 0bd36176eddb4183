"""Jinja2 templates for the file kind's ``template`` param, rendered in a sandbox.

Why Jinja2: it is well kept, it has a sandbox, and its syntax is the one
Ansible and Salt users already write. The environment is built for config
files, not web pages, and for a process that runs as root:

* `ImmutableSandboxedEnvironment`: a template cannot reach unsafe
  attributes (``__class__``, ``mro``...) nor change the values it is given;
* no loader: ``{% include %}``, ``{% import %}`` and ``{% extends %}`` find
  nothing, so a template cannot read the disk;
* `StrictUndefined`: a variable that has no value is an error naming it,
  never an empty string silently written into a config;
* no autoescape (a config is not HTML), and ``keep_trailing_newline`` so the
  file ends as the template does;
* a bound on the work (`_Bounded`): the sandbox caps ``range`` but not
  ``'x' * 10**10``, ``7 ** 10**9`` (folded at *compile* time: validation
  hung), ``center(10**10)`` nor two nested loops of 100,000. A render runs
  at most `MAX_STEPS` Python steps and makes at most `MAX_OUTPUT` characters,
  and no operator or call may grow a value past that: a runaway template is
  the template's error, never an agent that hangs or runs out of memory.

Jinja2 is imported on first use: a graph without templates never imports it
(it costs a few milliseconds at start).
"""

from __future__ import annotations

import functools
import math
import re
import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import ImmutableSandboxedEnvironment


#: The most characters a render may make, and any one value in it may grow to
#: (a config file is kilobytes; 16 MiB leaves room and bounds the memory).
MAX_OUTPUT = 16 << 20
#: The most Python steps (a line of the template's code, a call of a filter's
#: or the sandbox's Python code) one render may take: about a second of CPU.
#: A loop over 10,000 hosts with a few lines each takes a few hundred thousand.
MAX_STEPS = 2_000_000
#: The most bits `**` may make (a million: still instant to compute and print).
_MAX_POWER_BITS = 1 << 20


class TemplateProblem(Exception):
    """A template that cannot be compiled or rendered; the message says why and where."""


class _TooBig(Exception):
    """Raised inside a render (or a constant folded at compile) that would grow too large."""


def _check_size(what: str, size: float) -> None:
    if size > MAX_OUTPUT:
        raise _TooBig(f"{what} would make more than {MAX_OUTPUT:,} characters")


def _sized(value: object) -> bool:
    return isinstance(value, str | bytes | list | tuple)


def _check_args(what: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """No integer argument beyond `MAX_OUTPUT`: a width, a count, a repeat."""
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_OUTPUT:
            raise _TooBig(f"{what}: an argument of {arg} is more than {MAX_OUTPUT:,}")


def _bounded_binop(op: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too large, before it is computed."""
    if op == "*":
        for seq, times in ((left, right), (right, left)):
            if _sized(seq) and isinstance(times, int):
                _check_size(f"'{op}'", len(seq) * max(times, 0))
    elif op == "+" and _sized(left) and _sized(right):
        _check_size(f"'{op}'", len(left) + len(right))
    elif op == "%":
        values = right if isinstance(right, tuple) else (right,)
        if isinstance(left, str) and "*" in left:  # '%*s': a width among the values
            _check_args("'%'", values, {})
        if isinstance(left, str):
            _check_size("'%'", _format_size(left, *values))
    elif (
        op == "**"
        and isinstance(left, int)
        and isinstance(right, int)
        and _too_many_bits(left, right)
    ):
        raise _TooBig(f"'**' would make a number of more than {_MAX_POWER_BITS:,} bits")


def _too_many_bits(base: int, exponent: int) -> bool:
    """Whether ``base ** exponent`` has more than `_MAX_POWER_BITS` bits."""
    return exponent > 0 and abs(base) > 1 and exponent * math.log2(abs(base)) > _MAX_POWER_BITS


def _length(value: object) -> int:
    return len(value) if isinstance(value, str) else len(str(value))


def _replace_size(text: Any, old: Any = "", new: Any = "", *_: Any, **__: Any) -> int:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    times = text.count(old) if old else len(text) + 1
    return len(text) + times * max(len(new) - len(old), 0)


def _join_size(value: Any, sep: Any = "", *_: Any, **__: Any) -> int:
    if not isinstance(value, list | tuple | str):
        return 0  # a generator: not consumed here (its items are bounded one by one)
    return sum(_length(v) for v in value) + _length(sep) * len(value)


def _method_join_size(sep: Any, value: Any = (), *_: Any, **__: Any) -> int:
    return _join_size(value, sep)


def _format_size(fmt: Any, *args: Any, **kwargs: Any) -> int:
    """At most every field of `fmt` filled with the longest argument."""
    if not isinstance(fmt, str):
        return 0
    longest = max((_length(a) for a in (*args, *kwargs.values())), default=0)
    return len(fmt) + (fmt.count("{") + fmt.count("%")) * longest


def _indent_size(text: Any, width: Any = 4, *_: Any, **__: Any) -> int:
    if not isinstance(text, str):
        return 0
    # a str width is the prefix itself; an int one was checked by `_check_args`
    each = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    return len(text) + (text.count("\n") + 1) * each


#: Filters and str methods whose result may be far larger than their arguments:
#: the size they would make, computed before they run (arguments as the filter's).
_GROWTH: dict[str, Callable[..., int]] = {
    "replace": _replace_size,
    "join": _join_size,
    "format": _format_size,
    "indent": _indent_size,
}
#: the same, for a method of a str (its first argument is the str itself)
_METHOD_GROWTH: dict[str, Callable[..., int]] = {
    "replace": _replace_size,
    "join": _method_join_size,
    "format": _format_size,
}


#: Filters and str methods taking a width or a count (an int argument that
#: sizes the result); any other int argument is a value, printed in digits
#: (``default(2147483648)``, ``'{}'.format(2**40)``).
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice"})
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
#: a str.format field whose spec takes a width from an argument: ``{:>{}}``
_NESTED_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{")


def _guarded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` refusing an integer argument (after the value it filters) too large."""

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        # pass_context/pass_environment filters get that first, then the value
        skip = 2 if getattr(fn, "jinja_pass_arg", None) is not None else 1
        value = args[skip - 1] if len(args) >= skip else None
        if name in _WIDTH_FILTERS or (name == "format" and "*" in str(value)):
            _check_args(f"filter '{name}'", args[skip:], kwargs)
        if (size := _GROWTH.get(name)) is not None:
            _check_size(f"filter '{name}'", size(value, *args[skip:], **kwargs))
        return fn(*args, **kwargs)

    return guarded


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    from jinja2 import StrictUndefined, nodes
    from jinja2.compiler import CodeGenerator, Frame, optimizeconst
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _BoundedCode(CodeGenerator):
        """Jinja's code, with ``~`` (concatenation) checked like ``+`` (`_Bounded.join`)."""

        @optimizeconst
        def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
            self.write("environment.join((")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    class _Bounded(ImmutableSandboxedEnvironment):
        """The sandbox, with no operator or call growing a value past `MAX_OUTPUT`.

        ``~`` is checked in `join`, which the generated code calls instead of
        Jinja's ``str_join``. Intercepting ``*``, ``+``, ``%`` and ``**`` also stops Jinja from
        folding them as constants when compiling (it folds only what the
        sandbox does not intercept), so validation cannot hang on them.
        """

        intercepted_binops = frozenset({"*", "+", "%", "**"})

        def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
            _bounded_binop(op, left, right)
            return super().call_binop(context, op, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            name = getattr(__obj, "__name__", "a call")
            # the sandbox hands str.format out wrapped (__wrapped__ is the method)
            owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
            if (
                (isinstance(owner, str) and name in _WIDTH_METHODS)
                or (isinstance(owner, str) and name == "format" and _NESTED_SPEC.search(owner))
                or __obj is __self.globals.get("lipsum")
            ):
                _check_args(name, args, kwargs)
            if isinstance(owner, str) and (size := _METHOD_GROWTH.get(name)) is not None:
                _check_size(name, size(owner, *args, **kwargs))
            return super().call(__context, __obj, *args, **kwargs)

        def join(self, values: tuple[Any, ...]) -> str:
            """``a ~ b``: Jinja's ``str_join`` (autoescape is off), refused past `MAX_OUTPUT`."""
            parts = [str(v) for v in values]
            _check_size("'~'", sum(map(len, parts)))
            return "".join(parts)

    _Bounded.code_generator_class = _BoundedCode

    env = _Bounded(
        loader=None,
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters = {name: _guarded_filter(name, fn) for name, fn in env.filters.items()}
    return env


@functools.lru_cache(maxsize=1024)
def compile_template(text: str) -> Template:
    """The compiled template, or TemplateProblem naming the line of what is wrong.

    ``{% include %}``, ``{% import %}`` and ``{% extends %}`` are refused here,
    at validation, rather than failing at run time for want of a loader.
    Cached by text: compiling takes about 0.4 ms, and validation and the
    first check both need it (many files often share one template). A
    compiled template holds no values: rendering it is pure.
    """
    from jinja2 import TemplateSyntaxError, nodes

    env = _environment()
    try:
        tree = env.parse(text)
        for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            word = {"FromImport": "import"}.get(type(node).__name__, type(node).__name__.lower())
            raise TemplateProblem(
                f"line {node.lineno} of the template: '{word}' is not allowed (a template"
                " cannot read other files; put the text in the template itself)"
            )
        return env.from_string(tree)
    except TemplateSyntaxError as e:
        raise TemplateProblem(f"line {e.lineno} of the template: {e.message}") from None
    except (RecursionError, SyntaxError, MemoryError):
        # a hundred brackets or blocks inside each other: Jinja's parser, or
        # Python compiling Jinja's code (too many nested blocks), gives up
        raise TemplateProblem("the template is nested too deeply") from None


def syntax_problem(text: str) -> str | None:
    """Why `text` is not a valid template (with its line), or None."""
    try:
        compile_template(text)
    except TemplateProblem as e:
        return str(e)
    return None


def render(template: Template, values: Mapping[str, str], *, secret: bool = False) -> str:
    """`template` rendered with `values`; TemplateProblem if it cannot be.

    Anything the template raises is its author's problem, not ours (a
    division by zero, an unsafe attribute, an undefined variable): it is
    reported as the template's error.

    `secret`: some value (or the template itself) is a secret. The registry
    (`pymgmt.redaction`) only knows the value as received, and a filter
    makes another text of it (``{{ pw | upper }}``, a slice, a hash) that
    an error message may quote (``'dict object' has no attribute 'S3CRET'``).
    No rule can tell which part of such a message came from the secret, so
    the message is left out whole: the problem names its kind and the line
    of the template, never a word of the error's text.
    """
    from jinja2 import TemplateError, UndefinedError
    from jinja2.exceptions import SecurityError

    try:
        return _bounded_render(template, values)
    except _TooBig as e:
        if secret:
            raise TemplateProblem(_withheld("too large", e)) from None
        raise TemplateProblem(f"too large: {e}") from None
    except _Exhausted:
        raise TemplateProblem(
            f"too much work: the render took more than {MAX_STEPS:,} steps (a loop too long?)"
        ) from None
    except UndefinedError as e:
        if secret:
            raise TemplateProblem(_withheld("an undefined value", e)) from None
        message = str(e.message)
        if message.endswith(" is undefined"):
            message += " (give it in 'vars', or receive it: recv: vars.NAME)"
        raise TemplateProblem(message) from None
    except SecurityError as e:
        if secret:
            raise TemplateProblem(_withheld("refused by the sandbox", e)) from None
        raise TemplateProblem(f"refused by the sandbox: {e}") from None
    except TemplateError as e:
        if secret:
            raise TemplateProblem(_withheld(type(e).__name__, e)) from None
        raise TemplateProblem(str(e.message or e)) from None
    except Exception as e:
        if secret:
            raise TemplateProblem(_withheld(type(e).__name__, e)) from None
        raise TemplateProblem(f"{type(e).__name__}: {e}") from None


def _withheld(what: str, e: BaseException) -> str:
    """The problem of a render with a secret: what went wrong and where, no text of it."""
    line = _template_line(e)
    where = f"line {line} of the template" if line else "the template"
    return (
        f"{where}: {what} (the error's text is not shown: the template's values hold a"
        " secret, which it could quote)"
    )


def _template_line(e: BaseException) -> int | None:
    """The template line the error was raised at (Jinja maps its frames back), if known."""
    line = None
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class _Exhausted(Exception):
    """Raised by the tracer in a render that ran out of steps."""


def _bounded_render(template: Template, values: Mapping[str, str]) -> str:
    """`template.render`, stopped after `MAX_STEPS` steps or `MAX_OUTPUT` characters.

    The steps are counted by a trace function of this thread only (a render
    runs off the event loop, in a worker thread): every line of the
    template's compiled code, and every call of Python code it makes (a
    filter's loop, ``lipsum``). Whatever trace function was there before (a
    debugger, coverage) is put back afterwards.
    """
    steps = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:  # sys.TraceFunction
        nonlocal steps
        steps += 1
        if steps > MAX_STEPS:
            raise _Exhausted
        return tracer if frame.f_code.co_filename == "<template>" else None

    parts: list[str] = []
    size = 0
    before = sys.gettrace()
    sys.settrace(tracer)
    try:
        for part in template.generate(values):
            size += len(part)
            _check_size("the rendered content", size)
            parts.append(part)
    finally:
        sys.settrace(before)
    return "".join(parts)
