"""mgmt's cluster flags: parsed, checked against each other, usage errors name the flag.

In-process through the parser (the agent itself is exercised by the
multi-host tests); a bad value exits 1 like every usage error.
"""

from __future__ import annotations

import argparse

import pytest

from pymgmt.cli import main as cli
from pymgmt.world.cluster import ClusterError, ClusterOptions


def parse(*argv: str) -> argparse.Namespace:
    _, run = cli._parser()
    args = run.parse_args([*argv, "g.yaml"])
    args.command = "run"
    cli._resolve_run(run, args)
    return args


def test_urls_split_on_commas_and_semicolons_and_keep_scheme_host_port():
    args = parse("--seeds", "http://127.0.0.1:2379;https://127.0.1.2:12379/, http://[::1]:3")
    assert args.seeds == ("http://127.0.0.1:2379", "https://127.0.1.2:12379", "http://[::1]:3")
    assert args.cluster_flags


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--seeds", "127.0.0.1:2379", "expected http://HOST:PORT"),
        ("--seeds", "ftp://127.0.0.1:21", "expected http://HOST:PORT"),
        ("--seeds", "http://127.0.0.1", "no port"),
        ("--client-urls", "http://127.0.0.1:70000", "bad port"),
        ("--server-urls", "http://127.0.0.1:2380/path", "nothing may follow the port"),
        ("--peer-urls", "http://:2380", "no host"),
        ("--advertise-client-urls", " , ", "expected http://HOST:PORT"),
        ("--advertise-server-urls", "http://u:p@127.0.0.1:1", "no host"),
    ],
)
def test_a_bad_url_is_a_usage_error_naming_the_flag(capsys, flag, value, why):
    with pytest.raises(SystemExit) as e:
        parse(flag, value)
    assert e.value.code == 1
    err = capsys.readouterr().err
    shown = "--server-urls/--peer-urls" if flag in ("--server-urls", "--peer-urls") else flag
    assert f"argument {shown}: " in err
    assert why in err


def test_no_server_needs_seeds(capsys):
    with pytest.raises(SystemExit) as e:
        parse("--no-server")
    assert e.value.code == 1
    assert "--no-server starts no etcd server: it needs --seeds" in capsys.readouterr().err


def test_server_urls_with_seeds_are_kept_for_when_this_host_is_nominated():
    args = parse("--seeds", "http://127.0.0.1:2379", "--client-urls", "http://127.0.0.1:5")
    assert args.client_urls == ("http://127.0.0.1:5",)


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (("--tls-ca", "a", "--tls-cert", "b"), "TLS needs --tls-ca, --tls-cert and --tls-key"),
        (("--pki", "d", "--tls-key", "k"), "--pki names the TLS files already: --tls-key"),
        (("--ideal-cluster-size", "0"), "argument --ideal-cluster-size: expected a whole number"),
    ],
)
def test_tls_and_size_flags_are_checked(capsys, flags, why):
    with pytest.raises(SystemExit) as e:
        parse(*flags)
    assert e.value.code == 1
    assert why in capsys.readouterr().err


def test_pki_names_this_hosts_files(tmp_path):
    opts = ClusterOptions.from_args(parse("--pki", str(tmp_path)), "h1", env={})
    assert opts.tls is not None and opts.requested
    assert (opts.tls.ca, opts.tls.cert, opts.tls.key) == (
        tmp_path / "ca.crt",
        tmp_path / "h1.crt",
        tmp_path / "h1.key",
    )
    assert (
        ClusterOptions.from_args(parse("--ideal-cluster-size", "3"), "h", env={}).ideal_cluster_size
        == 3
    )


def test_no_flag_means_no_cluster_and_mgmts_defaults():
    args = parse()
    assert not args.cluster_flags
    opts = ClusterOptions.from_args(args, "h", env={})
    assert opts.serves and not opts.requested
    assert opts.client_urls == ("http://127.0.0.1:2379",)
    assert opts.server_urls == ("http://127.0.0.1:2380",)
    assert opts.timers == (100, 1000)


def test_environment_gives_fast_timers_and_the_lease_ttl():
    opts = ClusterOptions.from_args(
        parse("--client-urls", "http://127.0.1.1:3000"),
        "h",
        env={"PYMGMT_ETCD_FAST": "1", "PYMGMT_LEASE_TTL": "2"},
    )
    assert opts.requested and opts.serves
    assert opts.timers == (10, 100)
    assert opts.lease_ttl == 2


@pytest.mark.parametrize("ttl", ["0", "-1", "1.5", "x", "99999"])
def test_a_bad_lease_ttl_names_the_variable(ttl):
    with pytest.raises(ClusterError, match="PYMGMT_LEASE_TTL"):
        ClusterOptions.from_args(parse(), "h", env={"PYMGMT_LEASE_TTL": ttl})


def test_ssh_url_stays_refused_and_points_at_remote(capsys):
    """mgmt's --ssh-url (this host's etcd through SSH) is not --remote: refused, with why."""
    with pytest.raises(SystemExit) as e:
        parse("--ssh-url", "root@127.0.0.1")
    assert e.value.code == 1
    assert "--remote FILE runs graphs on other hosts" in capsys.readouterr().err
