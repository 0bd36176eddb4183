"""Shell completion scripts, generated from the argument parser and the resource kinds.

The parser is the one `pymgmt` itself uses (`cli.main`), read through
argparse's actions: every command, subcommand and flag, whether a flag takes
a value, its choices, and whether that value is a file or a directory. So a
flag added to the parser is completed at once, and a hidden one
(``help=argparse.SUPPRESS``) never is. ``pymgmt docs KIND`` completes the
registered kinds.

bash gets a small function over associative arrays (bash 4); zsh a native
``_arguments`` function per command, with each flag's help shown beside it.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass, field
from typing import Literal

#: how a value is completed: from choices, as a file, as a directory, or not at all
ValueKind = Literal["choices", "file", "dir", "none"]


@dataclass
class Value:
    kind: ValueKind
    choices: list[str] = field(default_factory=list)
    #: what the value is called (the metavar), for zsh's message
    name: str = "VALUE"


@dataclass
class Option:
    flags: list[str]
    help: str
    #: None: a switch that takes no value
    value: Value | None
    repeatable: bool = False


@dataclass
class Command:
    """One command of the tree (the program itself is the root, path ``()``)."""

    path: tuple[str, ...]
    help: str
    options: list[Option]
    #: the positional arguments, in order, and whether the last takes many
    positionals: list[Value]
    many: bool = False
    subcommands: dict[str, Command] = field(default_factory=dict)

    def walk(self) -> list[Command]:
        return [self, *(c for sub in self.subcommands.values() for c in sub.walk())]


def command_tree() -> Command:
    """pymgmt's commands and flags, as its own parser declares them."""
    from .main import _parser

    parser, _ = _parser()
    return _command(parser, (), "")


def _command(parser: argparse.ArgumentParser, path: tuple[str, ...], help: str) -> Command:
    cmd = Command(path, help, [], [])
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                cmd.subcommands[name] = _command(sub, (*path, name), helps.get(name, ""))
        elif action.help == argparse.SUPPRESS:
            continue
        elif action.option_strings:
            cmd.options.append(_option(action))
        else:
            cmd.positionals.append(_value(action, path))
            cmd.many = action.nargs in ("*", "+")
    return cmd


def _option(action: argparse.Action) -> Option:
    takes = action.nargs != 0 and not isinstance(
        action, argparse._StoreConstAction | argparse._CountAction | argparse._HelpAction
    )
    takes = takes and not isinstance(action, argparse._VersionAction)
    return Option(
        flags=list(action.option_strings),
        help=action.help or "",
        value=_value(action, None) if takes else None,
        repeatable=isinstance(action, argparse._AppendAction),
    )


def _value(action: argparse.Action, path: tuple[str, ...] | None) -> Value:
    name = str(action.metavar or action.dest).upper()
    if path == ("docs",) and action.dest == "kind":
        from .docs import topics

        return Value("choices", topics(), "KIND")
    if action.choices is not None:
        return Value("choices", [str(c) for c in action.choices], name)
    if "FILE" in name:
        return Value("file", name=name)
    if "DIR" in name or action.dest == "prefix":
        return Value("dir", name=name)
    return Value("none", name=name)


def script(shell: str) -> str:
    """The completion script for `shell` (``bash`` or ``zsh``)."""
    tree = command_tree()
    return bash(tree) if shell == "bash" else zsh(tree)


# -- bash ---------------------------------------------------------------------------------


def bash(tree: Command) -> str:
    """A bash function over tables keyed by the command path (``pymgmt cluster``)."""
    subs, opts, valued, values, npos = {}, {}, {}, {}, {}
    for cmd in tree.walk():
        key = " ".join(("pymgmt", *cmd.path))
        subs[key] = " ".join(cmd.subcommands)
        opts[key] = " ".join(f for o in cmd.options for f in o.flags)
        valued[key] = " ".join(f for o in cmd.options if o.value for f in o.flags)
        for o in cmd.options:
            for f in o.flags:
                if o.value is not None:
                    values[f"{key} {f}"] = _bash_value(o.value)
        if cmd.positionals:
            values[key] = _bash_value(cmd.positionals[-1])
        npos[key] = "many" if cmd.many else str(len(cmd.positionals))
    tables = "\n".join(
        f"    local -A {name}=(\n{_bash_table(table)}\n    )"
        for name, table in (
            ("subs", subs),
            ("opts", opts),
            ("valued", valued),
            ("values", values),
            ("npos", npos),
        )
    )
    return _BASH.replace("@TABLES@", tables)


def _bash_value(v: Value) -> str:
    """``choices a b c``, ``file``, ``dir`` or ``none``: read by the function's case."""
    return " ".join(["choices", *v.choices]) if v.kind == "choices" else v.kind


def _bash_table(table: dict[str, str]) -> str:
    return "\n".join(f"        [{shlex.quote(k)}]={shlex.quote(v)}" for k, v in table.items())


