"""YAML text to a node tree, and libyaml's syntax errors made readable.

libyaml's messages name its grammar ("while scanning a quoted scalar ...
found unexpected end of stream") and point at the end of the file for a
quote left open on line 3. `compose` places each error where the mistake
is and adds a hint for the usual ones (tabs, a missing space after ':', a
second document). It is the only part of the YAML frontend that knows
libyaml; the nodes it returns keep their line marks for every later error.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import InputError, Location

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader


def compose(text: bytes | str, filename: str) -> yaml.Node | None:
    """The document's node tree; one located InputError if it cannot be read."""
    raw = text
    if isinstance(raw, bytes) and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line_start = raw.rfind(b"\n", 0, e.start) + 1
            column = len(raw[line_start : e.start].decode("utf-8", "replace")) + 1
            raise InputError(
                f"the file is not valid UTF-8 text: byte 0x{raw[e.start]:02x} cannot be decoded",
                location=Location(filename, raw.count(b"\n", 0, e.start) + 1, column),
                hint="save the file as UTF-8",
            ) from None
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        raise syntax_error(e, filename, text if isinstance(text, str) else None) from None
    except yaml.reader.ReaderError as e:
        loc = Location(filename)
        if isinstance(text, str) and 0 <= e.position <= len(text):
            line_start = text.rfind("\n", 0, e.position) + 1
            loc = Location(
                filename, text.count("\n", 0, e.position) + 1, e.position - line_start + 1
            )
        raise InputError(
            f"YAML syntax error: {e.reason}: found U+{e.character:04X}", location=loc
        ) from None
    except yaml.YAMLError as e:
        raise InputError(f"YAML error: {e}", location=Location(filename)) from None


_YAML_WORDS = {
    "quoted scalar": "quoted string",
    "plain scalar": "value",
    "flow sequence": "[...] list",
    "flow mapping": "{...} mapping",
    "block sequence": "list",
    "block mapping": "mapping",
}


def syntax_error(e: yaml.MarkedYAMLError, filename: str, text: str | None) -> InputError:
    """libyaml's message, placed where the mistake is, with a hint for the usual ones."""

    def at(mark: Any) -> Location:
        return Location(filename, mark.line + 1, mark.column + 1)

    problem = e.problem or e.context or "unreadable YAML"
    context = e.context if e.problem else None
    pm, cm = e.problem_mark, e.context_mark
    location = at(pm or cm) if (pm or cm) else Location(filename)
    message = f"YAML syntax error: {problem}"
    hints: list[str] = []
    lines = text.split("\n") if text is not None else []
    at_end = "end of stream" in problem or (
        pm is not None and bool(lines) and (pm.line, pm.column) >= (len(lines) - 1, len(lines[-1]))
    )
    if context and context.startswith("while ") and cm is not None:
        thing = context.split(" ", 2)[-1]  # "while scanning a quoted scalar" -> "quoted scalar"
        thing = _YAML_WORDS.get(thing.removeprefix("a "), thing.removeprefix("a "))
        if at_end:
            # The end of the file is no place to look: point at what was left open.
            location = at(cm)
            message = f"YAML syntax error: this {thing} is never closed"
            if thing == "quoted string":
                hints.append("the file ends before its closing quote")
            else:
                hints.append(f"{problem} before the end of the file")
        elif (cm.line, cm.column) != (getattr(pm, "line", -1), getattr(pm, "column", -1)):
            hints.append(f"in the {thing} that starts at line {cm.line + 1} column {cm.column + 1}")
    elif context:
        message = f"YAML syntax error: {context}, {problem}"
    line = lines[pm.line] if pm is not None and pm.line < len(lines) else ""
    if "tab character" in problem or (pm is not None and line[pm.column : pm.column + 1] == "\t"):
        hints = ["YAML does not allow tabs for indentation: use spaces"]
    elif "mapping values are not allowed" in problem:
        hints.append(
            "is this line indented deeper than the key above it, "
            "or does a value contain ': ' and need quotes?"
        )
    elif "did not find expected key" in problem:
        hints.append("check the indentation of this line and the quotes on the lines above")
    elif "another document" in problem:
        hints.append("a graph file holds a single document: remove the second '---'")
    return InputError(message, location=location, hint="; ".join(hints) or None)
