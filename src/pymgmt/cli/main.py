"""Command line: argument parsing only; the work lives in cli/run.py.

Kept free of heavy imports (asyncio, yaml, the engine) so that
``pymgmt --version`` and ``--help`` cost little more than starting Python.

Usage errors exit 1, like every other input error (argparse's own 2 means
"changes were applied" in pymgmt's exit codes, issue 8). mgmt's spellings
of the run flags are accepted where they map onto what pymgmt does (see
`_MGMT_*` below and the README); the rest are refused with a reason, never
with a bare "unrecognized arguments".
"""

from __future__ import annotations

import sys

from .._version import __version__
from ..report.exitcodes import EXIT_INPUT
from .lean import import_asyncio_without_tls, terminal_width

TYPE_CHECKING = False  # argparse is imported when a parser is built: --version skips it
if TYPE_CHECKING:
    import argparse
    from typing import Any

#: mgmt flags that ask for what pymgmt always does on one host (no PGP keys,
#: no function streams, no deploys, no network, inotify limits left alone)
_MGMT_ALREADY = (
    "--no-pgp",
    "--no-stream-watch",
    "--no-deploy-watch",
    "--no-network",
    "--no-raise-limits",
)
_MGMT_ALREADY_NOTE = "(mgmt) accepted: pymgmt never does this anyway"
#: mgmt flags for features pymgmt lacks whose absence changes nothing on the
#: system: a warning, and the run goes on (flag -> takes a value)
_MGMT_IGNORED = {
    "--pgp-key-path": True,
    "--pgp-identity": True,
}
_SSH = "reaching this host's own etcd over SSH is not implemented; --remote FILE runs graphs "
_SSH += "on other hosts over SSH"
#: mgmt flags pymgmt cannot honour: ignoring them would do something else
#: than asked, so they are refused with the reason (flag -> takes a value, reason)
_MGMT_REFUSED = {
    "--ssh-url": (True, _SSH),
    "--ssh-hostkey": (True, _SSH),
    "--no-autoedges": (False, "not implemented yet; set 'meta: {autoedge: false}' per resource"),
    "--no-autogroup": (False, "not implemented yet; set 'meta: {autogroup: false}' per resource"),
    "--max-runtime": (True, "not implemented yet; use timeout(1) or --converged-timeout"),
    "--converger-status-file": (True, "not implemented yet; --json streams 'settled' events"),
    "--converged-status-file": (True, "not implemented yet; --json streams 'settled' events"),
}
#: mgmt's frontend words before the input file: `mgmt run [flags] yaml FILE`
_MGMT_FRONTENDS = {
    "lang": "mgmt's mcl language is not implemented",
    "empty": "mgmt's empty frontend is not implemented (there is no cluster to deploy from)",
    "puppet": "mgmt's puppet frontend word needs --puppet MANIFEST (or Puppet code)",
}
#: graphviz layout programs mgmt's --graphviz-filter may name
GRAPHVIZ_FILTERS = ("dot", "neato", "twopi", "circo", "fdp", "sfdp", "patchwork", "osage")
#: mgmt's cluster flags that take URL lists: (spellings, help)
_URL_FLAGS = (
    (("--seeds",), "client URLs of an existing cluster's etcd to join (as a client)"),
    (
        ("--client-urls",),
        "where the embedded etcd serves clients (default http://127.0.0.1:2379)",
    ),
    (
        ("--server-urls", "--peer-urls"),
        "where the embedded etcd serves its peers (default http://127.0.0.1:2380)",
    ),
    (("--advertise-client-urls",), "the client URLs told to others (default: --client-urls)"),
    (("--advertise-server-urls",), "the peer URLs told to others (default: --server-urls)"),
)
#: the flags that configure the embedded etcd server (not a client's)
_SERVER_FLAGS = (
    ("client_urls", "--client-urls"),
    ("server_urls", "--server-urls"),
    ("advertise_client_urls", "--advertise-client-urls"),
    ("advertise_server_urls", "--advertise-server-urls"),
)
#: the longest converged timeout accepted (about 31 years): past that a
#: run-once agent would wait forever, and the event loop's clock overflows
MAX_TIMEOUT = 1e9