_BASH = """\
# bash completion for pymgmt: commands, flags and resource kinds.
# Generated by `pymgmt completion bash`; load it from ~/.bashrc with
#   source <(pymgmt completion bash)
# or save it as /etc/bash_completion.d/pymgmt.
_pymgmt() {
@TABLES@
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local path=pymgmt word skip= i given=0
    # find the command the cursor is in, skipping the values of flags, and
    # count the arguments it was already given
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ -n $skip ]]; then skip=; continue; fi
        if [[ " ${valued[$path]} " == *" $word "* ]]; then skip=1; continue; fi
        if [[ " ${subs[$path]} " == *" $word "* ]]; then path+=" $word"; given=0
        elif [[ $word != -* ]]; then given=$((given + 1)); fi
    done
    local want
    if [[ " ${valued[$path]} " == *" $prev "* ]]; then
        want=${values["$path $prev"]}
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${opts[$path]}" -- "$cur"))
        return
    elif [[ -n ${subs[$path]} ]]; then
        COMPREPLY=($(compgen -W "${subs[$path]}" -- "$cur"))
        return
    elif [[ ${npos[$path]} != many && $given -ge ${npos[$path]:-0} ]]; then
        COMPREPLY=()  # every argument is there already
        return
    else
        want=${values[$path]}
    fi
    case $want in
        choices*) COMPREPLY=($(compgen -W "${want#choices}" -- "$cur")) ;;
        file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
        dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
        *) COMPREPLY=() ;;
    esac
}
complete -F _pymgmt pymgmt
"""


# -- zsh ----------------------------------------------------------------------------------


def zsh(tree: Command) -> str:
    """A native zsh completion: one function per command, flags with their help."""
    functions = "\n\n".join(_zsh_function(cmd) for cmd in tree.walk())
    return _ZSH.replace("@FUNCTIONS@", functions)


def _zsh_name(cmd: Command) -> str:
    return "_pymgmt" + "".join("_" + re.sub(r"\W", "_", p) for p in cmd.path)


def _zsh_function(cmd: Command) -> str:
    specs = [_zsh_option(o) for o in cmd.options]
    if cmd.subcommands:
        specs += ["'1: :->command'", "'*:: :->args'"]
    else:
        for i, v in enumerate(cmd.positionals):
            last_many = cmd.many and i == len(cmd.positionals) - 1
            specs.append(_quote(f"{'*' if last_many else ''}:{_zsh_message(v)}:{_zsh_action(v)}"))
    args = " \\\n    ".join(specs)
    if not cmd.subcommands:
        return f"{_zsh_name(cmd)}() {{\n  _arguments -s -S \\\n    {args}\n}}"
    body = f"  _arguments -s -S -C \\\n    {args}"
    described = " ".join(_quote(f"{name}:{sub.help}") for name, sub in cmd.subcommands.items())
    cases = "\n".join(
        f"        {name}) {_zsh_name(sub)} ;;" for name, sub in cmd.subcommands.items()
    )
    return (
        f"{_zsh_name(cmd)}() {{\n"
        "  local curcontext=$curcontext state line ret=1\n"
        "  typeset -A opt_args\n"
        f"{body} && return 0\n"
        "  case $state in\n"
        "    command)\n"
        f"      local -a commands=({described})\n"
        "      _describe -t commands command commands ;;\n"
        "    args)\n"
        "      curcontext=${curcontext%:*:*}:pymgmt-$line[1]:\n"
        "      case $line[1] in\n"
        f"{cases}\n"
        "      esac ;;\n"
        "  esac\n"
        "}"
    )


def _zsh_option(o: Option) -> str:
    help = re.sub(r"([\[\]:\\])", r"\\\1", o.help.replace("\n", " "))
    value = f":{_zsh_message(o.value)}:{_zsh_action(o.value)}" if o.value else ""
    many = "*" if o.repeatable else ""
    if len(o.flags) == 1:
        return _quote(f"{many}{o.flags[0]}[{help}]{value}")
    # spellings of one flag exclude each other: {--a,--b} expands to one spec each
    excl = " ".join(o.flags)
    names = ",".join(o.flags)
    return (
        f"{_quote(f'({excl})')}{{{names}}}{_quote(f'[{help}]{value}')}"
        if not many
        else (f"{_quote(many)}{{{names}}}{_quote(f'[{help}]{value}')}")
    )


def _zsh_message(v: Value) -> str:
    return re.sub(r"[\[\]:]", "", v.name).strip() or "value"


def _zsh_action(v: Value) -> str:
    if v.kind == "choices":
        return "(" + " ".join(_zsh_word(c) for c in v.choices) + ")"
    if v.kind == "file":
        return "_files"
    if v.kind == "dir":
        return "_files -/"
    return " "


def _zsh_word(word: str) -> str:
    return re.sub(r"([\s()\\'\"])", r"\\\1", word)


def _quote(text: str) -> str:
    """Single quotes for zsh, a quote inside written '\\''."""
    return "'" + text.replace("'", "'\\''") + "'"


_ZSH = """\
#compdef pymgmt
# zsh completion for pymgmt: commands, flags and resource kinds.
# Generated by `pymgmt completion zsh`: save it as _pymgmt in a directory of
# $fpath (before compinit runs), or run `source <(pymgmt completion zsh)`
# after compinit in ~/.zshrc.

@FUNCTIONS@

if [[ $funcstack[1] == _pymgmt ]]; then
  _pymgmt "$@"
else
  compdef _pymgmt pymgmt
fi
"""
