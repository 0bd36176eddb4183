"""The parse cache in the state directory (frontends/cache.py, issue 13).

Whether a run parsed is read from the interpreter itself: ``-X importtime``
lists every module imported, and a run that did not parse never imports
PyYAML. Each test uses real files, real runs and a real state directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import DEADLINE, Agent, dump, event, graph_doc, json_lines, wait_for

from pymgmt.cli.run import _ParseKeeper
from pymgmt.frontends import cache
from pymgmt.frontends.cache import CACHE_NAME
from pymgmt.frontends.compile import accept
from pymgmt.frontends.yamlbuild import declare
from pymgmt.frontends.yamlmodel import YamlGraph
from pymgmt.report.events import Applying, Settled
from pymgmt.resources.base import shipped_kinds

#: a user that is not root (the tests run as root): a foreign owner
NOBODY = 65534


def _run(
    graph: Path, prefix: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`pymgmt run --converged-timeout 0 --json`, and the modules it imported."""
    argv = [sys.executable, "-X", "importtime", "-m", "pymgmt.cli.main", "run"]
    argv += ["--prefix", str(prefix), "--converged-timeout", "0", "--json", *args, str(graph)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=4 * DEADLINE, check=False)
    return proc, _imported(proc.stderr)


def _imported(stderr: str) -> set[str]:
    """The modules -X importtime listed."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def _graph(tmp_path: Path, content: str = "one\n") -> Path:
    graph = tmp_path / "graph.yaml"
    files = [{"name": "f", "path": str(tmp_path / "managed"), "content": content}]
    graph.write_text(dump(graph_doc("cached", files=files)))
    return graph


def _cached(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A graph run once (so parsed and cached): the graph, the state directory, the cache."""
    graph, prefix = _graph(tmp_path), tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 2
    return graph, prefix, prefix / CACHE_NAME


def _outcome(proc: subprocess.CompletedProcess[str]) -> str:
    recap = json_lines(proc.stdout)[-1]
    assert recap["event"] == "recap", proc.stdout
    return str(recap["resources"]["File[f]"]["outcome"])


def test_a_second_run_of_an_unchanged_graph_does_not_parse(tmp_path: Path) -> None:
    graph, prefix = _graph(tmp_path), tmp_path / "state"
    first, parsed = _run(graph, prefix)
    assert first.returncode == 2, first.stderr
    assert "yaml" in parsed
    cache = prefix / CACHE_NAME
    st = cache.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    second, imported = _run(graph, prefix)
    assert second.returncode == 0, second.stderr
    assert "yaml" not in imported and "pymgmt.frontends.yamlbuild" not in imported
    assert _outcome(second) == "unchanged"


def test_an_edited_graph_is_parsed_again_and_replaces_the_cache(tmp_path: Path) -> None:
    graph, prefix = _graph(tmp_path), tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 2
    _graph(tmp_path, content="two\n")
    proc, imported = _run(graph, prefix)
    assert proc.returncode == 2, proc.stderr
    assert "yaml" in imported
    assert (tmp_path / "managed").read_text() == "two\n"
    proc, imported = _run(graph, prefix)  # the new parse is the one kept
    assert proc.returncode == 0 and "yaml" not in imported


def test_the_warnings_of_a_parse_are_shown_on_a_cache_hit_too(tmp_path: Path) -> None:
    graph, prefix = tmp_path / "graph.yaml", tmp_path / "state"
    f = {"name": "f", "path": str(tmp_path / "managed"), "content": "x\n"}
    graph.write_text(dump(graph_doc("dup", files=[f, f])))  # identical twins: merged, aloud
    (first, parsed), (second, imported) = _run(graph, prefix), _run(graph, prefix)
    assert "yaml" in parsed and "yaml" not in imported
    said = [_warnings(first), _warnings(second)]
    assert any("duplicate resource File[f]" in w for w in said[0]), first.stderr
    assert said[1] == said[0]


