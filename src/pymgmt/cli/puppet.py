"""``pymgmt puppet-translate``: show what a Puppet manifest becomes, as a YAML graph.

    pymgmt puppet-translate site.pp > site.yaml
    pymgmt puppet-translate 'package { "htop": }'

Puppet compiles the manifest (``frontends/puppet``); the translation is
checked like any graph (kinds, params, edges, cycles) and printed, so a
user can read it, keep it, or run it with ``pymgmt run site.yaml``. Every
resource type or parameter that cannot be carried over is listed with its
file and line, and nothing is printed unless ``--puppet-allow-unsupported``
lets each such resource stand in as a noop.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..report.exitcodes import EXIT_INPUT

if TYPE_CHECKING:
    import argparse


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The `puppet-translate` subparser (cli/main.py calls this with its subparsers)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "puppet-translate",
        help="print the YAML graph a Puppet manifest translates to",
        description="Compile a Puppet manifest with Puppet itself, translate the catalog "
        "into pymgmt resources and edges, check it like any graph, and print it as a "
        "YAML graph file. Unsupported types and parameters are listed with their file "
        "and line, and refused unless --puppet-allow-unsupported.",
    )
    p.add_argument(
        "manifest",
        metavar="MANIFEST",
        help="a manifest file (ending in .pp), or Puppet code (as mgmt's --puppet took)",
    )
    add_puppet_flags(p, with_manifest=False)
    return p


def add_puppet_flags(p: argparse.ArgumentParser, *, with_manifest: bool) -> None:
    """The Puppet flags `run` and `puppet-translate` share."""
    if with_manifest:
        p.add_argument(
            "--puppet",
            metavar="MANIFEST",
            help="compile this Puppet manifest (or code) with Puppet and run its catalog",
        )
    p.add_argument("--puppet-conf", metavar="FILE", help="the puppet.conf Puppet should use")
    p.add_argument(
        "--puppet-allow-unsupported",
        action="store_true",
        help="let each resource that cannot be translated stand in as a noop (managing nothing)",
    )
    p.add_argument(
        "--puppet-collect-dir",
        metavar="DIR",
        help="the directory files collected by the manifest's File <<| |>> land in "
        "(other hosts' exported files, under their base names)",
    )
    p.add_argument(
        "--puppet-node",
        metavar="NAME",
        default="",
        help="the node name the catalog is compiled for (default: this host's FQDN)",
    )


def translate_command(args: argparse.Namespace) -> int:
    """Print the translation; input errors (Puppet's, or untranslatable parts) exit 1."""
    from ..errors import InputError, InputErrors
    from ..frontends.compile import accept
    from ..frontends.puppet.catalog import PuppetSource, compile_catalog
    from ..frontends.puppet.graph import declared_graph
    from ..frontends.puppet.render import to_yaml
    from ..frontends.puppet.translate import UnsupportedError, translate

    source = PuppetSource.from_arg(
        args.manifest, args.puppet_conf, args.puppet_node, args.puppet_collect_dir
    )
    try:
        catalog = compile_catalog(source)
        translation = translate(
            catalog,
            source.name,
            allow=args.puppet_allow_unsupported,
            collect_dir=source.collect_dir,
        )
        accept(declared_graph(translation))  # cycles, AutoEdges: it must run as printed
    except InputError as e:
        errors = e.errors if isinstance(e, InputErrors) else [e]
        for err in errors:
            print(f"pymgmt: error: {err}", file=sys.stderr)
        hint = ""
        if any(isinstance(err, UnsupportedError) for err in errors):
            hint = "; --puppet-allow-unsupported lets each such resource stand in as a noop"
        print(f"pymgmt: nothing was translated{hint}", file=sys.stderr)
        return EXIT_INPUT
    for item in translation.unsupported:  # allowed, yet never dropped without a word
        print(f"pymgmt: warning: {item.error()} ({item.instead})", file=sys.stderr)
    for note in translation.notes:
        print(f"pymgmt: note: {note}", file=sys.stderr)
    sys.stdout.write(to_yaml(translation))
    return 0
