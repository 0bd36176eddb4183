"""A translation printed as a YAML graph (``pymgmt puppet-translate``).

The output is an ordinary graph file: ``pymgmt run`` takes it as it is, so
a user can read what Puppet's catalog became, keep it, and drop Puppet
later. Each resource is preceded by a comment naming the Puppet resource
and the manifest line it comes from, and each edge is named after the
relationship that made it.
"""

from __future__ import annotations

from typing import Any

import yaml

from .translate import Translation


def to_yaml(tr: Translation) -> str:
    """The graph file of `tr` (stand-ins included, as noops)."""
    out = [
        f"# translated by pymgmt from the Puppet catalog of {tr.source}",
        "---",
        _dump({"graph": tr.name}).rstrip("\n"),
    ]
    by_kind: dict[str, list[Any]] = {}
    for t in tr.resources:
        if not t.export_only:
            by_kind.setdefault(t.kind, []).append(t)
    if by_kind:
        out.append("resources:")
    for kind, items in by_kind.items():
        out.append(f"  {kind}:")
        for t in items:
            where = f" at {t.origin.location}" if t.origin.location else ""
            note = " (unsupported: stands in, manages nothing)" if t.stand_in else ""
            out.append(f"  # {t.origin.ref}{where}{note}")
            name = "@@" + t.name if t.exported else t.name  # applied here, and exported
            entry: dict[str, Any] = {"name": name, **t.params}
            if t.meta:
                entry["meta"] = dict(t.meta)
            out.append(_indent(_dump([entry]), "  "))
    if tr.edges:
        out.append("edges:")
        edges = []
        for rel in sorted(tr.edges, key=lambda r: (r.src, r.dst)):
            edge: dict[str, Any] = {
                "name": f"{_ref(rel.src)} -> {_ref(rel.dst)}: {rel.why}",
                "from": {"kind": rel.src[0], "name": rel.src[1]},
                "to": {"kind": rel.dst[0], "name": rel.dst[1]},
            }
            if rel.notify:
                edge["notify"] = True
            edges.append(edge)
        out.append(_dump(edges, flow=None).rstrip("\n"))
    if tr.collect:
        out.append("collect:")
        entries = [
            {"kind": c.kind, "pattern": c.pattern, "mode": c.mode}
            for c in tr.collect  # from File <<| |>>
        ]
        out.append(_dump(entries, flow=None).rstrip("\n"))
    out += _export_only(tr)
    return "\n".join(out) + "\n"


def _export_only(tr: Translation) -> list[str]:
    """The resources only published for other hosts, as comments: a graph file cannot say it.

    `pymgmt run --puppet` publishes them; this file, run as it is, does not.
    """
    only = [t for t in tr.resources if t.export_only]
    if not only:
        return []
    out = [
        "# Exported (@@) but not collected on this node: `pymgmt run --puppet` publishes",
        "# these for the other hosts and applies nothing of them here; a graph file cannot",
        "# say that, so running this file does not publish them:",
    ]
    for t in only:
        where = f" at {t.origin.location}" if t.origin.location else ""
        out.append(f"# {t.origin.ref}{where}")
        out += ["#   " + line for line in _dump([{"name": t.name, **t.params}]).splitlines()]
    return out


class _Dumper(yaml.SafeDumper):
    """Multi-line text as a literal block, as a person would write a file's content."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value.rstrip("\n") or value.endswith("\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _dump(value: Any, flow: bool | None = False) -> str:
    return yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=1 << 20,
        default_flow_style=flow,
    )


def _ref(key: tuple[str, str]) -> str:
    return f"{key[0].capitalize()}[{key[1]}]"


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


__all__ = ["to_yaml"]