def _parser(
    command: str | None = None,
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and its `run` subparser.

    `command`: the command word the command line starts with; only its
    subparser is built (the others' modules are not imported: `pki` costs
    45 ms, issue 13). None: every command, for the top-level help and
    completion. The returned `run` subparser is then a stand-in unless the
    command is `run`.
    """
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse that exits 1 on a usage error (its own 2 means "changed")."""

        def error(self, message: str) -> None:  # type: ignore[override]
            self.print_usage(sys.stderr)
            self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

        def _get_formatter(self) -> argparse.HelpFormatter:
            # the width without importing shutil (cli/lean.py)
            return self.formatter_class(prog=self.prog, width=terminal_width())  # type: ignore[call-arg]

    p = Parser(
        prog="pymgmt",
        description="A parallel, event-driven configuration management engine.",
    )
    p.add_argument("--version", action="version", version=f"pymgmt {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = _run_parser(sub) if command in (None, "run") else p
    if command in (None, "validate"):
        val = sub.add_parser("validate", help="check a graph file without touching the system")
        val.add_argument("file", help="the graph file")
        val.add_argument("--json", action="store_true", help="print the result as JSON")
        _verbosity(val)
    if command in (None, "docs", "schema", "completion"):
        from .docs import add_parsers as add_docs_parsers

        add_docs_parsers(sub)
    if command in (None, "pki"):
        from .pki import add_parser

        add_parser(sub)
    if command in (None, "cluster"):
        _cluster_parser(sub)
    if command in (None, "status"):
        _status_parser(sub)
    if command in (None, "install-service"):
        from .service import add_parser as add_service_parser

        add_service_parser(sub)
    if command in (None, "puppet-translate"):
        from .puppet import add_parser as add_puppet_parser

        add_puppet_parser(sub)
    return p, run


#: the command words, in the order the top-level help lists them
COMMANDS = (
    "run",
    "validate",
    "docs",
    "schema",
    "completion",
    "pki",
    "cluster",
    "status",
    "install-service",
    "puppet-translate",
)


def _command_word(argv: list[str]) -> str | None:
    """The command a command line runs, if it starts with one (`_parser` builds only it).

    The top-level parser's own flags (--help, --version) take no value, so a
    command line whose first word is a command runs that command.
    """
    return argv[0] if argv and argv[0] in COMMANDS else None


def _run_parser(sub: Any) -> argparse.ArgumentParser:
    """`pymgmt run`: every flag of the agent."""
    import argparse

    run: argparse.ArgumentParser = sub.add_parser(
        "run",
        usage="pymgmt run [options] [yaml] FILE\n"
        "       pymgmt run [options] --puppet MANIFEST\n"
        "       pymgmt run [options] --remote FILE [--remote FILE ...] [[yaml] FILE]",
        help="apply a graph and keep it converged",
        description="Apply a graph, then watch every resource and repair drift as it happens. "
        "With --converged-timeout N, exit N seconds after the graph is converged "
        "(exit codes: 0 no change, 2 changes made (or, with --noop, to make), 4 failures, "
        "6 both, 1 bad input or usage, 130/143 stopped by SIGINT/SIGTERM).",
    )
    run.add_argument(
        "file",
        nargs="*",
        metavar="[yaml] FILE",
        help="the graph file (mgmt YAML format); mgmt's frontend word 'yaml' may come first "
        "(optional with --remote)",
    )
    run.add_argument("--file", "--yaml", dest="file_opt", metavar="FILE", help=argparse.SUPPRESS)
    from .puppet import add_puppet_flags

    add_puppet_flags(run, with_manifest=True)
    run.add_argument(
        "--converged-timeout",
        dest="converged_timeout",
        type=_seconds,
        metavar="N",
        default=None,
        help="exit N seconds after the whole graph is converged and idle (0 = at once); "
        "default: run forever. A negative value means forever too.",
    )
    run.add_argument("--noop", action="store_true", help="change nothing; show what would change")
    run.add_argument(
        "--sema",
        type=int,
        default=0,
        metavar="N",
        help="at most N resources check/apply at once (1 = serial, like Puppet)",
    )
    run.add_argument("--graphviz", metavar="FILE.dot", help="write the graph as DOT to this file")
    run.add_argument(
        "--graphviz-filter",
        choices=GRAPHVIZ_FILTERS,
        default="dot",
        metavar="PROGRAM",
        help="the graphviz layout program that renders --graphviz (default dot)",
    )
    run.add_argument("--hostname", help="the name this host uses in the cluster")
    _cluster_flags(run)
    _remote_flags(run)
    run.add_argument("--prefix", help="state directory (default /var/lib/pymgmt, or ~/.cache)")
    run.add_argument("--json", action="store_true", help="stream events as JSON lines on stdout")
    run.add_argument(
        "--no-watch", action="store_true", help="do not re-read the graph file when it changes"
    )
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="parse the graph file even if the state directory holds its parse from a "
        "previous run (and do not store this one)",
    )
    _verbosity(run)
    _web_flags(run)
    _config_flags(run)
    _log_flags(run)
    _mgmt_flags(run)

    return run


def _status_parser(sub: Any) -> None:
    """`pymgmt status [--prefix P] [--json]`: ask the running agent (cli/status.py)."""
    p = sub.add_parser(
        "status",
        help="what the running agent is doing, per resource",
        description="Ask the agent running on a state directory what it is doing: per "
        "resource its state (pending, applying, converged, failed), last check, last change, "
        "drift repairs, pending refreshes and last error. Only root and the agent's own user "
        "may ask. Exit codes: 0 the agent answered, 1 no agent answered.",
    )
    p.add_argument(
        "--prefix", help="the agent's state directory (default /var/lib/pymgmt, or ~/.cache)"
    )
    p.add_argument("--json", action="store_true", help="print the agent's answer as JSON")


def _seconds(text: str) -> float:
    """A timeout in seconds: a finite number, at most MAX_TIMEOUT."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value != value or value > MAX_TIMEOUT:  # NaN (not math.isnan: --version imports no math)
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds up to {MAX_TIMEOUT:g}, got {text!r}"
        )
    return value


def _cluster_flags(run: argparse.ArgumentParser) -> None:
    """mgmt's cluster flags: any of them brings up the etcd World (see README)."""
    g = run.add_argument_group(
        "cluster",
        "hosts exchange exported resources through etcd. A graph with exports (@@) or "
        "'collect:', or any of these flags, brings it up: without --seeds this agent "
        "starts its own etcd server; with --seeds it joins one as a client. "
        "URL lists are separated by commas or semicolons.",
    )
    for names, text in _URL_FLAGS:
        g.add_argument(*names, type=_url_list, metavar="URL,...", help=text)
    g.add_argument(
        "--no-server",
        action="store_true",
        help="never run an etcd server here (do not volunteer): only a client of --seeds",
    )
    g.add_argument(
        "--ideal-cluster-size",
        type=_positive_int,
        metavar="N",
        help="how many etcd members the cluster wants (default 5); read by the host "
        "that starts a new cluster, changed live in the cluster's idealClusterSize key",
    )
    _tls_flags(g)


def _remote_flags(run: argparse.ArgumentParser) -> None:
    """Remote execution over SSH (mgmt's --remote, README "Remote execution")."""
    import argparse

    g = run.add_argument_group(
        "remote execution",
        "run graphs on other hosts over SSH, with nothing installed there but CPython 3.11 "
        "or newer: "
        "each --remote file names its host ('remote: ssh://user@host:port'); the agents "
        "there reach this host's etcd through SSH tunnels",
    )
    g.add_argument(
        "--remote",
        dest="remotes",
        action="append",
        default=[],
        metavar="FILE",
        help="a graph file to run on the host its 'remote:' names (repeatable)",
    )
    g.add_argument(
        "--cconns",
        type=_natural,
        default=0,
        metavar="N",
        help="set up at most N remote hosts at once (0, the default: no limit)",
    )
    g.add_argument(
        "--no-caching",
        action="store_true",
        help="copy the bundle to every remote again, and remove it at the end",
    )
    g.add_argument(
        "--ssh-id",
        "--ssh-priv-id-rsa",
        dest="ssh_ids",
        action="append",
        default=[],
        metavar="FILE",
        help="a private key to log in with (repeatable; default ~/.ssh keys and the agent)",
    )
    g.add_argument(
        "--ssh-known-hosts",
        metavar="FILE",
        help="the known_hosts file that host keys are checked against (default ~/.ssh/known_hosts)",
    )
    g.add_argument(
        "--ssh-accept-new",
        action="store_true",
        help="trust a host key seen for the first time, and record it (a changed key is "
        "always refused)",
    )
    g.add_argument(
        "--allow-interactive",
        action="store_true",
        help="(mgmt) ask for a password on the terminal when keys are refused",
    )
    g.add_argument(
        "--max-depth",
        type=_positive_int,
        default=3,
        metavar="N",
        help="how deep 'remotes:' files may run hosts that run hosts (default 3)",
    )
    g.add_argument("--depth", type=_natural, default=0, help=argparse.SUPPRESS)
    g.add_argument("--remote-child", metavar="DIR", help=argparse.SUPPRESS)
    # the unix socket of the SSH tunnel to the initiator's etcd (with --remote-child)
    g.add_argument("--tunnel", metavar="SOCKET", help=argparse.SUPPRESS)


def _natural(text: str) -> int:
    """An argparse type: a whole number from 0 up."""
    import argparse

    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 up, got {text!r}")
    return n


def _tls_flags(g: argparse._ActionsContainer) -> None:
    """The TLS files of a cluster client or member: three files, or one --pki directory."""
    g.add_argument("--tls-ca", metavar="FILE", help="the cluster's CA certificate (PEM)")
    g.add_argument("--tls-cert", metavar="FILE", help="this host's certificate (PEM)")
    g.add_argument("--tls-key", metavar="FILE", help="this host's private key (PEM)")
    g.add_argument(
        "--pki",
        metavar="DIR",
        help="a directory made by 'pymgmt pki': ca.crt, HOSTNAME.crt and HOSTNAME.key",
    )


def _cluster_parser(sub: Any) -> None:
    """`pymgmt cluster status|ideal-size N`: look at, or resize, a running cluster."""
    cl = sub.add_parser("cluster", help="look at a running cluster, or change its ideal size")
    actions = cl.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status", help="the members, the leader, the clients, the ideal size, who is converged"
    )
    size = actions.add_parser(
        "ideal-size", help="set how many etcd members the cluster wants (the leader follows)"
    )
    size.add_argument("size", type=_positive_int, metavar="N")
    for p in (status, size):
        p.add_argument(
            "--seeds",
            type=_url_list,
            metavar="URL,...",
            help="client URLs of the cluster's etcd (default http://127.0.0.1:2379)",
        )
        _tls_flags(p)
        p.add_argument("--hostname", help="whose certificate --pki names (default: this machine)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")


