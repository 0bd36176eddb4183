"""The manual and the JSON schema, generated from the declarations themselves.

Every param is declared once, with its type, default and doc (`param()` in
`resources.base`); metaparameters likewise (`MetaParams`), and the keys of
the graph file in `frontends.yamlbuild`. This module reads those
declarations and nothing else, so the reference (``pymgmt docs``,
``docs/reference.md``) and the schema (``pymgmt schema``,
``docs/graph.schema.json``) cannot drift from what the frontend accepts:
a new param appears in both, and a param without a doc fails a test.

Three renderings of one model (`KindDoc`): Markdown for the repository,
plain text for a terminal, and a JSON schema (draft-07, the version editors'
YAML plugins read) for validation and completion while a graph is written.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import textwrap
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from .frontends.yamlbuild import COLLECT_KEYS, COLLECTABLE, EDGE_KEYS, TOP_KEYS
from .metaparams import MetaParams
from .resources.base import Resource, param_default, shipped_kinds
from .types import describe, unwrap_optional

#: what the two keys every resource has mean
NAME_DOC = (
    "unique within its kind; '@@NAME' also exports it to other hosts (edges name it "
    "without the '@@')"
)
META_DOC = "metaparameters, enforced by the engine: see Metaparameters"
_META_LINK = "[Metaparameters](#metaparameters)"
#: the command lines that write the generated files (named in their headers)
REFERENCE_COMMAND = "pymgmt docs --markdown > docs/reference.md"
SCHEMA_COMMAND = "pymgmt schema > docs/graph.schema.json"
#: YAML 1.1's booleans, as PyYAML reads them: an editor's YAML 1.2 sees words
_YAML11_BOOLS = [
    f(w)
    for w in ("yes", "no", "on", "off", "true", "false")
    for f in (str.lower, str.title, str.upper)
]
#: YAML scalars a string param takes as its text (`mode: 0644` is "0644")
_SCALAR = ["string", "number", "boolean"]


@dataclass(frozen=True)
class ParamDoc:
    """One declared key: a resource's param, a metaparameter."""

    name: str
    type: Any
    #: `dataclasses.MISSING` when the key is required
    default: Any
    doc: str
    secret: bool = False
    #: other spellings the graph file accepts for it
    aliases: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


@dataclass(frozen=True)
class KindDoc:
    """What the reference says of one resource kind."""

    kind: str
    summary: str
    description: str
    params: list[ParamDoc]
    #: Send/Recv outputs: name -> (type, secret)
    sends: dict[str, tuple[Any, bool]]
    refresh: bool
    autogroup: bool
    autoedges: bool
    example: str


