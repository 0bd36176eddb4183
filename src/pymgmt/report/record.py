"""`Record`: an immutable, typed value class that costs nothing to define.

The engine's events were frozen dataclasses, and ``@dataclass`` compiles six
methods from source text for every class it decorates: the two dozen event
classes cost 25 ms of every start (a third of `pymgmt run`'s own import
time, issue 13). A `Record` subclass is written exactly like one::

    class Checked(Record):
        vertex: str
        changes: list[ChangeInfo] = field(default_factory=list)

and behaves like one: a constructor taking the fields in order or by name
(checked by mypy through ``dataclass_transform``), attributes that cannot
be assigned (`dataclasses.FrozenInstanceError`), equality with a record of
the same class and the same values, a hash of the values, a readable repr,
and class patterns (``case Checked(vertex=v)``). Its methods are ordinary
code shared by every subclass, compiled once into the ``.pyc``; defining
a subclass only reads its annotations.

What differs: `dataclasses.fields` and friends do not know a Record (use
`Record._asdict` and `Record._replace`), and a record holds its values in
its ``__dict__``, set in one go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, field
from typing import Any, ClassVar, dataclass_transform

__all__ = ["Record", "field"]


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class Record:
    """The base of the engine's events: see the module's docstring."""

    #: the fields, in the order they are declared (the constructor's order)
    _fields: ClassVar[tuple[str, ...]] = ()
    #: the fields with a default: a value, or a Field with a default_factory
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = list(cls._fields)
        defaults = dict(cls._defaults)
        # its own annotations: `cls.__annotations__` would be the base's when it has none
        own = vars(cls).get("__annotations__", {})
        for name, annotation in own.items():
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            if name not in names:
                names.append(name)
            if name in cls.__dict__:
                default = cls.__dict__[name]
                delattr(cls, name)  # the instance's own value is always set
                if isinstance(default, Field):
                    factory = default.default_factory
                    default = default.default if factory is MISSING else _Factory(factory)
                defaults[name] = default
            elif defaults:
                raise TypeError(f"non-default field {name!r} follows a field with a default")
        cls._fields = tuple(names)
        cls._defaults = defaults
        cls.__match_args__ = cls._fields  # type: ignore[attr-defined,misc]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The first record of a class compiles its constructor, and is made by it.

        Only the classes a run makes pay (a one-shot run makes a handful of
        the two dozen events), and every record after the first is made by
        a constructor as direct as a dataclass's.
        """
        cls = type(self)
        init = _compile_init(cls)
        cls.__init__ = init  # type: ignore[method-assign]
        init(self, *args, **kwargs)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__qualname__}({inner})"

    def _asdict(self) -> dict[str, Any]:
        """The fields and their values, in order (a new dict; the values as they are)."""
        return dict(self.__dict__)

    def _replace(self, **changes: Any) -> Any:
        """A record of the same class with some fields changed (`dataclasses.replace`)."""
        return type(self)(**{**self.__dict__, **changes})


def _compile_init(cls: type[Record]) -> Callable[..., None]:
    """``def __init__(self, a, b=_default_b, c=_NOTHING)``: the fields, set at once.

    The names are the class's annotated attributes (identifiers, so safe to
    write into source); defaults are passed in the namespace, never as text.
    """
    namespace: dict[str, Any] = {"_set": object.__setattr__, "_NOTHING": _NOTHING}
    params: list[str] = []
    made: list[str] = []
    for name in cls._fields:
        if not name.isidentifier():
            raise TypeError(f"{cls.__name__}: field {name!r} is not an identifier")
        default = cls._defaults.get(name, _NOTHING)
        if default is _NOTHING:
            params.append(name)
        elif isinstance(default, _Factory):
            namespace[f"_make_{name}"] = default.make
            params.append(f"{name}=_NOTHING")
            made.append(f"    if {name} is _NOTHING:\n        {name} = _make_{name}()\n")
        else:
            namespace[f"_default_{name}"] = default
            params.append(f"{name}=_default_{name}")
    values = ", ".join(f"{name!r}: {name}" for name in cls._fields)
    source = (
        f"def __init__(self, {', '.join(params)}):\n"
        + "".join(made)
        + f"    _set(self, '__dict__', {{{values}}})\n"
    )
    exec(source, namespace)  # identifiers only, see above
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


#: "not given": a field whose default_factory must be called
_NOTHING: Any = object()


class _Factory:
    """A field's default_factory: called for each record that does not give the field."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