def _positive_int(text: str) -> int:
    """An argparse type: a whole number from 1 up."""
    import argparse

    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 up, got {text!r}")
    return n


def _url_list(text: str) -> tuple[str, ...]:
    """An argparse type: a comma- or semicolon-separated list of http(s)://HOST:PORT.

    argparse names the flag in the message of a bad value ("argument --seeds: ...").
    """
    import argparse

    parts = [p.strip() for p in text.replace(";", ",").split(",")]
    try:
        if not any(parts):
            raise ValueError(f"expected http://HOST:PORT[,...], got {text!r}")
        return tuple(check_url(p) for p in parts if p)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def check_url(url: str) -> str:
    """`url` if it is http(s)://HOST:PORT (a trailing slash allowed); ValueError if not.

    Nothing else may be in it (a path, a query, a user name): etcd would
    reject some and silently ignore others.
    """
    from urllib.parse import urlsplit

    want = "expected http://HOST:PORT or https://HOST:PORT"
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        raise ValueError(f"{want}, got {url!r} (bad port)") from None
    if u.scheme not in ("http", "https"):
        raise ValueError(f"{want}, got {url!r}")
    if not u.hostname or u.username is not None or u.password is not None:
        raise ValueError(f"{want}, got {url!r} (no host)")
    if port is None or port == 0:
        raise ValueError(f"{want}, got {url!r} (no port)")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise ValueError(f"{want}, got {url!r} (nothing may follow the port)")
    return f"{u.scheme}://{u.netloc}"


