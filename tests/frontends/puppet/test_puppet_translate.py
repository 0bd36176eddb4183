"""The catalog translator on hand-written catalogs (Puppet itself: test_puppet_real.py).

These are the only tests fed catalogs Puppet did not print: they pin the
mapping rules and the flattening of containers one case at a time, in the
JSON shape `puppet catalog find --render-as json` prints (catalog_format 2).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pymgmt.errors import InputError, InputErrors, Location
from pymgmt.frontends.compile import accept
from pymgmt.frontends.puppet.catalog import (
    Collector,
    Exported,
    PuppetError,
    parse_catalog,
    read_store,
)
from pymgmt.frontends.puppet.graph import declared_graph
from pymgmt.frontends.puppet.render import to_yaml
from pymgmt.frontends.puppet.translate import Translation, UnsupportedError, translate

SITE = "/srv/site.pp"


def res(type_: str, title: str, line: int = 1, **params: Any) -> dict[str, Any]:
    kind = {"Class": "class", "Stage": "compilable_type"}.get(type_, "compilable_type")
    return {
        "type": type_,
        "title": title,
        "file": SITE,
        "line": line,
        "exported": False,
        "kind": kind,
        "parameters": params,
    }


def catalog(resources: list[dict[str, Any]], contains: list[tuple[str, str]] = ()) -> bytes:  # type: ignore[assignment]
    """A catalog: Stage[main] holds Class[main], which holds every resource not contained."""
    contained = {dst for _, dst in contains}
    edges = [{"source": "Stage[main]", "target": "Class[main]"}]
    edges += [{"source": s, "target": d} for s, d in contains]
    for r in resources:
        ref = f"{r['type']}[{r['title']}]"
        if ref not in contained and r["type"] not in ("Stage",) and ref != "Class[main]":
            edges.append({"source": "Class[main]", "target": ref})
    base = [res("Stage", "main"), {**res("Class", "main"), "kind": "unknown"}]
    doc = {"name": "host", "resources": base + resources, "edges": edges}
    return b"Notice: Compiled catalog for host\n" + json.dumps(doc).encode()


def tr(resources: list[dict[str, Any]], contains: Any = (), allow: bool = False) -> Translation:
    return translate(parse_catalog(catalog(resources, contains), SITE), SITE, allow=allow)


def edges(t: Translation) -> set[tuple[str, str, bool]]:
    return {(f"{e.src[0]}:{e.src[1]}", f"{e.dst[0]}:{e.dst[1]}", e.notify) for e in t.edges}


def test_files_map_onto_pymgmt_file_params() -> None:
    t = tr(
        [
            res("File", "/srv/www", ensure="directory", mode="755"),
            res("File", "/srv/www/index.html", content="hi\n", mode="0644", owner="root"),
            res("File", "/srv/old", ensure="absent"),
            res("File", "conf", path="/etc/app.conf", ensure="file", content=""),
        ]
    )
    assert not t.unsupported and not t.errors
    got = {(r.kind, r.name): r.params for r in t.resources}
    assert got == {
        ("file", "/srv/www/"): {"mode": "0755"},
        ("file", "/srv/www/index.html"): {"content": "hi\n", "mode": "0644", "owner": "root"},
        ("file", "/srv/old"): {"state": "absent"},
        ("file", "/etc/app.conf"): {"content": ""},
    }
    declared_graph(t)  # valid as pymgmt resources too


def test_packages_services_execs_and_notify() -> None:
    t = tr(
        [
            res("Package", "nginx", ensure="latest"),
            res("Package", "telnet", ensure="absent"),
            res("Package", "pin", ensure="1.2-3"),
            res("Service", "nginx", ensure="running", enable=True),
            res(
                "Exec",
                "build",
                command="make all",
                cwd="/srv",
                creates="/srv/out",
                path=["/usr/bin", "/bin"],
                environment=["LANG=C"],
                onlyif="test -d /srv",
                timeout=60,
            ),
            res("Notify", "hello", message="hi"),
        ]
    )
    assert not t.unsupported and not t.errors
    got = {(r.kind, r.name): r.params for r in t.resources}
    assert got[("pkg", "nginx")] == {"state": "newest"}
    assert got[("pkg", "telnet")] == {"state": "uninstalled"}
    assert got[("pkg", "pin")] == {"state": "1.2-3"}
    assert got[("svc", "nginx")] == {"state": "running", "startup": "enabled"}
    assert got[("exec", "build")] == {
        "cmd": "make all",
        "shell": "/bin/sh",
        "env": {"PATH": "/usr/bin:/bin", "LANG": "C"},
        "cwd": "/srv",
        "creates": "/srv/out",
        "ifcmd": "test -d /srv",
        "ifshell": "/bin/sh",
        "timeout": 60,
    }
    assert got[("noop", "hello")] == {}
    assert all(r.meta == {} for r in t.resources)
    assert [str(n) for n in t.notes] == [
        f"{SITE}:1: Notify[hello]: becomes a noop: its message is not printed"
    ]
    declared_graph(t)


def test_exec_unless_and_refreshonly() -> None:
    t = tr([res("Exec", "e", command="make", unless="test -e /x", refreshonly=True)])
    assert not t.unsupported
    (e,) = t.resources
    assert e.params == {
        "cmd": "make",
        "shell": "/bin/sh",
        "nifcmd": "test -e /x",
        "nifshell": "/bin/sh",
        "refresh_only": True,
    }
    declared_graph(t)


def test_exec_tries_and_try_sleep_are_retry_and_delay() -> None:
    t = tr([res("Exec", "flaky", command="/bin/false", tries=3, try_sleep=1.5)])
    (flaky,) = t.resources
    assert flaky.meta == {"retry": 2, "delay": 1500}
    graph = declared_graph(t)
    assert graph.vertices[("exec", "flaky")].meta.retry == 2


def test_unsupported_types_and_params_are_listed_with_file_and_line() -> None:
    t = tr(
        [
            res("Cron", "backup", line=3, command="x"),
            res("File", "/a", line=7, ensure="link", target="/b"),
            res("File", "/c", line=9, content="x", recurse=True),
            res("Exec", "e", line=11, command="/bin/true", umask="0027"),
        ]
    )
    listed = sorted(str(u.error()) for u in t.unsupported)
    assert listed == [
        f"{SITE}:11: Exec[e]: parameter 'umask' is not supported yet",
        f"{SITE}:3: Cron[backup]: resource type 'Cron' has no pymgmt kind",
        f"{SITE}:7: File[/a]: ensure => 'link' is not supported (file, directory or absent)",
        f"{SITE}:7: File[/a]: parameter 'target' is not supported",
        f"{SITE}:9: File[/c]: recurse => true is supported with ensure => directory and a source",
    ]
    assert t.resources == []  # refused: none of them half-translated
    with pytest.raises(InputErrors) as e:
        declared_graph(t)
    assert all(isinstance(err, UnsupportedError) for err in e.value.errors)


def test_allowed_unsupported_resources_stand_in_as_noops_and_keep_their_edges() -> None:
    t = tr(
        [
            res("File", "/a", content="a"),
            res("Cron", "backup", require="File[/a]"),
            res("File", "/b", content="b", require="Cron[backup]"),
        ],
        allow=True,
    )
    assert [u.ref for u in t.unsupported] == ["Cron[backup]"]
    stand_in = next(r for r in t.resources if r.stand_in)
    assert (stand_in.kind, stand_in.name, stand_in.params) == ("noop", "Cron[backup]", {})
    assert edges(t) == {
        ("file:/a", "noop:Cron[backup]", False),
        ("noop:Cron[backup]", "file:/b", False),
    }
    declared_graph(t)


def test_class_ordering_reaches_every_resource_of_both_classes() -> None:
    t = tr(
        [
            res("Class", "A", before="Class[B]"),
            res("Class", "B"),
            res("File", "/a1", content=""),
            res("File", "/a2", content=""),
            res("File", "/b1", content=""),
        ],
        contains=[("Class[A]", "File[/a1]"), ("Class[A]", "File[/a2]"), ("Class[B]", "File[/b1]")],
    )
    assert edges(t) == {("file:/a1", "file:/b1", False), ("file:/a2", "file:/b1", False)}


def test_an_empty_class_passes_its_ordering_on() -> None:
    t = tr(
        [
            res("File", "/first", content="", before="Class[Middle]"),
            res("Class", "Middle", before="File[/last]"),
            res("File", "/last", content=""),
        ]
    )
    assert edges(t) == {("file:/first", "file:/last", False)}


def test_notify_to_a_defined_type_refreshes_everything_in_it() -> None:
    vhost = {**res("Site::Vhost", "a"), "kind": "defined_type"}
    t = tr(
        [
            res("File", "/conf", content="", notify="Site::Vhost[a]"),
            vhost,
            res("Exec", "reload", command="/bin/true"),
            res("Service", "web", ensure="running"),
        ],
        contains=[("Site::Vhost[a]", "Exec[reload]"), ("Site::Vhost[a]", "Service[web]")],
    )
    assert edges(t) == {
        ("file:/conf", "exec:reload", True),
        ("file:/conf", "svc:web", True),
    }


def test_stages_order_their_classes() -> None:
    t = tr(
        [
            res("Stage", "pre", before="Stage[main]"),
            res("Class", "Early"),
            res("File", "/early", content=""),
            res("File", "/late", content=""),
        ],
        contains=[("Stage[pre]", "Class[Early]"), ("Class[Early]", "File[/early]")],
    )
    assert edges(t) == {("file:/early", "file:/late", False)}


def test_references_are_case_insensitive_for_types_and_class_titles() -> None:
    t = tr(
        [
            res("Class", "Web"),
            res("File", "/w", content=""),
            res("File", "/x", content="", require=["class[web]", ["FILE[/w/]"]]),
        ],
        contains=[("Class[Web]", "File[/w]")],
    )
    assert not t.errors
    assert edges(t) == {("file:/w", "file:/x", False)}


def test_a_reference_to_nothing_is_an_error_at_its_line() -> None:
    t = tr([res("File", "/x", line=4, content="", require="Package[nope]")])
    assert [str(e) for e in t.errors] == [
        f"{SITE}:4: require: File[/x]: require => Package[nope]: no such resource in the catalog"
    ]
    with pytest.raises(InputError):
        declared_graph(t)


def test_two_puppet_resources_on_one_pymgmt_resource_are_refused() -> None:
    t = tr(
        [
            res("File", "one", line=2, path="/same", content="1"),
            res("File", "two", line=5, path="/same/", content="2"),
        ]
    )
    assert len(t.errors) == 1
    assert "File[two] and File[one] are both file '/same'" in str(t.errors[0])


def test_a_dependency_cycle_is_refused_by_the_graph_checks() -> None:
    t = tr(
        [
            res("File", "/a", content="", require="File[/b]"),
            res("File", "/b", content="", require="File[/a]"),
        ]
    )
    with pytest.raises(InputError) as e:
        accept(declared_graph(t))
    assert "cycle" in str(e.value)


def test_exec_user_and_group_are_execs_own() -> None:
    t = tr([res("Exec", "e", command="/bin/true", user="www-data", group="adm")])
    (e,) = t.resources
    assert (e.params["user"], e.params["group"]) == ("www-data", "adm")
    declared_graph(t)


def test_a_local_source_is_the_files_source(tmp_path: Path) -> None:
    src = tmp_path / "motd"
    src.write_text("welcome\n")
    t = tr(
        [
            res("File", "/etc/motd", source=f"file://{src}"),
            res("File", "/etc/other", source="puppet:///modules/x/y"),
        ]
    )
    motd = next(r for r in t.resources if r.name == "/etc/motd")
    assert motd.params == {"source": str(src)}  # copied, and followed live
    assert [u.what for u in t.unsupported] == [
        "source 'puppet:///modules/x/y' is not supported (a local absolute path only)"
    ]


def test_a_recursive_directory_source_is_a_recursive_copy() -> None:
    t = tr(
        [
            res(
                "File",
                "/srv/www",
                ensure="directory",
                source="file:///srv/src",
                recurse=True,
                purge="true",
                owner="www-data",
            ),
            res("File", "/srv/half", ensure="directory", source="/srv/src"),
            res(
                "File",
                "/srv/moded",
                ensure="directory",
                source="/srv/src",
                recurse=True,
                mode="0644",
            ),
            res("File", "/srv/lone", ensure="directory", purge=True),
            res("File", "/srv/kept", ensure="directory", recurse=True, purge=True),
            res("File", "/srv/d", ensure="directory", recurse=True, purge=True, force=True),
            res("File", "/srv/plain", ensure="directory", recurse=True),
        ]
    )
    www = next(r for r in t.resources if r.name == "/srv/www/")
    assert www.params == {
        "source": "/srv/src/",
        "recurse": True,
        "purge": True,
        "owner": "www-data",
    }
    assert [u.what for u in t.unsupported] == [
        "a directory with a source needs recurse => true",
        "mode with recurse is not supported (Puppet sets it on every file copied; "
        "pymgmt copies each file's own permission bits)",
        "purge => true without recurse => true purges nothing",
        "purge without force is not supported (Puppet keeps unmanaged directories, "
        "pymgmt's purge removes them): add force => true",
        "recurse => true is supported with ensure => directory and a source",
    ]
    # Puppet's purge without a source: pymgmt's (mgmt's purge1.mcl), sparing managed files
    d = next(r for r in t.resources if r.name == "/srv/d/")
    assert d.params == {"recurse": True, "purge": True}


# -- exported resources and collectors ------------------------------------------------------


def exchange(
    resources: list[dict[str, Any]],
    collectors: list[Collector] = (),  # type: ignore[assignment]
    exported: list[Exported] = (),  # type: ignore[assignment]
    *,
    collect_dir: str | None = "/srv/share",
    allow: bool = False,
) -> Translation:
    """`tr`, with what pymgmt's storeconfigs terminus recorded beside the catalog."""
    parsed = parse_catalog(catalog(resources), SITE)
    full = replace(parsed, collectors=list(collectors), exported=list(exported))
    return translate(full, SITE, allow=allow, collect_dir=collect_dir)


