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
  file ends as the template does.

Jinja2 is imported on first use: a graph without templates never imports it
(it costs a few milliseconds at start).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateProblem(Exception):
    """A template that cannot be compiled or rendered; the message says why and where."""


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        loader=None,
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


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
    except TemplateSyntaxError as e:
        raise TemplateProblem(f"line {e.lineno} of the template: {e.message}") from None
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        word = {"FromImport": "import"}.get(type(node).__name__, type(node).__name__.lower())
        raise TemplateProblem(
            f"line {node.lineno} of the template: '{word}' is not allowed (a template"
            " cannot read other files; put the text in the template itself)"
        )
    return env.from_string(tree)


def syntax_problem(text: str) -> str | None:
    """Why `text` is not a valid template (with its line), or None."""
    try:
        compile_template(text)
    except TemplateProblem as e:
        return str(e)
    return None


def render(template: Template, values: Mapping[str, str]) -> str:
    """`template` rendered with `values`; TemplateProblem if it cannot be.

    Anything the template raises is its author's problem, not ours (a
    division by zero, an unsafe attribute, an undefined variable): it is
    reported as the template's error.
    """
    from jinja2 import TemplateError, UndefinedError
    from jinja2.exceptions import SecurityError

    try:
        return template.render(values)
    except UndefinedError as e:
        message = str(e.message)
        if message.endswith(" is undefined"):
            message += " (give it in 'vars', or receive it: recv: vars.NAME)"
        raise TemplateProblem(message) from None
    except SecurityError as e:
        raise TemplateProblem(f"refused by the sandbox: {e}") from None
    except TemplateError as e:
        raise TemplateProblem(str(e.message or e)) from None
    except Exception as e:
        raise TemplateProblem(f"{type(e).__name__}: {e}") from None