def _web_flags(run: argparse.ArgumentParser) -> None:
    """mgmt's --prometheus flags: the HTTP server of metrics and the live web view (web/)."""
    from ..web.address import DEFAULT_LISTEN

    g = run.add_argument_group(
        "metrics and web view",
        "one read-only HTTP server: /metrics for Prometheus (mgmt's metric names and "
        "pymgmt's own) and, at /, the running graph with each resource's live state",
    )
    g.add_argument(
        "--prometheus",
        action="store_true",
        help="serve /metrics and the live web view at --prometheus-listen",
    )
    g.add_argument(
        "--prometheus-listen",
        type=_listen,
        metavar="HOST:PORT",
        help=f"where to serve them (default {DEFAULT_LISTEN}: this machine only; "
        "':9233' is every interface; port 0 picks a free one, named in the log)",
    )


def _listen(text: str) -> tuple[str, int]:
    """An argparse type: HOST:PORT, as mgmt's --prometheus-listen takes it."""
    import argparse

    from ..web.address import parse_listen

    try:
        return parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _verbosity(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-v", "--verbose", action="store_true", help="also log unchanged checks and diffs"
    )
    g.add_argument("-q", "--quiet", action="store_true", help="only failures and the recap")


def _config_flags(run: argparse.ArgumentParser) -> None:
    """The configuration file under the command line (config.py, issue 12)."""
    g = run.add_mutually_exclusive_group()
    g.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        help="read flags from this YAML file (default /etc/pymgmt/pymgmt.yaml if it exists); "
        "the command line wins; SIGHUP re-reads it",
    )
    g.add_argument("--no-config", action="store_true", help="read no configuration file")