def collector(line: int, query: Any = None, *, type_: str = "File", overrides: bool = False) -> Any:
    return Collector(type_, query, overrides, Location(SITE, line))


def test_an_exported_file_collected_here_is_applied_and_exported() -> None:
    """Puppet applies an @@file on its own node when the node collects it: pymgmt's @@."""
    shared = {**res("File", "/srv/share/web1.txt", content="web1\n"), "exported": True}
    t = exchange(
        [shared, res("File", "/etc/motd", line=2, content="hi\n")],
        [collector(3)],
        [Exported("File", "/srv/share/web1.txt", Location(SITE, 1))],
    )
    assert not t.unsupported and not t.errors
    graph = accept(declared_graph(t)).graph
    assert graph.exported == {("file", "/srv/share/web1.txt")}
    assert [(c.kind, c.pattern, c.mode) for c in graph.collect] == [("file", "/srv/share/", "0644")]
    text = to_yaml(t)
    assert "- name: '@@/srv/share/web1.txt'" in text
    assert "collect:\n- {kind: file, pattern: /srv/share/, mode: '0644'}" in text


def test_an_exported_file_not_collected_here_is_published_and_not_applied() -> None:
    """Puppet leaves it out of this node's catalog: pymgmt publishes it and applies nothing."""
    only = Exported("File", "/srv/share/web1.txt", Location(SITE, 7), {"content": "web1\n"})
    t = exchange([res("File", "/etc/motd", line=2, content="hi\n")], [], [only])
    assert not t.unsupported and not t.errors
    graph = accept(declared_graph(t)).graph
    assert list(graph.vertices) == [("file", "/etc/motd")]
    assert not graph.exported
    (published,) = graph.export_only
    assert (published.key, published.content) == (("file", "/srv/share/web1.txt"), "web1\n")
    text = to_yaml(t)
    assert "web1.txt" not in text.split("# Exported (@@) but not collected")[0]
    assert "# File[/srv/share/web1.txt] at " in text and "#   - name: /srv/share/web1.txt" in text


