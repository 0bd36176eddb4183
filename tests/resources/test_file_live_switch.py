"""A running agent follows a file resource whose way of making its content is edited live.

content -> template -> source -> fragments -> content, and a directory's
recurse turned on and off: every graph saved while the agent runs ends in
the bytes that graph asks for, and the old way leaves nothing behind (no
stale watch on a source no longer used, no stale render).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import checked, event, graph_doc, sentinel_res, wait_for, write_atomic, write_graph


def _save(graph: Path, managed: Path, app: dict[str, Any], *others: dict[str, Any]) -> None:
    write_graph(graph, graph_doc("switch", files=[app, sentinel_res(managed), *others]))


def test_a_file_switches_between_content_template_source_and_fragments(agent, tmp_path, managed):
    app, src, frag = managed / "app.conf", managed / "src.conf", managed / "frag"
    src.write_bytes(b"from the source\n")
    frag.write_bytes(b"from a fragment\n")
    graph = tmp_path / "graph.yaml"
    one = {"name": "app", "path": str(app)}
    _save(graph, managed, {**one, "content": "plain\n"})
    a = agent(graph)
    a.wait_checked(["File[app]", "File[sentinel]"])
    wait_for(lambda: app.exists() and app.read_bytes() == b"plain\n", what="the content")

    steps: list[tuple[dict[str, Any], bytes]] = [
        ({"template": "t={{ x }}\n", "vars": {"x": "1"}}, b"t=1\n"),
        ({"template": "t={{ x }}\n", "vars": {"x": "2"}}, b"t=2\n"),
        ({"source": str(src)}, b"from the source\n"),
        ({"fragments": [str(src), str(frag)]}, b"from the source\nfrom a fragment\n"),
        ({"content": "plain again\n"}, b"plain again\n"),
    ]
    for params, want in steps:
        since = a.mark()
        _save(graph, managed, {**one, **params})
        a.wait_event(event("graph_swapped"), since=since, what=f"the swap to {params}")
        wait_for(lambda want=want: app.read_bytes() == want, what=f"{want!r} in the file")
        a.barrier(managed / "sentinel")

    # The source and the fragment are no longer the file's: editing them changes nothing.
    since = a.mark()
    write_atomic(src, b"edited source\n")
    write_atomic(frag, b"edited fragment\n")
    a.barrier(managed / "sentinel")
    assert app.read_bytes() == b"plain again\n"
    assert not a.find(checked("File[app]", applied=True), since=since)
    assert not a.find(event("failed"), since=0), a.find(event("failed"))


def test_a_directory_turns_recurse_on_and_off(agent, tmp_path, managed):
    src, dst = managed / "src", managed / "www"
    src.mkdir()
    (src / "index.html").write_bytes(b"hi\n")
    graph = tmp_path / "graph.yaml"
    top = {"name": "www", "path": f"{dst}/"}
    _save(graph, managed, top)
    a = agent(graph)
    a.wait_checked(["File[www]", "File[sentinel]"])
    wait_for(dst.is_dir, what="the directory")

    since = a.mark()
    _save(graph, managed, {**top, "source": f"{src}/", "recurse": True, "purge": True})
    a.wait_event(event("graph_swapped"), since=since, what="recurse on")
    wait_for(lambda: (dst / "index.html").exists(), what="the copy")
    assert (dst / "index.html").read_bytes() == b"hi\n"

    since = a.mark()
    _save(graph, managed, top)
    a.wait_event(event("graph_swapped"), since=since, what="recurse off")
    a.barrier(managed / "sentinel")
    # No longer a copy: the source's edits and the tree's extras are left alone.
    write_atomic(src / "index.html", b"edited\n")
    (dst / "extra").write_bytes(b"mine\n")
    a.barrier(managed / "sentinel")
    assert (dst / "index.html").read_bytes() == b"hi\n" and (dst / "extra").exists()
    assert not a.find(event("failed"), since=0), a.find(event("failed"))