#: the levels --log-level takes (report/logs.py LEVELS; not imported: --version stays cheap)
LOG_LEVELS = ("debug", "info", "notice", "warning", "error")


def _log_flags(run: argparse.ArgumentParser) -> None:
    """The log lines on stderr (README "Output"): how much, and in which format."""
    run.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="the least severe lines shown on stderr: debug (-v), info (the default), "
        "notice (changes), warning (-q), error",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (date, level, resource: message) or as JSON objects",
    )


def _resolve_logs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.log_level is not None and (args.verbose or args.quiet):
        parser.error("give -v/-q or --log-level, not both")


def _mgmt_flags(run: argparse.ArgumentParser) -> None:
    """mgmt's spellings of the run flags (see the README's table)."""
    import argparse

    g = run.add_argument_group(
        "mgmt's flags", "accepted so that mgmt's command lines and shell tests run unchanged"
    )
    g.add_argument(
        "--converger-timeout",
        dest="converger_timeout",
        type=_seconds,
        metavar="N",
        help="(mgmt) seconds idle that count as converged; exits only with --converged-exit",
    )
    g.add_argument(
        "--converged-exit",
        action="store_true",
        help="(mgmt) exit 0 once converged for --converger-timeout seconds, as mgmt does",
    )
    g.add_argument(
        "--converged-timeout-no-exit",
        action="store_true",
        help="(old mgmt) with --converged-timeout: do not exit, run forever",
    )
    g.add_argument(
        "--tmp-prefix", action="store_true", help="(mgmt) use a new temporary state directory"
    )
    g.add_argument(
        "--allow-tmp-prefix",
        action="store_true",
        help="(mgmt) use a temporary state directory if --prefix cannot be created",
    )
    for flag in _MGMT_ALREADY:
        g.add_argument(flag, action="store_true", help=_MGMT_ALREADY_NOTE)

    class Ignored(argparse.Action):
        def __call__(self, parser: object, ns: object, values: object, opt: object = None) -> None:
            ns.ignored = [*getattr(ns, "ignored", []), str(opt)]  # type: ignore[attr-defined]

    for flag, takes_value in _MGMT_IGNORED.items():
        g.add_argument(
            flag,
            action=Ignored,
            nargs=None if takes_value else 0,
            metavar="X",
            help="(mgmt) not implemented yet: a warning, then ignored",
        )

    class Refused(argparse.Action):
        def __call__(
            self, parser: argparse.ArgumentParser, ns: object, v: object, opt: object = None
        ) -> None:
            parser.error(f"{opt} (an mgmt flag): {_MGMT_REFUSED[str(opt)][1]}")

    for flag, (takes_value, _) in _MGMT_REFUSED.items():
        g.add_argument(
            flag, action=Refused, nargs=None if takes_value else 0, help=argparse.SUPPRESS
        )


