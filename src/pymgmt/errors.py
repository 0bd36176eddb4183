"""One exception tree for pymgmt.

::

    PymgmtError
     ├── InputError          bad input: carries a Location and a hint
     │    └── InputErrors    several InputErrors found in one pass
     ├── ResourceError       a resource's watch/check/apply failed
     └── InternalError       our bug: please report it

Input errors are collected, not raised one at a time, so that a user fixing a
graph sees every problem in one run ("validate the whole graph before touching
the system"). Their fields are structured so the JSON reporter never parses
message text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """Where in an input file something was written (1-based line/column)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.file}:{self.line}:{self.column}"
        if self.line:  # a line without a column (Puppet's catalog has no columns)
            return f"{self.file}:{self.line}"
        return self.file


class PymgmtError(Exception):
    """Base of every error pymgmt raises on purpose."""


class InputError(PymgmtError):
    """The user's input is wrong; nothing was changed on the system."""

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.field = field
        self.hint = hint

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        field = f"{self.field}: " if self.field else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{field}{self.message}{hint}"

    def as_dict(self) -> dict[str, object]:
        loc = self.location
        return {
            "message": self.message,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "column": loc.column if loc else None,
            "field": self.field,
            "hint": self.hint,
        }


class InputErrors(InputError):
    """Several input errors found while validating one input."""

    def __init__(self, errors: list[InputError]) -> None:
        self.errors = sorted(
            errors,
            key=lambda e: (e.location.line, e.location.column) if e.location else (0, 0),
        )
        super().__init__("\n".join(str(e) for e in self.errors))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class ResourceError(PymgmtError):
    """A resource could not observe or change the system.

    The optional fields are facts a machine reads in the JSON ``failed``
    event (never parsed out of the message): the file involved, the command
    that ran and how it exited, the OS error number.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        command: str | None = None,
        exit_status: int | None = None,
        errno: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.command = command
        self.exit_status = exit_status
        self.errno = errno


class InternalError(PymgmtError):
    """A bug in pymgmt itself; the message asks the user to report it."""

    def __init__(self, message: str) -> None:
        super().__init__(f"internal error (a pymgmt bug, please report it): {message}")
