"""The configuration file: every `run` flag, the command line winning, errors with lines."""

from __future__ import annotations

import argparse
import os
import re
from importlib.resources import files
from pathlib import Path

import pytest

from pymgmt.cli.main import _parser, _resolve_run, main
from pymgmt.config import with_config


def settings(tmp_path: Path, config: str, *cli: str) -> argparse.Namespace:
    """What `pymgmt run --config FILE CLI...` would run with (parsed as main does)."""
    path = tmp_path / "pymgmt.yaml"
    path.write_text(config)
    return settings_from(path, *cli)


def settings_from(path: Path, *cli: str) -> argparse.Namespace:
    parser, run = _parser()
    words = ["run", "--config", str(path), *cli]
    args, extra = parser.parse_known_args(words)
    assert not extra
    args = with_config(run, words[1:], args, _resolve_run)
    _resolve_run(run, args)
    return args


def test_the_file_sets_flags_by_their_long_names(tmp_path):
    args = settings(
        tmp_path,
        "graph: /etc/pymgmt/graph.yaml\nsema: 2\nno-watch: true\nnoop: false\n"
        "hostname: web1\nseeds: [http://10.0.0.1:2379, http://10.0.0.2:2379]\n",
    )
    assert args.file == "/etc/pymgmt/graph.yaml"
    assert (args.sema, args.no_watch, args.noop, args.hostname) == (2, True, False, "web1")
    assert args.seeds == ("http://10.0.0.1:2379", "http://10.0.0.2:2379")
    assert args.converged_timeout is None  # not set: runs forever


def test_the_command_line_wins_over_the_file(tmp_path):
    args = settings(
        tmp_path,
        "graph: /etc/a.yaml\nsema: 2\nverbose: true\nssh-id: [/k1, /k2]\n",
        "--sema",
        "0",
        "-q",
        "--ssh-id",
        "/k3",
        "/srv/b.yaml",
    )
    assert args.file == "/srv/b.yaml"  # the word on the command line, not the file's graph
    assert args.sema == 0  # given on the command line, even as the default value
    assert (args.quiet, args.verbose) == (True, False)  # one family: the file's -v is dropped
    assert args.ssh_ids == ["/k3"]  # a list on the command line replaces the file's


def test_mgmt_spellings_are_keys_too(tmp_path):
    args = settings(tmp_path, "yaml: /g.yaml\nconverger-timeout: 5\nconverged-exit: true\n")
    assert args.file == "/g.yaml"
    assert (args.converged_timeout, args.detailed_exit) == (5.0, False)
    # the command line's own timeout replaces the file's whole family
    args = settings(
        tmp_path, "yaml: /g.yaml\nconverger-timeout: 5\nconverged-exit: true\n",
        "--converged-timeout", "0",
    )  # fmt: skip
    assert (args.converged_timeout, args.detailed_exit) == (0.0, True)


def test_every_problem_is_reported_at_once_with_its_line(tmp_path, capsys):
    path = tmp_path / "pymgmt.yaml"
    path.write_text("graf: /g.yaml\nsema: two\nnoop: 3\nsema: 1\nprefix: true\n")
    assert main(["run", "--config", str(path), "g.yaml"]) == 1
    err = capsys.readouterr().err
    assert "the configuration is invalid (5 problems); nothing was changed" in err
    assert f"{path}:1:1: graf: not a flag of 'pymgmt run' (did you mean 'graph'?)" in err
    assert f"{path}:2:1: sema: invalid int value: 'two'" in err
    assert f"{path}:3:1: noop: expected true or false, got 3" in err
    assert f"{path}:4:1: sema: given twice (first at line 2)" in err
    assert f"{path}:5:1: prefix: expected a value, got true" in err


def test_a_yaml_syntax_error_and_a_missing_file_are_named(tmp_path, capsys):
    path = tmp_path / "pymgmt.yaml"
    path.write_text("sema: [1\n")
    assert main(["run", "--config", str(path), "g.yaml"]) == 1
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: YAML syntax error", capsys.readouterr().err)
    assert main(["run", "--config", str(tmp_path / "none.yaml"), "g.yaml"]) == 1
    assert "cannot read the configuration file: No such file or directory" in (
        capsys.readouterr().err
    )


def test_internal_and_file_choosing_flags_are_refused_in_the_file(tmp_path, capsys):
    path = tmp_path / "pymgmt.yaml"
    path.write_text("config: /other.yaml\ntunnel: /s\n")
    assert main(["run", "--config", str(path), "g.yaml"]) == 1
    err = capsys.readouterr().err
    assert "config: not for the file" in err
    assert "tunnel: not for the file" in err


def test_no_config_reads_none(tmp_path):
    parser, run = _parser()
    words = ["run", "--no-config", "g.yaml"]
    args, _ = parser.parse_known_args(words)
    args = with_config(run, words[1:], args, _resolve_run)
    assert args.config.path is None and args.file == ["g.yaml"]


def shipped_examples() -> list[str]:
    """The commented `key: value` examples of the shipped configuration file."""
    text = (files("pymgmt") / "data" / "pymgmt.yaml").read_text()
    return [m.group(1) for m in re.finditer(r"^# ([a-z-]+: \S.*?)(?:\s+#.*)?$", text, re.M)]


@pytest.mark.parametrize("example", shipped_examples())
def test_each_example_of_the_shipped_configuration_is_a_valid_setting(tmp_path, example):
    args = settings(tmp_path, f"graph: /etc/pymgmt/graph.yaml\n{example}\n")
    key = example.split(":")[0].replace("-", "_")
    assert key in vars(args) or key == "graph"


def test_the_shipped_configuration_runs_the_shipped_graph(tmp_path):
    args = settings(tmp_path, (files("pymgmt") / "data" / "pymgmt.yaml").read_text())
    assert args.file == "/etc/pymgmt/graph.yaml"
    assert len(shipped_examples()) >= 8


NOBODY = 65534


@pytest.mark.parametrize(
    ("how", "why"),
    [
        (
            lambda p: p.chmod(0o666),
            "another user may change it (owner uid 0, group gid 0, mode 0666)",
        ),
        (lambda p: os.chown(p, NOBODY, 0), f"another user may change it (owner uid {NOBODY}"),
    ],
)
def test_a_file_another_user_may_change_is_refused(tmp_path, capsys, how, why):
    """The file says what a root agent enforces: nobody else may be able to write it."""
    path = tmp_path / "pymgmt.yaml"
    path.write_text("sema: 1\n")
    how(path)
    assert main(["run", "--config", str(path), "g.yaml"]) == 1
    assert f"{path}: cannot read the configuration file: {why}" in capsys.readouterr().err


def test_a_symlink_is_followed_only_when_root_owns_it(tmp_path, capsys):
    real = tmp_path / "real.yaml"
    real.write_text("graph: /g.yaml\nsema: 3\n")
    link = tmp_path / "pymgmt.yaml"
    link.symlink_to(real)
    assert settings_from(link).sema == 3
    os.lchown(link, NOBODY, NOBODY)
    assert main(["run", "--config", str(link), "g.yaml"]) == 1
    assert f"it is a symlink owned by uid {NOBODY}: not followed" in capsys.readouterr().err