def _resolve_run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turn mgmt's and pymgmt's spellings into one file, timeout and exit style.

    Sets `args.file`, `args.converged_timeout` (None: run forever) and
    `args.detailed_exit` (False: mgmt's --converged-exit, exit 0 once converged).
    """
    puppet = args.puppet is not None
    args.file = _graph_file(
        parser, args.file, args.file_opt, optional=bool(args.remotes) or puppet, puppet=puppet
    )
    if puppet and args.file:
        parser.error(f"give a graph file or --puppet, not both (file: {args.file!r})")
    if puppet and not args.puppet:
        parser.error("--puppet needs a manifest file (ending in .pp) or Puppet code")
    given = (args.puppet_conf, args.puppet_node, args.puppet_collect_dir)
    if not puppet and (any(given) or args.puppet_allow_unsupported):
        parser.error(
            "--puppet-conf, --puppet-node, --puppet-collect-dir and --puppet-allow-unsupported "
            "go with --puppet"
        )
    if (args.depth > 0 or args.tunnel) and not args.remote_child:
        parser.error("--depth and --tunnel are set by an initiator for the agents it starts")
    if args.converged_timeout is not None and args.converger_timeout is not None:
        parser.error("give --converged-timeout or mgmt's --converger-timeout, not both")
    if args.prefix is not None and args.tmp_prefix:
        parser.error("--tmp-prefix makes a new state directory: it cannot go with --prefix")
    args.detailed_exit = not args.converged_exit
    if args.converger_timeout is not None:
        # mgmt today: the timeout only defines "converged"; --converged-exit exits.
        args.converged_timeout = args.converger_timeout if args.converged_exit else None
        if not args.converged_exit:
            print(
                "pymgmt: note: as in mgmt, --converger-timeout without --converged-exit "
                "runs forever; add --converged-exit, or use --converged-timeout N",
                file=sys.stderr,
            )
    elif args.converged_exit and args.converged_timeout is None:
        parser.error("--converged-exit needs --converger-timeout N (seconds converged)")
    if args.converged_timeout_no_exit:
        args.converged_timeout = None  # old mgmt: converged, but keep running
    _resolve_cluster(parser, args)
    if args.prometheus_listen is not None and not args.prometheus:
        print(
            "pymgmt: note: --prometheus-listen serves nothing without --prometheus (as in mgmt)",
            file=sys.stderr,
        )
    _resolve_logs(parser, args)
    for flag in getattr(args, "ignored", []):
        print(
            f"pymgmt: warning: {flag} (an mgmt flag) is not implemented yet, ignored",
            file=sys.stderr,
        )


def _resolve_cluster(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check the cluster flags against each other; set `args.cluster_flags`.

    The TLS files come all three (--tls-ca, --tls-cert, --tls-key) or as one
    --pki directory, never mixed.
    """
    if args.no_server and not args.seeds and not getattr(args, "tunnel", None):
        parser.error("--no-server starts no etcd server: it needs --seeds URL of a cluster to join")
    tls = _check_tls(parser, args)
    given = [flag for dest, flag in _SERVER_FLAGS if getattr(args, dest) is not None]
    args.cluster_flags = bool(
        args.seeds or args.no_server or given or tls or args.pki or args.ideal_cluster_size
    )


def _check_tls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The --tls-* flags given; an error unless all three or none, and not with --pki."""
    tls = [f for f, v in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert),
                          ("--tls-key", args.tls_key)) if v is not None]  # fmt: skip
    if tls and args.pki is not None:
        parser.error(f"--pki names the TLS files already: {', '.join(tls)} cannot go with it")
    if tls and len(tls) != 3:
        parser.error("TLS needs --tls-ca, --tls-cert and --tls-key together (or one --pki DIR)")
    return tls


def _graph_file(
    parser: argparse.ArgumentParser,
    words: list[str],
    file_opt: str | None,
    *,
    optional: bool = False,
    puppet: bool = False,
) -> str | None:
    """The graph file from `[yaml] FILE` (mgmt's frontend word) or --file/--yaml.

    `optional`: with --remote or --puppet, this host may run no graph file.
    `puppet`: --puppet was given, so mgmt's ``run puppet --puppet X`` is fine.
    """
    import os.path

    # a frontend word, unless it is the name of an existing graph file
    word = words[0] if words and (len(words) > 1 or not os.path.exists(words[0])) else None
    if word == "puppet" and puppet:
        words = words[1:]
    elif word in _MGMT_FRONTENDS:
        parser.error(f"{_MGMT_FRONTENDS[word]}; pymgmt runs YAML graphs: run [yaml] FILE")
    if word == "yaml":
        words = words[1:]
    if words and file_opt:
        parser.error(f"two graph files given: {words[0]!r} and --file {file_opt!r}")
    if len(words) > 1:
        parser.error(f"one graph file expected, got {len(words)}: {' '.join(words)}")
    file = words[0] if words else file_opt
    if not file and optional:
        return None
    if not file:
        parser.error("a graph file is required: pymgmt run [yaml] FILE")
    return file


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"pymgmt {__version__}")  # what argparse's version action prints
        return 0
    words = sys.argv[1:] if argv is None else argv
    plan = False
    if words[:1] == ["run"]:
        from ..oneshot.command import try_run

        code, plan = try_run(words)  # a converged one-shot run, answered before any import
        if code is not None:
            return code
    parser, run_parser = _parser(_command_word(words))
    args, extra = parser.parse_known_args(words)
    if extra:
        (run_parser if args.command == "run" else parser).error(
            f"unrecognized arguments: {' '.join(extra)}"
        )
    if args.command is None:
        parser.print_help()
        return EXIT_INPUT
    if args.command == "run":
        from ..config import report, with_config
        from ..errors import InputError

        try:  # the configuration file, under the command line
            args = with_config(run_parser, words[words.index("run") + 1 :], args, _resolve_run)
        except InputError as e:
            report(e, as_json=args.json)
            return EXIT_INPUT
        _resolve_run(run_parser, args)
        args.oneshot_plan = plan  # store the fast path's plan of this graph (oneshot/plan.py)
        if not (args.cluster_flags or args.remotes or args.remote_child or args.prometheus):
            import_asyncio_without_tls()  # before cli/run.py imports asyncio
        from .run import run_command

        return run_command(args)
    if args.command == "cluster":
        _check_tls(parser, args)
        from .cluster import cluster_command

        return cluster_command(args)
    if args.command == "status":
        from .status import status_command

        return status_command(args)
    if args.command == "install-service":
        from .service import install_command

        return install_command(args)
    if args.command == "pki":
        from .pki import pki_command

        return pki_command(args)
    if args.command == "puppet-translate":
        from .puppet import translate_command

        return translate_command(args)
    if args.command in ("docs", "schema", "completion"):
        from .docs import docs_command

        return docs_command(args)
    from .run import validate_command

    try:
        return validate_command(args)
    except KeyboardInterrupt:
        # validate changes nothing: a ^C is an interruption, not a crash to trace
        print("pymgmt: interrupted; nothing was changed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