def _warnings(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The WARNING log lines, without their time stamps."""
    return [
        line.split(" ", 1)[1]
        for line in proc.stderr.splitlines()
        if not line.startswith("import time:") and " WARNING " in f" {line}"
    ]


def test_no_cache_parses_and_stores_nothing(tmp_path: Path) -> None:
    graph, prefix = _graph(tmp_path), tmp_path / "state"
    proc, imported = _run(graph, prefix, "--no-cache")
    assert proc.returncode == 2 and "yaml" in imported
    assert not (prefix / CACHE_NAME).exists()
    assert _run(graph, prefix)[0].returncode == 0
    proc, imported = _run(graph, prefix, "--no-cache")  # a cache is there: not read
    assert proc.returncode == 0 and "yaml" in imported


def test_an_invalid_graph_is_never_cached(tmp_path: Path) -> None:
    graph, prefix = tmp_path / "graph.yaml", tmp_path / "state"
    prefix.mkdir(mode=0o700)
    graph.write_text("graph: bad\nresources:\n  file:\n  - name: f\n    bogus: 1\n")
    proc, _ = _run(graph, prefix)
    assert proc.returncode == 1
    assert not (prefix / CACHE_NAME).exists()


def test_a_corrupt_cache_is_ignored_and_replaced(tmp_path: Path) -> None:
    graph, prefix, cache = _cached(tmp_path)
    good = cache.read_bytes()
    for bad in (b"{not json", b"[]", good.replace(b'"resources"', b'"resourcez"'), b""):
        cache.write_bytes(bad)
        proc, imported = _run(graph, prefix)
        assert proc.returncode == 0, proc.stderr
        assert "yaml" in imported and "Traceback" not in proc.stderr
        assert json.loads(cache.read_bytes())["key"]  # replaced by a good one


def test_a_cache_that_names_a_module_outside_the_resource_kinds_is_not_imported(
    tmp_path: Path,
) -> None:
    graph, prefix, cache = _cached(tmp_path)
    doc = json.loads(cache.read_bytes())
    doc["graph"]["resources"][0][0] = "antigravity"  # a module that acts when imported
    cache.write_text(json.dumps(doc))
    proc, imported = _run(graph, prefix)
    assert proc.returncode == 0, proc.stderr
    assert "antigravity" not in imported and "yaml" in imported


def test_a_cache_file_of_another_user_or_writable_by_others_is_not_trusted(
    tmp_path: Path,
) -> None:
    graph, prefix, cache = _cached(tmp_path)
    os.chown(cache, NOBODY, NOBODY)
    proc, imported = _run(graph, prefix)
    assert proc.returncode == 0 and "yaml" in imported
    assert cache.stat().st_uid == os.geteuid()  # replaced by this run's own
    os.chmod(cache, 0o622)
    proc, imported = _run(graph, prefix)
    assert proc.returncode == 0 and "yaml" in imported
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_a_state_directory_writable_by_others_is_not_trusted_for_the_cache(
    tmp_path: Path,
) -> None:
    graph, prefix = _graph(tmp_path), tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 2
    os.chmod(prefix, 0o777)
    proc, imported = _run(graph, prefix)
    assert proc.returncode == 0 and "yaml" in imported


def test_a_symlink_planted_at_the_cache_path_is_not_followed(tmp_path: Path) -> None:
    graph, prefix, cache = _cached(tmp_path)
    elsewhere = tmp_path / "planted.json"
    elsewhere.write_bytes(cache.read_bytes())  # a valid cache, even
    os.chmod(elsewhere, 0o600)
    planted = elsewhere.stat()
    cache.unlink()
    cache.symlink_to(elsewhere)
    proc, imported = _run(graph, prefix)
    assert proc.returncode == 0 and "yaml" in imported  # not read through the link
    assert not cache.is_symlink()  # replaced by a file of its own
    after = elsewhere.stat()  # the target was not written through the link
    assert (after.st_ino, after.st_mtime_ns) == (planted.st_ino, planted.st_mtime_ns)


def test_validate_always_parses(tmp_path: Path) -> None:
    graph, prefix = _graph(tmp_path), tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 2
    argv = [sys.executable, "-X", "importtime", "-m", "pymgmt.cli.main", "validate", str(graph)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "yaml" in _imported(proc.stderr)


@pytest.mark.parametrize("kind", sorted(shipped_kinds()))
def test_every_kinds_example_reads_back_from_the_cache_exactly(kind: str) -> None:
    declared = declare(shipped_kinds()[kind].example, "/srv/example.yaml")
    data = cache.encode(declared, "key")
    assert data is not None, f"{kind}'s example cannot be cached"
    back = cache._decode(json.loads(data)["graph"])
    assert _graph_state(back) == _graph_state(declared)


def _graph_state(g: YamlGraph) -> dict[str, object]:
    """Every field of a declared graph, resources as (class, every attribute with its type)."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(g):
        value = getattr(g, f.name)
        if f.name == "vertices":
            value = [
                (k, type(r), {a: (type(v), v) for a, v in vars(r).items()})
                for k, r in value.items()
            ]
        elif f.name == "warnings":
            value = [(w.message, w.location, w.field, w.hint) for w in value]
        elif f.name in ("edges", "collect"):  # their equality leaves the location out
            value = [(x, x.location) for x in value]
        out[f.name] = value
    return out


_TREE = """\
graph: tree
resources:
  file:
  - name: top
    path: /srv/tree/
  - name: sub
    path: /srv/tree/sub/
  - name: leaf
    path: /srv/tree/sub/leaf
    content: "x\\n"
  - name: apart
    path: /srv/apart
    content: "y\\n"
"""


def test_autoedges_of_the_graph_alone_are_kept_and_added_again_on_a_hit(tmp_path: Path) -> None:
    declared = declare(_TREE, "/srv/tree.yaml")
    parsed = accept(declared)
    assert len(parsed.autoedges) == 2  # top -> sub -> leaf
    data = cache.encode(declared, "key", parsed.autoedges)
    assert data is not None
    cache.write(tmp_path, data)
    hit = cache.read(tmp_path, "key")
    assert hit is not None
    graph, autoedges = hit
    assert autoedges == parsed.autoedges
    again = accept(graph, autoedges=autoedges)
    assert again.autoedges == parsed.autoedges
    assert again.graph.edges == parsed.graph.edges
    assert again.graph.vertices.keys() == parsed.graph.vertices.keys()


def test_autoedges_that_ask_the_system_are_not_kept(tmp_path: Path) -> None:
    # pkg's AutoEdges ask dpkg which files a package ships: they may differ next time
    declared = declare(shipped_kinds()["pkg"].example, "/srv/example.yaml")
    data = cache.encode(declared, "key", [])
    assert data is not None and json.loads(data)["autoedges"] is None
    cache.write(tmp_path, data)
    hit = cache.read(tmp_path, "key")
    assert hit is not None and hit[1] is None


def test_kept_autoedges_naming_no_vertex_make_the_cache_a_miss(tmp_path: Path) -> None:
    declared = declare(_TREE, "/srv/tree.yaml")
    doc = json.loads(cache.encode(declared, "key", accept(declared).autoedges) or b"")
    doc["autoedges"].append([["file", "top"], ["file", "nowhere"]])
    cache.write(tmp_path, json.dumps(doc).encode())
    assert cache.read(tmp_path, "key") is None


def test_a_graph_with_export_only_resources_is_not_stored() -> None:
    # only Puppet's graphs publish resources they do not apply; the cache does not carry them
    declared = declare(_TREE, "/srv/tree.yaml")
    assert cache.encode(declared, "key") is not None
    declared.export_only.append(next(iter(declared.vertices.values())))
    assert cache.encode(declared, "key") is None


# -- an agent stores the parse once its graph settled (issue 13) --------------------------


def _stored_before_start(graph: Path) -> bytes:
    """What storing the parse right after parsing writes (as `pymgmt run` did before)."""
    text, source = graph.read_bytes(), str(graph)
    parsed = accept(declare(text, source))
    assert isinstance(parsed.declared, YamlGraph)
    data = cache.encode(parsed.declared, cache.cache_key(text, source), parsed.autoedges)
    assert data is not None
    return data


def _never_settling(tmp_path: Path) -> Path:
    """A file, and a command that fails and is retried for ever: the graph never settles."""
    graph = tmp_path / "graph.yaml"
    files = [
        {"name": "d", "path": f"{tmp_path}/tree/"},
        {"name": "f", "path": f"{tmp_path}/tree/f", "content": "x\n"},
    ]
    execs = [{"name": "fails", "cmd": "false", "meta": {"retry": -1, "delay": 3_600_000}}]
    graph.write_text(dump(graph_doc("unsettled", files=files, execs=execs)))
    return graph


def test_an_agent_stores_the_parse_once_settled_the_same_bytes_as_before_start(
    tmp_path: Path, agent: Callable[..., Agent], prefix: Path
) -> None:
    graph = tmp_path / "graph.yaml"
    files = [
        {"name": "d", "path": f"{tmp_path}/tree/"},
        {"name": "f", "path": f"{tmp_path}/tree/f", "content": "x\n"},
    ]
    graph.write_text(dump(graph_doc("settles", files=files)))
    a = agent(graph)
    a.wait_event(event("settled"), what="the graph settling")
    stored = wait_for(lambda: (prefix / CACHE_NAME).exists(), what="the parse stored")
    assert stored
    assert (prefix / CACHE_NAME).read_bytes() == _stored_before_start(graph)
    assert [p.name for p in prefix.iterdir() if p.name.startswith(CACHE_NAME)] == [CACHE_NAME]


def test_an_agent_killed_before_its_graph_settled_stored_nothing(
    tmp_path: Path, agent: Callable[..., Agent], prefix: Path
) -> None:
    # kill -9 before the store: no cache, nor half of one; the next start parses
    a = agent(_never_settling(tmp_path))
    a.wait_checked(["File[f]", "Exec[fails]"])
    a.send(signal.SIGKILL)
    a.wait_exit()
    assert not [p.name for p in prefix.iterdir() if p.name.startswith(CACHE_NAME)]
    assert not a.find(event("settled"))


def test_an_agent_stopped_before_its_graph_settled_stores_the_parse_on_the_way_out(
    tmp_path: Path, agent: Callable[..., Agent], prefix: Path
) -> None:
    graph = _never_settling(tmp_path)
    a = agent(graph)
    a.wait_checked(["File[f]", "Exec[fails]"])
    assert not (prefix / CACHE_NAME).exists()  # it never settles: not stored yet
    a.stop(signal.SIGTERM)
    assert not a.find(event("settled"))
    assert (prefix / CACHE_NAME).read_bytes() == _stored_before_start(graph)


# -- stored a piece at a time: no long hold of the GIL (issue 13) -------------------------


def _big_graph(tmp_path: Path, n: int = 2 * cache.PIECE_ITEMS + 7) -> Path:
    """More resources than two pieces hold: nested files (AutoEdges), execs with edges."""
    files: list[dict[str, object]] = [{"name": "top", "path": f"{tmp_path}/tree/"}]
    files += [
        {"name": f"f{i}", "path": f"{tmp_path}/tree/f{i}", "content": f"{i} \u00e9\u2603\n"}
        for i in range(n)
    ]
    execs = [{"name": f"e{i}", "cmd": "true", "meta": {"retry": i}} for i in range(n)]
    edges = [(f"exec:e{i}", f"exec:e{i + 1}") for i in range(n - 1)]
    graph = tmp_path / "graph.yaml"
    graph.write_text(dump(graph_doc("big", files=files, execs=execs, edges=edges)))
    return graph


def _listed(value: object) -> object:
    """`cache._encode`'s layout with every generator made a list: what json.dumps takes."""
    if isinstance(value, dict):
        return {k: _listed(v) for k, v in value.items()}
    if isinstance(value, Iterator):
        return [_listed(v) for v in value]
    return value


def test_the_pieces_joined_are_json_dumps_of_the_whole_document(tmp_path: Path) -> None:
    graph = _big_graph(tmp_path)
    text = graph.read_bytes()
    parsed = accept(declare(text, str(graph)))
    declared = parsed.declared
    assert isinstance(declared, YamlGraph)
    assert len(parsed.autoedges) > cache.PIECE_ITEMS and len(declared.edges) > cache.PIECE_ITEMS
    pieces = cache.encode_pieces(declared, "key", parsed.autoedges)
    assert pieces is not None
    got = list(pieces)
    assert len(got) > 6  # resources, edges, AutoEdges and item lines each in several pieces
    whole = {
        "format": cache.FORMAT,
        "key": "key",
        "graph": _listed(cache._encode(declared)),
        "autoedges": [[list(e.src), list(e.dst)] for e in parsed.autoedges],
    }
    assert b"".join(got) == json.dumps(whole).encode()
    cache.write(tmp_path, got)  # written piece by piece, read back whole
    hit = cache.read(tmp_path, "key")
    assert hit is not None and hit[1] == parsed.autoedges
    assert _graph_state(hit[0]) == _graph_state(declared)


def test_storing_the_parse_pauses_while_a_change_is_applied(tmp_path: Path) -> None:
    graph = _big_graph(tmp_path)
    text, source = graph.read_bytes(), str(graph)
    key = cache.cache_key(text, source)
    keeper = _ParseKeeper(tmp_path, accept(declare(text, source)), key)
    progress: list[int] = []

    async def scenario() -> None:
        task = asyncio.create_task(keeper.keep())
        for _ in range(20):
            await asyncio.sleep(0)
        assert keeper._pieces == []  # nothing before the graph first settles
        keeper.emit(Settled(1, [], []))
        for _ in range(3):  # three pieces, one per turn of the loop
            await asyncio.sleep(0)
        assert len(keeper._pieces) == 3
        keeper.emit(Applying("File[f1]", "drift", ["content"]))
        paused_at = len(keeper._pieces)
        for _ in range(50):
            await asyncio.sleep(0)
            progress.append(len(keeper._pieces))
        assert not (tmp_path / CACHE_NAME).exists()
        keeper.emit(Settled(1, [], []))
        await asyncio.wait_for(task, DEADLINE)
        assert set(progress) == {paused_at}

    asyncio.run(scenario())
    assert (tmp_path / CACHE_NAME).read_bytes() == _stored_before_start(graph)