def kind_doc(cls: type[Resource]) -> KindDoc:
    """The reference of one kind, from its class: docstring, params, traits, example."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    if doc.startswith(f"{cls.__name__}("):  # dataclasses' stand-in for a missing docstring
        doc = ""
    summary, _, rest = doc.partition("\n")
    params = [_param(f, cls.param_types[f.name]) for f in cls.params_fields()]
    return KindDoc(
        kind=cls.kind,
        summary=summary.strip(),
        description=rest.strip(),
        params=params,
        sends={k: (t, k in cls.secret_outputs) for k, t in cls.outputs.items()},
        refresh=callable(getattr(cls, "refresh", None)),
        autogroup=callable(getattr(cls, "can_group", None)),
        autoedges=callable(getattr(cls, "uids", None)),
        example=cls.example,
    )


def kind_docs() -> list[KindDoc]:
    """Every kind pymgmt ships, by name."""
    return [kind_doc(cls) for cls in shipped_kinds().values()]


def meta_docs() -> list[ParamDoc]:
    """The metaparameters, in their declared order."""
    hints = typing.get_type_hints(MetaParams)
    return [_param(f, hints[f.name]) for f in dataclasses.fields(MetaParams)]


def missing_docs(classes: list[type[Resource]] | None = None) -> list[str]:
    """What the reference would have to leave blank: a param, kind or metaparameter without a doc.

    `classes` defaults to every kind pymgmt ships. A test keeps this empty, so
    a param cannot be added without saying what it means.
    """
    out = [f"meta.{p.name}" for p in meta_docs() if not p.doc.strip()]
    for cls in classes if classes is not None else list(shipped_kinds().values()):
        k = kind_doc(cls)
        name = k.kind or cls.__name__
        if not k.summary:
            out.append(f"{name}: no docstring")
        if not k.example.strip():
            out.append(f"{name}: no example")
        out += [f"{name}.{p.name}" for p in k.params if not p.doc.strip()]
    return out


def _param(f: dataclasses.Field[Any], tp: Any) -> ParamDoc:
    default = param_default(f)
    aliases = tuple(f.metadata.get("aliases", ()))
    doc = f.metadata.get("doc", "")
    if aliases and doc:
        doc += "; also spelt " + ", ".join(f"``{a}``" for a in aliases)
    return ParamDoc(f.name, tp, default, doc, f.metadata.get("secret", False), aliases)


# -- words ------------------------------------------------------------------------------------


def type_words(tp: Any) -> str:
    """A type as the reference names it: ``string``, ``running | stopped | ''``."""
    tp = unwrap_optional(tp)
    if get_origin(tp) is Literal:
        return " | ".join(_yaml_word(a) for a in get_args(tp))
    words = describe(tp)
    return words.removeprefix("a ").removeprefix("an ").removesuffix(" (true/false)")


def default_words(p: ParamDoc) -> str:
    """A default as a user would write it in the graph, or what leaving it out means."""
    if p.required:
        return "required"
    value = p.default
    if value is None:
        return "unset"
    if isinstance(value, float) and math.isinf(value):
        return "no limit"
    return _yaml_word(value)


def _yaml_word(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if value == "" or value.strip() != value else value
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_word(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_word(v)}" for k, v in value.items()) + "}"
    return str(value)


def _traits(k: KindDoc) -> list[str]:
    """What the kind does besides its params, in one phrase each."""
    out = []
    if k.sends:
        sent = ", ".join(
            f"{n} ({type_words(t)}{', secret' if s else ''})" for n, (t, s) in k.sends.items()
        )
        out.append(f"sends (Send/Recv): {sent}")
    out.append(f"refresh notifications: {'acted on' if k.refresh else 'ignored'}")
    if k.autogroup:
        out.append("AutoGroup: like resources are grouped into one vertex")
    if k.autoedges:
        out.append("AutoEdges: ordered automatically against what it depends on")
    return out


def _md(text: str) -> str:
    """reST's ``code`` as Markdown's `code`."""
    return re.sub(r"``([^`]+)``", r"`\1`", text)


# -- Markdown ---------------------------------------------------------------------------------


def markdown() -> str:
    """The whole reference, as docs/reference.md holds it."""
    docs = kind_docs()
    parts = [
        "# pymgmt reference",
        f"Generated from the code by `{REFERENCE_COMMAND}`: do not edit it by hand. "
        "`pymgmt docs KIND` prints one kind on a terminal; "
        "[graph.schema.json](graph.schema.json) is the same format as a JSON schema.",
        "- [The graph file](#the-graph-file)\n"
        + "".join(f"- [`{k.kind}`](#{k.kind}): {_md(k.summary)}\n" for k in docs)
        + "- [Metaparameters](#metaparameters)",
        _md_graph(),
        *(_md_kind(k) for k in docs),
        "## Metaparameters",
        "Every resource takes `meta:`; the engine enforces these, whatever the kind.",
        _md_table(meta_docs()),
    ]
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def _md_graph() -> str:
    return "\n\n".join(
        [
            "## The graph file",
            "mgmt's YAML format. Every key is checked: an unknown key, kind or param is an "
            "error, with its line and column.",
            _md_keys(TOP_KEYS),
            "### Edges",
            _md_keys(EDGE_KEYS),
            "### Collect",
            _md_keys(COLLECT_KEYS),
        ]
    )


def _md_keys(keys: dict[str, str]) -> str:
    return "| key | meaning |\n|---|---|\n" + "\n".join(
        f"| `{k}` | {_cell(v)} |" for k, v in keys.items()
    )


def _md_kind(k: KindDoc) -> str:
    every = [ParamDoc("name", str, dataclasses.MISSING, NAME_DOC), *k.params]
    parts = [
        f"## `{k.kind}`",
        f"{_md(k.summary)}",
        _md(k.description),
        _md_table(every)
        + f"\n| `meta` | mapping | `{{}}` | {META_DOC.replace('Metaparameters', _META_LINK)} |",
        "".join(f"- {t}\n" for t in _traits(k)),
        f"```yaml\n{k.example}```",
    ]
    return "\n\n".join(p.rstrip("\n") for p in parts if p)


def _md_table(params: list[ParamDoc]) -> str:
    head = "| param | type | default | meaning |\n|---|---|---|---|\n"
    return head + "\n".join(
        f"| `{p.name}` | {_cell(type_words(p.type))} | {_md_default(p)} | {_cell(p.doc)} |"
        for p in params
    )


def _md_default(p: ParamDoc) -> str:
    """A value in code quotes; what leaving it out means (required, unset) in words."""
    words = default_words(p)
    if p.required or p.default is None or words == "no limit":
        return f"*{words}*"
    return f"`{_cell(words)}`"


def _cell(text: str) -> str:
    return _md(text).replace("|", "\\|")


# -- plain text, for a terminal ---------------------------------------------------------------


def text(kind: str | None = None) -> str:
    """The reference for a terminal: everything, one kind, or ``meta``."""
    if kind in ("meta", "metaparams"):
        return _text_meta()
    docs = kind_docs()
    if kind is not None:
        return "\n".join(_text_kind(k) for k in docs if k.kind == kind)
    index = "".join(f"  {k.kind:<10} {_md(k.summary)}\n" for k in docs)
    return "\n".join(
        [
            "pymgmt reference (pymgmt docs KIND: one kind; pymgmt docs meta: metaparameters)\n",
            "THE GRAPH FILE (mgmt's YAML format)\n",
            _text_keys(TOP_KEYS),
            "\n  an edge:",
            _text_keys(EDGE_KEYS, indent=4),
            "\n  a collect entry:",
            _text_keys(COLLECT_KEYS, indent=4),
            "\nRESOURCE KINDS\n",
            index,
            *(_text_kind(k) for k in docs),
            _text_meta(),
        ]
    )


def _text_keys(keys: dict[str, str], indent: int = 2) -> str:
    return "\n".join(_item(k, v, indent) for k, v in keys.items())


def _text_kind(k: KindDoc) -> str:
    every = [ParamDoc("name", str, dataclasses.MISSING, NAME_DOC), *k.params]
    out = [f"{k.kind.upper()}: {_md(k.summary)}\n"]
    if k.description:
        out.append(textwrap.indent(_md(k.description), "  ") + "\n")
    out.append("  params:")
    out.extend(_text_param(p) for p in every)
    out.append(_item("meta (mapping)", META_DOC.replace("see Metaparameters", "pymgmt docs meta")))
    out.extend(f"  {t}" for t in _traits(k))
    out.append("\n  example:\n" + textwrap.indent(k.example, "    "))
    return "\n".join(out)


def _text_meta() -> str:
    out = ["METAPARAMETERS (meta: on any resource)\n"]
    out.extend(_text_param(p) for p in meta_docs())
    return "\n".join(out) + "\n"


def _text_param(p: ParamDoc) -> str:
    default = "required" if p.required else f"default {default_words(p)}"
    return _item(f"{p.name} ({type_words(p.type)}, {default})", p.doc)


def _item(head: str, body: str, indent: int = 4) -> str:
    """`head` on its line, `body` wrapped under it, indented further."""
    under = " " * (indent + 4)
    return (
        " " * indent
        + head
        + "\n"
        + textwrap.fill(_md(body), width=79, initial_indent=under, subsequent_indent=under)
    )


# -- JSON schema ------------------------------------------------------------------------------


def schema() -> dict[str, Any]:
    """The graph format as a JSON schema: what pymgmt accepts, nothing it would refuse alone.

    Editors read it to complete keys and show the docs; the schema never
    refuses a graph the frontend takes (a string param takes any scalar, as
    ``mode: 0644`` shows; every param may be left empty, which keeps the
    default). What needs the whole graph (edges naming real resources,
    cycles, Send/Recv types) is still ``pymgmt validate``'s.
    """
    docs = kind_docs()
    definitions: dict[str, Any] = {"meta": _meta_schema(), "edge": _edge_schema(docs)}
    definitions["collect"] = _collect_schema()
    for k in docs:
        definitions[f"kind.{k.kind}"] = _kind_schema(k)
    top = {
        "graph": _described(TOP_KEYS["graph"], {"type": _SCALAR, "minLength": 1}),
        "comment": _described(TOP_KEYS["comment"], {"type": [*_SCALAR, "null"]}),
        "resources": _described(
            TOP_KEYS["resources"],
            {
                "type": ["object", "null"],
                "properties": {
                    k.kind: {
                        "description": k.summary,
                        "type": ["array", "null"],
                        "items": {"$ref": f"#/definitions/kind.{k.kind}"},
                    }
                    for k in docs
                },
                "additionalProperties": False,
            },
        ),
        "edges": _list_of(TOP_KEYS["edges"], "#/definitions/edge"),
        "collect": _list_of(TOP_KEYS["collect"], "#/definitions/collect"),
        "remote": _described(TOP_KEYS["remote"], {"type": ["string", "null"]}),
        "hostname": _described(TOP_KEYS["hostname"], {"type": [*_SCALAR, "null"]}),
        "remotes": _described(
            TOP_KEYS["remotes"],
            {"type": ["array", "null"], "items": {"type": "string", "minLength": 1}},
        ),
    }
    assert list(top) == list(TOP_KEYS), "a top-level key has no schema"
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "pymgmt graph",
        "description": f"A pymgmt (mgmt YAML) graph file. Generated by `{SCHEMA_COMMAND}`.",
        "type": "object",
        "properties": top,
        "required": ["graph"],
        "additionalProperties": False,
        "definitions": definitions,
    }


def _described(doc: str, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "description": doc}


def _list_of(doc: str, ref: str) -> dict[str, Any]:
    return _described(doc, {"type": ["array", "null"], "items": {"$ref": ref}})


def _kind_schema(k: KindDoc) -> dict[str, Any]:
    props: dict[str, Any] = {
        "name": _described(NAME_DOC, {"type": _SCALAR, "minLength": 1}),
        "meta": {"$ref": "#/definitions/meta"},
    }
    for p in k.params:
        props[p.name] = _param_schema(p)
        for alias in p.aliases:
            other = {k: v for k, v in props[p.name].items() if k != "default"}
            props[alias] = {**other, "description": f"another spelling of {p.name}"}
    required = ["name", *(p.name for p in k.params if p.required)]
    return _described(k.summary, _strict_object(props, required))


def _meta_schema() -> dict[str, Any]:
    return {
        "description": META_DOC.split(":")[0],
        "type": ["object", "null"],
        "properties": {p.name: _param_schema(p) for p in meta_docs()},
        "additionalProperties": False,
    }


def _param_schema(p: ParamDoc) -> dict[str, Any]:
    out: dict[str, Any] = {"description": p.doc}
    body = _value_schema(p.type)
    # `key:` with no value keeps the default: null is always accepted
    if "anyOf" in body:
        body = {"anyOf": [*body["anyOf"], {"type": "null"}]}
    else:
        body = {**body, "type": [*_as_list(body["type"]), "null"]}
    if "enum" in body:
        body["enum"] = [*body["enum"], None]
    out.update(body)
    default = p.default
    if (
        not p.required
        and default is not None
        and not (isinstance(default, float) and math.isinf(default))
    ):
        out["default"] = default
    return out


def _as_list(t: str | list[str]) -> list[str]:
    return [t] if isinstance(t, str) else list(t)


def _value_schema(tp: Any) -> dict[str, Any]:
    """The JSON values the YAML frontend turns into a value of `tp` (null aside)."""
    tp = unwrap_optional(tp)
    origin = get_origin(tp)
    if tp is str:
        return {"type": _SCALAR}
    if tp is bool:
        return {"anyOf": [{"type": "boolean"}, {"enum": _YAML11_BOOLS}]}
    if tp is int:
        return {"type": "integer"}
    if tp is float:  # `.inf`, or the words inf / infinity in any case
        return {
            "anyOf": [{"type": "number"}, {"type": "string", "pattern": _anycase("inf(inity)?")}]
        }
    if origin is Literal:
        return {"type": "string", "enum": list(get_args(tp))}
    if origin is list:
        return {"type": "array", "items": {"type": _SCALAR}}
    if origin is dict:
        return {"type": "object", "additionalProperties": {"type": _SCALAR}}
    raise TypeError(f"no schema for the param type {tp!r}")  # a new type: teach it here


def _anycase(word_re: str) -> str:
    """A regex matching `word_re`'s letters in any case (JSON schema regexes have no flags)."""
    return "^" + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word_re) + "$"