def test_an_export_only_resource_is_checked_and_nothing_may_relate_to_it() -> None:
    bad = Exported("File", "/srv/x", Location(SITE, 7), {"ensure": "file", "owner": "a b:c"})
    with pytest.raises(InputErrors) as e:
        declared_graph(exchange([], [], [bad]))
    assert str(e.value.errors[0]).startswith(f"{SITE}:7: File[/srv/x]: owner: ")
    needs = res("File", "/etc/motd", line=2, content="", require="File[/srv/y]")
    t = exchange([needs], [], [Exported("File", "/srv/y", Location(SITE, 7))])
    assert "File[/srv/y]: no such resource in the catalog" in str(t.errors[0])


@pytest.mark.parametrize(
    ("found", "ref", "why"),
    [
        (
            collector(4, ["tag", "==", "web"]),
            "File <<| tag == 'web' |>>",
            "a collector's query is not supported",
        ),
        (
            collector(4, [["tag", "==", "a"], "or", [["tag", "==", "b"], "and", ["x", "!=", 1]]]),
            "File <<| tag == 'a' or (tag == 'b' and x != 1) |>>",
            "a collector's query is not supported",
        ),
        (collector(4, overrides=True), "File <<| |>>", "overrides ({ ... }) are not supported"),
        (collector(4, type_="Sshkey"), "Sshkey <<| |>>", "pymgmt collects files only"),
    ],
)
def test_a_collector_pymgmt_cannot_honour_is_refused_at_its_line(
    found: Collector, ref: str, why: str
) -> None:
    t = exchange([], [found])
    assert len(t.unsupported) == 1
    item = t.unsupported[0]
    assert (item.ref, item.location) == (ref, Location(SITE, 4))
    assert why in item.what
    with pytest.raises(InputErrors) as e:
        declared_graph(t)
    assert str(e.value.errors[0]).startswith(f"{SITE}:4: {ref}: ")
    # allowed: left out, with nothing standing in, and nothing collected
    allowed = exchange([], [found], allow=True)
    assert allowed.unsupported[0].instead == "ignored: nothing is collected"
    assert not declared_graph(allowed).collect


