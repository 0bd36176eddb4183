"""Shell completion: commands, flags and resource kinds, in a real bash and a real zsh.

bash: the generated function is called as bash's completion would call it
(COMP_WORDS, COMP_CWORD) and COMPREPLY is read. zsh: an interactive zsh
runs in a pseudo-terminal (zsh's own zpty); a key bound to a widget
completes the half-typed line as TAB does and writes it to a file, one
line at a time (keys typed ahead of a slow completion were lost under load).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import PYMGMT

from pymgmt.cli.completion import command_tree
from pymgmt.resources.base import shipped_kinds as kinds


def _script(shell: str) -> str:
    p = subprocess.run(
        [*PYMGMT, "completion", shell], capture_output=True, text=True, timeout=60, check=True
    )
    return p.stdout


# -- bash -----------------------------------------------------------------------------------

_BASH_DRIVER = """
source "$1"
shift
for line in "$@"; do
    read -r -a COMP_WORDS <<<"$line"
    [[ $line == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _pymgmt
    printf '%s\\n' "${COMPREPLY[*]}"
done
"""


def _bash(tmp_path: Path, *lines: str) -> list[str]:
    script = tmp_path / "pymgmt.bash"
    script.write_text(_script("bash"))
    p = subprocess.run(
        ["bash", "--norc", "-c", _BASH_DRIVER, "driver", str(script), *lines],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert p.returncode == 0 and not p.stderr, p.stderr
    return p.stdout.splitlines()


def test_bash_completes_commands_flags_kinds_and_choices(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text("graph: g\n")
    tree = command_tree()  # what the parser declares: other issues add commands and flags
    run_flags = [f for o in tree.subcommands["run"].options for f in o.flags]
    got = _bash(
        tmp_path,
        "pymgmt ",
        "pymgmt vali",
        "pymgmt docs ",
        "pymgmt docs pa",
        "pymgmt run --graphviz-filter ne",
        "pymgmt run --conv",
        "pymgmt cluster ",
        "pymgmt cluster status --js",
        "pymgmt run --sema 2 --noop si",
        "pymgmt completion ",
        "pymgmt docs file ",
        "pymgmt run a.yaml si",
    )
    assert got == [
        " ".join(tree.subcommands),
        "validate",
        " ".join([*sorted(kinds()), "meta"]),
        "password",
        "neato",
        " ".join(f for f in run_flags if f.startswith("--conv")),
        "status ideal-size",
        "--json",
        "site.yaml",
        "bash zsh",
        "",  # one KIND at most
        "site.yaml",  # run takes [yaml] FILE: its words are not counted against it
    ]
    assert {"run", "validate", "docs", "schema", "completion"} <= set(got[0].split())
    assert "--converged-timeout" in got[5] and "--converger-timeout" in got[5]


def test_bash_never_offers_a_hidden_flag(tmp_path: Path) -> None:
    (offered,) = _bash(tmp_path, "pymgmt run --")
    flags = offered.split()
    assert "--noop" in flags and "--remote" in flags
    assert not {"--remote-child", "--tunnel", "--depth", "--ssh-url"} & set(flags)


# -- zsh ------------------------------------------------------------------------------------

_ZSH_DRIVER = r"""
zmodload zsh/zpty
out=$1 setup=$2
shift 2
await() {  # until file $1 has $2 lines (20 s at most), reading what zsh prints meanwhile
  local i
  for i in {1..200}; do
    [[ -f $1 ]] && (( $(wc -l < $1) >= $2 )) && return 0
    zpty -r -t z x
    sleep 0.1
  done
  return 1
}
zpty z 'zsh -f -i'
# ^T completes the line as TAB would, writes it to $out and clears it: one key, no typeahead
zpty -w z "PS1='%% '; autoload -Uz compinit; $setup"
zpty -w z "dump() { zle complete-word; print -r -- \"\$BUFFER\" >> $out; BUFFER= }"
zpty -w z "zle -N dump; bindkey '^T' dump; print > $out.ready"
await $out.ready 1 || exit 1
n=0
for line in "$@"; do
  zpty -w -n z "$line"$'\x14'
  n=$((n + 1))
  await $out $n || break
done
zpty -d z
"""

_LINES = {
    "pymgmt vali": "pymgmt validate ",
    "pymgmt docs pas": "pymgmt docs password ",
    "pymgmt run --graphviz-f": "pymgmt run --graphviz-filter ",
    "pymgmt run --graphviz-filter ne": "pymgmt run --graphviz-filter neato ",
    "pymgmt validate sit": "pymgmt validate site.yaml ",
    "pymgmt cluster st": "pymgmt cluster status ",
    "pymgmt completion z": "pymgmt completion zsh ",
    "pymgmt docs --mark": "pymgmt docs --markdown ",
}


def _zsh() -> str:
    zsh = shutil.which("zsh")
    if zsh is None:
        if os.environ.get("CI") == "true":
            pytest.fail("zsh is missing: scripts/system/prepare installs it")
        pytest.skip("zsh is not installed (scripts/system/prepare installs it)")
    return zsh


@pytest.mark.parametrize("how", ["sourced", "autoloaded"])
def test_zsh_completes_commands_flags_kinds_and_choices(how: str, tmp_path: Path) -> None:
    zsh = _zsh()
    (tmp_path / "site.yaml").write_text("graph: g\n")
    functions = tmp_path / "functions"
    functions.mkdir()
    script = functions / "_pymgmt"
    script.write_text(_script("zsh"))
    setup = (
        f"compinit -u -D; source {script}"
        if how == "sourced"
        else f"fpath=({functions} $fpath); compinit -u -D"
    )
    out = tmp_path / "lines"
    subprocess.run(
        [zsh, "-f", "-c", _ZSH_DRIVER, "driver", str(out), setup, *_LINES],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path), "TERM": "dumb"},
    )
    assert out.read_text().splitlines() == list(_LINES.values())