def _edge_schema(docs: list[KindDoc]) -> dict[str, Any]:
    # the frontend lower-cases an edge's kind: `kind: File` names a file
    kind_re = _anycase("(" + "|".join(k.kind for k in docs) + ")")
    props = {
        "name": _described(EDGE_KEYS["name"], {"type": [*_SCALAR, "null"]}),
        "from": _edge_end(EDGE_KEYS["from"], kind_re),
        "to": _edge_end(EDGE_KEYS["to"], kind_re),
        "notify": _described(
            EDGE_KEYS["notify"], _param_schema(ParamDoc("notify", bool, False, ""))
        ),
        "send": _described(EDGE_KEYS["send"], {"type": [*_SCALAR, "null"]}),
        "recv": _described(EDGE_KEYS["recv"], {"type": [*_SCALAR, "null"]}),
    }
    return _strict_object(props, ["from", "to"], EDGE_KEYS)


def _edge_end(doc: str, kind_re: str) -> dict[str, Any]:
    props = {
        "kind": {"type": "string", "pattern": kind_re},
        "name": {"type": _SCALAR, "minLength": 1},
    }
    return _described(doc, _strict_object(props, ["kind", "name"]))


def _collect_schema() -> dict[str, Any]:
    names = {"type": ["array", "null"], "items": {"type": _SCALAR}}
    props = {
        "kind": _described(COLLECT_KEYS["kind"], {"type": "string", "enum": list(COLLECTABLE)}),
        "pattern": _described(COLLECT_KEYS["pattern"], {"type": "string", "pattern": "^/"}),
        # unquoted 0644 is an integer to YAML: the frontend reads its digits
        "mode": _described(
            COLLECT_KEYS["mode"],
            {"type": ["string", "integer", "null"], "pattern": "^[0-7]{3,4}$"},
        ),
        "owners": _described(COLLECT_KEYS["owners"], names),
        "groups": _described(COLLECT_KEYS["groups"], names),
    }
    return _strict_object(props, ["kind", "pattern"], COLLECT_KEYS)


def _strict_object(
    props: dict[str, Any], required: list[str], keys: dict[str, str] | None = None
) -> dict[str, Any]:
    """An object with these keys and no other (the frontend refuses unknown keys).

    `keys`: the frontend's own table of them, which `props` must cover exactly.
    """
    if keys is not None and list(props) != list(keys):
        raise AssertionError(f"the schema and the frontend disagree: {list(props)} {list(keys)}")
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