def test_a_collector_needs_the_directory_collected_files_land_in() -> None:
    t = exchange([], [collector(9)], collect_dir=None)
    assert "--puppet-collect-dir DIR" in t.unsupported[0].what
    relative = exchange([], [collector(9)], collect_dir="share")
    assert "is not an absolute directory" in relative.unsupported[0].what
    twice = exchange([], [collector(9), collector(10)])
    assert [c.location for c in twice.collect] == [Location(SITE, 9)]  # one entry per kind


def test_exporting_another_type_than_file_is_refused() -> None:
    t = exchange([{**res("Exec", "x", command="/bin/true"), "exported": True}])
    assert t.unsupported[0].what.startswith("exporting Exec resources (@@) is not supported")


def test_the_terminus_records_are_read_strictly() -> None:
    data = (
        b'{"collector":{"type":"File","query":null,"overrides":false,"file":"/m.pp","line":3}}\n'
        b'{"collector":{"type":"File","query":["tag","==","x"],"overrides":true,"file":null,'
        b'"line":4}}\n'
        b'{"export":{"type":"File","title":"/a","file":"","line":1}}\n'
        b'{"export":{"type":"File","title":"/b","params":{"mode":"0600"},"file":"","line":2}}\n'
    )
    collectors, exported = read_store(data, SITE)
    assert collectors == [
        Collector("File", None, False, Location("/m.pp", 3)),
        Collector("File", ["tag", "==", "x"], True, Location(SITE, 4)),
    ]
    assert exported == [
        Exported("File", "/a", Location(SITE, 1)),
        Exported("File", "/b", Location(SITE, 2), {"mode": "0600"}),
    ]
    bad_params = b'{"export": {"type": "File", "title": "/c", "params": []}}'
    for bad in (b"nope", b"[]", b'{"other": {}}', b'{"export": {"type": 1}}', bad_params):
        with pytest.raises(PuppetError):
            read_store(bad, SITE)


