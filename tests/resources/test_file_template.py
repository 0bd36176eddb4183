"""file `template`: a Jinja2 template rendered with `vars` into the content (issue 15).

Vars come from the graph or, one at a time, over Send/Recv (``recv:
vars.NAME``). A secret received into a template makes the whole content
secret: the issue's "a template with a received password renders one line
of a config file and the secret appears in no output".
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    PYMGMT,
    checked,
    event,
    json_lines,
    recap_of,
    run_once,
    sendrecv_edge,
    sentinel_res,
    wait_for,
    write_atomic,
    write_graph,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from pymgmt.oneshot.plan import PLAN_NAME
from pymgmt.report.exitcodes import EXIT_FAILED
from pymgmt.resources.file import File

TEMPLATE = """\
# managed by pymgmt
[database]
user = {{ user }}
port = {{ port }}
password = {{ db_password }}
"""


def _doc(
    app: Path, *, template: str = TEMPLATE, vars: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """A password sent into `vars.db_password` of a templated file, plus `extra` files."""
    files = [
        {
            "name": "app",
            "path": str(app),
            "mode": "0600",
            "template": template,
            "vars": {"user": "app", "port": 5432} if vars is None else vars,
        },
        *extra.get("files", []),
    ]
    return {
        "graph": "template",
        "resources": {"password": [{"name": "db", "length": 24}], "file": files},
        "edges": [
            sendrecv_edge("db-secret", "password:db", "file:app", "password", "vars.db_password")
        ],
    }


def _graph(tmp_path: Path, doc: dict[str, Any]) -> Path:
    graph = tmp_path / "graph.yaml"
    write_graph(graph, doc)
    return graph


def _secret_of(app: Path) -> str:
    """The password the file was rendered with (its one `password = ` line)."""
    lines = [x for x in app.read_text().splitlines() if x.startswith("password = ")]
    assert len(lines) == 1, app.read_text()
    secret = lines[0].removeprefix("password = ")
    assert len(secret) == 24 and secret.isalnum()
    return secret


def _rendered(secret: str, user: str = "app") -> str:
    return (
        TEMPLATE.replace("{{ user }}", user)
        .replace("{{ port }}", "5432")
        .replace("{{ db_password }}", secret)
    )


def _no_secret(secret: str, *procs: subprocess.CompletedProcess[str]) -> None:
    for proc in procs:
        assert secret not in proc.stdout and secret not in proc.stderr


def _content_change(
    proc: subprocess.CompletedProcess[str], vertex: str = "File[app]"
) -> dict[str, Any]:
    (ev,) = [e for e in json_lines(proc.stdout) if checked(vertex, changed=True)(e)]
    (change,) = [c for c in ev["changes"] if c["field"] == "content"]
    return change


# -- from the graph alone ----------------------------------------------------------------


def test_a_template_renders_the_graphs_vars_and_then_is_converged(tmp_path, managed):
    conf = managed / "site.conf"
    doc = {
        "graph": "site",
        "resources": {
            "file": [
                {
                    "name": str(conf),
                    "template": "server {{ name }}:{{ port }}\n{% for w in workers.split(',') %}"
                    "worker {{ w }}\n{% endfor %}",
                    "vars": {"name": "web", "port": 8080, "workers": "a,b"},
                }
            ]
        },
    }
    graph = _graph(tmp_path, doc)
    first = run_once(graph, tmp_path / "state", "--json")
    assert first.returncode == 2, first.stderr
    assert conf.read_text() == "server web:8080\nworker a\nworker b\n"
    change = _content_change(first, f"File[{conf}]")
    assert change["diff"].endswith("+worker b\n")  # no secret: the diff is shown
    again = run_once(graph, tmp_path / "state", "--json")
    assert again.returncode == 0, again.stderr
    assert recap_of(again)["resources"][f"File[{conf}]"]["outcome"] == "unchanged"
    assert not (tmp_path / "state" / PLAN_NAME).exists()  # the engine renders, not the fast path


def test_the_trailing_newline_is_the_templates(tmp_path, managed):
    doc = {
        "graph": "nl",
        "resources": {
            "file": [
                {"name": str(managed / "with"), "template": "a={{ a }}\n", "vars": {"a": "1"}},
                {"name": str(managed / "without"), "template": "a={{ a }}", "vars": {"a": "1"}},
            ]
        },
    }
    proc = run_once(_graph(tmp_path, doc), tmp_path / "state")
    assert proc.returncode == 2, proc.stderr
    assert (managed / "with").read_bytes() == b"a=1\n"
    assert (managed / "without").read_bytes() == b"a=1"


def test_an_undefined_variable_fails_naming_it_and_leaves_the_file_alone(tmp_path, managed):
    conf = managed / "site.conf"
    conf.write_text("kept\n")
    doc = {
        "graph": "site",
        "resources": {
            "file": [{"name": str(conf), "template": "{{ name }}:{{ port }}", "vars": {"n": "w"}}]
        },
    }
    proc = run_once(_graph(tmp_path, doc), tmp_path / "state", "--json")
    assert proc.returncode == 4, proc.stderr
    (err,) = recap_of(proc)["resources"][f"File[{conf}]"]["failures"]
    assert "template: 'name' is undefined" in err
    assert conf.read_text() == "kept\n"  # never an empty string written in its place


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ name.__class__.__mro__ }}", "refused by the sandbox"),
        ("{{ lipsum.__globals__['os'] }}", "refused by the sandbox"),
        ("{{ (1, 2).__class__ }}", "refused by the sandbox"),
        ("{{ 1 // 0 }}", "ZeroDivisionError"),
    ],
)
def test_the_sandbox_refuses_what_a_config_does_not_need(tmp_path, managed, template, message):
    conf = managed / "site.conf"
    doc = {
        "graph": "site",
        "resources": {"file": [{"name": str(conf), "template": template, "vars": {"name": "w"}}]},
    }
    proc = run_once(_graph(tmp_path, doc), tmp_path / "state", "--json")
    assert proc.returncode == 4, proc.stderr
    (err,) = recap_of(proc)["resources"][f"File[{conf}]"]["failures"]
    assert message in err
    assert not conf.exists()


#: a string of 10 million characters, under the bound: what is done with it may not be
_BIG = "{% set b = 'x' * 10**7 %}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 'x' * 10**8 }}", "too large: '*' would make more than"),
        ("{{ 'x' * 10**10 }}", "too large: '*'"),  # was a MemoryError, or the OOM killer
        ("{{ [0] * 10**8 }}", "too large: '*'"),
        ("{{ 'x'|center(10**9) }}", "too large: filter 'center'"),
        ("{{ 'x'.ljust(10**9) }}", "too large: ljust"),
        ("{{ '%*s' % (10**9, 'x') }}", "too large: '%'"),
        ("{{ '%*s'|format(10**9, 'x') }}", "too large: filter 'format'"),
        ("{{ '{:>{}}'.format('x', 10**9) }}", "too large: format"),
        ("{{ 'x'.rjust(10**9) }}", "too large: rjust"),
        ("{{ lipsum(n=10**9) }}", "too large"),
        ("{{ 7 ** 1000000 }}", "too large: '**'"),
        (
            "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}",
            "too much work",
        ),
        ("{{ [1, 2]|slice(10**7)|list|length }}", "too much work"),
        # filters and str methods whose result outgrows their arguments
        (_BIG + "{{ b|replace('x', 'xxxxxxxxxx') }}", "too large: filter 'replace'"),
        (_BIG + "{{ b.replace('x', 'yyyyyyyyyy') }}", "too large: replace"),
        (_BIG + "{{ [b, b, b]|join(b) }}", "too large: filter 'join'"),
        (_BIG + "{{ b.join([b, b]) }}", "too large: join"),
        (_BIG + "{{ '%s%s%s%s' % (b, b, b, b) }}", "too large: '%'"),
        (_BIG + "{{ '{0}{0}{0}{0}'.format(b) }}", "too large: format"),
        (_BIG + "{{ '{0}{0}'|format(b) }}", "too large: filter 'format'"),
        ("{% set b = '\n' * 10**6 %}{{ b|indent('x' * 100) }}", "too large: filter 'indent'"),
        # doubling a string with '~' a few times: gigabytes by the tenth round
        (
            "{% set ns = namespace(s='x' * 10**7) %}{% for i in range(12) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            "too large: '~'",
        ),
    ],
)
def test_a_runaway_template_is_stopped_as_its_own_error(template, message):
    """The sandbox caps range() only: size and work are bounded here (template.py)."""
    from pymgmt.resources.template import TemplateProblem, compile_template, render

    before = sys.gettrace()
    with pytest.raises(TemplateProblem, match=re.escape(message)):
        render(compile_template(template), {})
    assert sys.gettrace() is before  # a debugger's or coverage's tracer is put back


def test_the_bound_leaves_a_real_config_alone():
    from pymgmt.resources.template import compile_template, render

    hosts = ",".join(f"10.0.{i // 256}.{i % 256}" for i in range(10_000))
    text = "{% for h in hosts.split(',') %}server {{ h }}:{{ port }} check\n{% endfor %}"
    out = render(compile_template(text), {"hosts": hosts, "port": "80"})
    assert out.count("\n") == 10_000 and out.endswith("server 10.0.39.15:80 check\n")
    assert render(compile_template("{{ 'ab' * 3 }} {{ 2 ** 64 }} {{ 'x'|center(5) }}"), {}) == (
        "ababab 18446744073709551616   x  "
    )
    text = (
        "{% set x %}{{ a ~ 1 }}{% endset %}{{ x }} {% filter upper %}{{ a ~ 'f' }}{% endfilter %}"
    )
    assert render(compile_template(text), {"a": "a"}) == "a1 AF"
    text = (
        "{{ 'a-b'|replace('-', '+') }} {{ ['a','b']|join(', ') }} {{ '%s=%s' % ('k', 'v') }} "
        "{{ '{}:{}'.format('h', 80) }} {{ 'a\nb'|indent(2) }} {{ ', '.join(['x','y']) }}"
    )
    assert render(compile_template(text), {}) == "a+b a, b k=v h:80 a\n  b x, y"
    # a big number is a value, not a width: printed in digits
    text = (
        "{{ '%d' % (mem|int * 1048576) }} {{ '{}'.format(2**32) }} {{ x|default(2**31) }} "
        "{{ '%d'|format(2**31) }} {{ dict(a=10**9).a }}"
    )
    assert render(compile_template(text), {"mem": "4096"}) == (
        "4294967296 4294967296 2147483648 2147483648 1000000000"
    )


def test_a_runaway_template_fails_alone_and_the_agent_goes_on(tmp_path, managed):
    """Before the bound, validation hung on the power and the render hung the event loop."""
    power, loops, other = managed / "power.conf", managed / "loops.conf", managed / "other"
    doc = {
        "graph": "runaway",
        "resources": {
            "file": [
                {"name": str(power), "template": "{{ 7 ** 1000000000 }}"},
                {
                    "name": str(loops),
                    "template": "{% for i in range(100000) %}{% for j in range(100000) %}"
                    "{% endfor %}{% endfor %}",
                },
                {"name": str(other), "content": "fine\n"},
            ]
        },
    }
    proc = run_once(_graph(tmp_path, doc), tmp_path / "state", "--json")
    assert proc.returncode == 2 | 4, proc.stderr  # one file changed, two failed
    recap = recap_of(proc)["resources"]
    (err,) = recap[f"File[{power}]"]["failures"]
    assert "template: too large: '**'" in err
    (err,) = recap[f"File[{loops}]"]["failures"]
    assert "template: too much work" in err
    assert not power.exists() and not loops.exists()
    assert other.read_text() == "fine\n"


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"template": "x", "content": "y"}, "give either content or template, not both"),
        ({"template": "x", "source": "/etc/hostname"}, "give either source or template"),
        ({"path": "/tmp/d/", "template": "x"}, "a directory (path ending in '/')"),
        ({"template": "{% for %}"}, "line 1 of the template: "),
        ({"template": "a\n{% import 'x' as y %}"}, "line 2 of the template: 'import'"),
        ({"template": "{% extends 'base' %}"}, "'extends' is not allowed"),
        # Jinja's parser recursed out of the stack (a RecursionError out of validate)
        ({"template": "{{ " + "[" * 3000 + "]" * 3000 + " }}"}, "nested too deeply"),
        # and Python compiling Jinja's code (an IndentationError out of validate)
        ({"template": "{% if a %}" * 120 + "x" + "{% endif %}" * 120}, "nested too deeply"),
    ],
)
def test_bad_templates_are_refused_before_anything_runs(params, problem):
    res = File(name="/tmp/pymgmt-never-made", **params)
    found = [m for f, m in res.problems() if f == "template" and problem in m]
    assert found, res.problems()


def test_vars_without_a_template_are_a_warning():
    assert File(name="/tmp/x", content="c", vars={"a": "b"}).warnings() == [
        ("vars", "ignored: there is no template to use them")
    ]


def test_a_syntax_error_is_an_input_error_with_its_place(tmp_path, managed):
    doc = {
        "graph": "bad",
        "resources": {"file": [{"name": str(managed / "c"), "template": "ok\n{{ oops }\n"}]},
    }
    graph = _graph(tmp_path, doc)
    proc = subprocess.run(
        [*PYMGMT, "validate", str(graph)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert f"{graph}:" in proc.stderr
    assert "template: line 2 of the template: unexpected '}'" in proc.stderr
    assert not (managed / "c").exists()


# -- Jinja2 is imported only by a graph with a template -------------------------------------


def _imported(stderr: str) -> set[str]:
    return {
        x.rsplit("|", 1)[-1].strip() for x in stderr.splitlines() if x.startswith("import time:")
    }


def test_jinja2_is_imported_only_when_a_graph_has_a_template(tmp_path, managed):
    plain = {"graph": "p", "resources": {"file": [{"name": str(managed / "p"), "content": "p\n"}]}}
    argv = [sys.executable, "-X", "importtime", "-m", "pymgmt.cli.main", "run"]
    argv += ["--converged-timeout", "0", "--prefix"]
    without = subprocess.run(
        [*argv, str(tmp_path / "s1"), str(_graph(tmp_path, plain))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert without.returncode == 2, without.stderr
    assert "pymgmt.resources.file" in _imported(without.stderr)  # the probe sees imports
    assert not {m for m in _imported(without.stderr) if m.startswith("jinja2")}
    with_tpl = _doc(managed / "app")
    (tmp_path / "t").mkdir()
    proc = subprocess.run(
        [*argv, str(tmp_path / "s2"), str(_graph(tmp_path / "t", with_tpl))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "jinja2.sandbox" in _imported(proc.stderr)


# -- a received secret -----------------------------------------------------------------------


def test_a_received_password_renders_one_line_and_appears_in_no_output(tmp_path, managed):
    app = managed / "app.conf"
    graph = _graph(tmp_path, _doc(app))
    state = tmp_path / "state"

    first = run_once(graph, state, "--json", "--log-level", "debug")
    assert first.returncode == 2, first.stderr
    secret = _secret_of(app)
    assert app.read_text() == _rendered(secret)
    assert [x for x in app.read_text().splitlines() if secret in x] == [f"password = {secret}"]
    assert (app.stat().st_mode & 0o777) == 0o600
    change = _content_change(first)
    assert change == {"field": "content", "old": "<redacted>", "new": "<redacted>", "diff": ""}
    _no_secret(secret, first)

    again = run_once(graph, state, "--json")
    assert again.returncode == 0, again.stderr
    assert recap_of(again)["resources"]["File[app]"]["outcome"] == "unchanged"
    _no_secret(secret, again)

    # Drift by hand; noop (JSON and text, verbose: diffs shown) says what it would do.
    drifted = app.read_text().replace("user = app", "user = root")
    write_atomic(app, drifted)
    noop_json = run_once(graph, state, "--json", "--noop", "--log-level", "debug")
    noop_text = run_once(graph, state, "--noop", "-v")
    for proc in (noop_json, noop_text):
        assert proc.returncode == 2, proc.stderr  # "would change"
    assert _content_change(noop_json)["diff"] == ""
    assert "would change: content <redacted> -> <redacted>" in noop_text.stderr
    assert app.read_text() == drifted  # noop changed nothing
    _no_secret(secret, noop_json, noop_text)

    # The repair, in text with diffs asked for, and in JSON.
    repair = run_once(graph, state, "-v")
    assert repair.returncode == 2, repair.stderr
    assert app.read_text() == _rendered(secret)
    assert "user = root" not in repair.stderr  # not even the drifted lines' diff
    write_atomic(app, drifted)
    repair_json = run_once(graph, state, "--json")
    assert repair_json.returncode == 2, repair_json.stderr
    assert _content_change(repair_json)["diff"] == ""
    assert app.read_text() == _rendered(secret)
    _no_secret(secret, repair, repair_json)


def test_a_received_var_survives_live_edits_and_drift_is_repaired(agent, tmp_path, managed):
    app = managed / "app.conf"
    sentinel = sentinel_res(managed)
    graph = _graph(tmp_path, _doc(app, files=[sentinel]))
    a = agent(graph, "--log-level", "debug")
    a.wait_checked(["File[app]", "File[sentinel]"])
    wait_for(lambda: app.exists() and "password = " in app.read_text(), what="the first render")
    secret = _secret_of(app)
    a.barrier(managed / "sentinel")

    # Drift is repaired, and reported as drift.
    since = a.mark()
    write_atomic(app, "password = guessed\n")
    wait_for(lambda: app.read_text() == _rendered(secret), what="the repair")
    i = a.wait_event(checked("File[app]", applied=True), since=since, what="the repair event")
    assert a.events[i]["drift"] and a.events[i]["changes"][0]["diff"] == ""

    # An edit elsewhere keeps the templated vertex: its received var is no difference.
    since = a.mark()
    other = {"name": "other", "path": str(managed / "other"), "content": "other\n"}
    write_graph(graph, _doc(app, files=[sentinel, other]))
    swap = a.events[a.wait_event(event("graph_swapped"), since=since, what="the changeover")]
    assert (swap["added"], swap["replaced"], swap["kept"]) == (["File[other]"], [], 3)
    a.barrier(managed / "sentinel")
    assert not a.find(checked("File[app]", applied=True), since=since)

    # Editing vars re-renders, with the password received again by the new vertex.
    since = a.mark()
    write_graph(graph, _doc(app, vars={"user": "web", "port": 5432}, files=[sentinel]))
    swap = a.events[a.wait_event(event("graph_swapped"), since=since, what="the vars edit")]
    assert "File[app]" in swap["replaced"]
    wait_for(lambda: app.read_text() == _rendered(secret, "web"), what="the vars to re-render")

    # Editing the template re-renders too.
    since = a.mark()
    template = TEMPLATE.replace("[database]", "[db]")
    write_graph(
        graph,
        _doc(app, template=template, vars={"user": "web", "port": 5432}, files=[sentinel]),
    )
    wait_for(
        lambda: app.read_text() == _rendered(secret, "web").replace("[database]", "[db]"),
        what="the template edit to re-render",
    )
    a.wait_event(checked("File[app]", applied=True), since=since, what="the re-render")
    a.barrier(managed / "sentinel")
    assert a.stop() == 0
    assert secret not in json.dumps(a.events) and secret not in a.stderr
    assert not a.bad_lines


def test_noop_before_the_password_exists_says_the_file_waits_for_it(tmp_path, managed):
    """No password yet: the var is undefined because its sender has not run, not a failure."""
    app = managed / "app.conf"
    proc = run_once(_graph(tmp_path, _doc(app)), tmp_path / "state", "--json", "--noop")
    assert proc.returncode == 2, proc.stderr
    resources = recap_of(proc)["resources"]
    assert resources["File[app]"]["outcome"] == "pending"
    assert resources["File[app]"]["failures"] == []
    assert not app.exists()


_TOKENS = st.sampled_from(
    [
        "{% if a %}",
        "{% endif %}",
        "{% for x in a %}",
        "{% endfor %}",
        "{% set n = namespace(v=a) %}",
        "{% set n.v = n.v ~ n.v %}",
        "{% macro m(v) %}",
        "{% endmacro %}",
        "{{ m(a) }}",
        "{{",
        "}}",
        "[",
        "]",
        "(",
        ")",
        "a",
        " ~ ",
        " * ",
        " ** ",
        " % ",
        "|replace('a', a * 9)",
        "|join(a)",
        "|center(99999999)",
        "|indent(a)",
        "'%s'",
        "10**9",
        "range(99999)",
        "a.__class__",
        "{% raw %}",
        "{% endraw %}",
        "{#",
        "#}",
        "\n",
    ]
)


_PAIRS = [
    ("{% if a %}", "{% endif %}"),
    ("{% for x in a %}", "{% endfor %}"),
    ("{% filter upper %}", "{% endfilter %}"),
    ("{{ (", ") }}"),
    ("(", ")"),
]


@st.composite
def _template_soup(draw: st.DrawFn) -> str:
    """Tokens, and now and then one of them repeated deep (nesting is where parsers break)."""
    parts = draw(st.lists(_TOKENS, max_size=40))
    if draw(st.booleans()):
        deep = draw(_TOKENS)
        at = draw(st.integers(0, len(parts)))
        parts[at:at] = [deep] * draw(st.integers(50, 400))
    if draw(st.booleans()):  # balanced, so that it parses and reaches Python's compiler
        opener, closer = draw(st.sampled_from(_PAIRS))
        depth = draw(st.integers(20, 300))
        parts = [opener] * depth + parts + [closer] * depth
    return "".join(parts)


@settings(max_examples=300, deadline=None, database=None)
@given(_template_soup())
def test_no_template_makes_validation_or_rendering_raise_anything_else(text: str) -> None:
    """Validation says what is wrong or nothing; a render ends, in output or a TemplateProblem."""
    from pymgmt.resources.template import TemplateProblem, compile_template, render

    problem = File(name="/tmp/pymgmt-never-made", template=text).problems()
    if not problem:
        with contextlib.suppress(TemplateProblem):
            render(compile_template(text), {"a": "ab" * 50})


@pytest.mark.parametrize(
    ("template", "what"),
    [
        # the filtered value as a missing key: Jinja's message quotes the key
        ("port = 1\n{{ {}[pw | upper] }}\n", "line 2 of the template: an undefined value"),
        ("{{ (pw | upper) ~ 1 / 0 }}\n", "line 1 of the template: ZeroDivisionError"),
        # str.format's KeyError names the field: the value itself
        ("a\nb\n{{ ('{' ~ (pw | upper) ~ '}').format() }}\n", "line 3 of the template: KeyError"),
    ],
)
def test_a_render_error_with_a_secret_var_quotes_no_part_of_it(tmp_path, managed, template, what):
    """A secret through a filter is a text the registry does not know: no error may quote it.

    The password's charset is lower case only, so its upper-cased form
    shares no run of characters with it: `redaction` alone would let it by.
    """
    plain, app = managed / "plain", managed / "app.conf"
    doc = {
        "graph": "template-secret-error",
        "resources": {
            "password": [{"name": "db", "length": 24, "charset": "abcdefghijklmnopqrstuvwxyz"}],
            "file": [
                {"name": "plain", "path": str(plain), "mode": "0600"},
                {"name": "app", "path": str(app), "template": template},
            ],
        },
        "edges": [
            sendrecv_edge("to-plain", "password:db", "file:plain", "password", "content"),
            sendrecv_edge("to-app", "password:db", "file:app", "password", "vars.pw"),
        ],
    }
    graph = _graph(tmp_path, doc)
    state = tmp_path / "state"
    runs = [
        run_once(graph, state, "--json", "--log-level", "debug"),
        run_once(graph, state, "-v"),
    ]
    secret = plain.read_text()
    assert len(secret) == 24 and secret.islower()
    for proc in runs:
        assert proc.returncode & EXIT_FAILED, proc.stderr
        for form in (secret, secret.upper(), secret.upper()[:8], secret.upper()[-8:]):
            assert form not in proc.stdout and form not in proc.stderr
    failed = [e for e in json_lines(runs[0].stdout) if e.get("vertex") == "File[app]"]
    errors = [e["error"] for e in failed if e.get("error")]
    assert errors and all(what in err and "not shown" in err for err in errors), failed
    assert what in runs[1].stderr
    assert not app.exists()


def test_a_render_error_without_a_secret_still_says_what_it_is():
    from pymgmt.resources.template import TemplateProblem, compile_template, render

    with pytest.raises(TemplateProblem, match="has no attribute 'ABC'"):
        render(compile_template("{{ {}[pw | upper] }}"), {"pw": "abc"})
    with pytest.raises(TemplateProblem, match=r"^line 1 of the template: an undefined value \("):
        render(compile_template("{{ {}[pw | upper] }}"), {"pw": "abc"}, secret=True)


def test_a_received_template_that_does_not_compile_is_not_quoted(tmp_path):
    """A template received from a secret is one: Jinja's syntax error would quote it."""
    from pymgmt.errors import ResourceError

    res = File(name=str(tmp_path / "f"), template="{{ x s3cretWord }}")
    with pytest.raises(ResourceError, match="s3cretWord"):
        res._render()  # not a secret: the error shows the template's own text
    res.tainted = frozenset({"template"})
    with pytest.raises(ResourceError) as info:
        res._render()
    assert "s3cretWord" not in str(info.value) and "is a secret" in str(info.value)