def test_a_values_problem_is_reported_at_the_manifest_line() -> None:
    t = tr([res("Package", "not a package!", line=12)])
    with pytest.raises(InputErrors) as e:
        declared_graph(t)
    assert str(e.value.errors[0]).startswith(f"{SITE}:12: name: Pkg[not a package!]")


@pytest.mark.parametrize(
    "data",
    [
        b"no json here",
        b"Notice: x\n{not json",
        b'{"resources": 3}',
        b'{"resources": [{"type": 1, "title": "x"}]}',
        b'{"resources": [], "edges": [{"source": "a"}]}',
        b'{"resources": [{"type": "File", "title": "/x", "parameters": []}]}',
    ],
)
def test_a_malformed_catalog_is_an_input_error(data: bytes) -> None:
    with pytest.raises(PuppetError):
        parse_catalog(data, SITE)


def test_users_and_groups_map_onto_pymgmts_accounts() -> None:
    t = tr(
        [
            res("Group", "web", gid=2001, system=True),
            res("User", "web", uid="2001", gid="web", groups=["adm"], home="/srv/web"),
            res("User", "ops", groups="adm", membership="inclusive", shell="/bin/bash"),
            res("User", "old", ensure="absent"),
        ]
    )
    assert not t.unsupported and not t.errors
    users = {r.name: r.params for r in t.resources if r.kind == "user"}
    assert users["web"] == {
        "uid": 2001,
        "group": "web",
        "home": "/srv/web",
        "groups": ["adm"],
        "membership": "minimum",  # Puppet's default: other groups are left alone
    }
    assert users["ops"] == {"shell": "/bin/bash", "groups": ["adm"], "membership": "exact"}
    assert users["old"] == {"state": "absent"}
    groups = {r.name: r.params for r in t.resources if r.kind == "group"}
    assert groups["web"] == {"gid": 2001, "system": True}
    declared_graph(t)
    refused = tr([res("User", "x", managehome=True, password="secret")])
    assert sorted(u.what for u in refused.unsupported) == [
        "managehome => true is not supported: manage the home with a file",
        "parameter 'password' is not supported",
    ]


def test_file_show_diff_false_is_kept() -> None:
    t = tr([res("File", "/etc/k", source="/srv/k", show_diff=False)])
    assert not t.unsupported and not t.errors
    (r,) = t.resources
    assert r.params == {"source": "/srv/k", "show_diff": False}
