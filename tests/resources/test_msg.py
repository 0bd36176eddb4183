"""msg: a log line per refresh notification; never a change; secrets redacted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import recap_of, run_once, write_graph


def _edge(src: tuple[str, str], dst: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "name": f"{src[1]}->{dst[1]}",
        "from": {"kind": src[0], "name": src[1]},
        "to": {"kind": dst[0], "name": dst[1]},
        **extra,
    }


def _graph(tmp_path: Path, content: str, **msg: Any) -> Path:
    conf = str(tmp_path / "conf")
    doc = {
        "graph": "announce",
        "resources": {
            "file": [{"name": conf, "content": content}],
            "msg": [{"name": "said", **msg}],
        },
        "edges": [_edge(("file", conf), ("msg", "said"), notify=True)],
    }
    graph = tmp_path / "graph.yaml"
    write_graph(graph, doc)
    return graph


def test_a_message_is_logged_once_per_refresh_and_is_no_change(tmp_path):
    graph = _graph(tmp_path, "one\n", body="conf changed: reloading", priority="warning")
    first = run_once(graph, tmp_path / "state", "--json")
    assert first.returncode == 2, first.stderr
    said = [line for line in first.stderr.splitlines() if "conf changed: reloading" in line]
    assert len(said) == 1 and "WARNING" in said[0] and "Msg[said]" in said[0], first.stderr
    assert recap_of(first)["resources"]["Msg[said]"]["outcome"] == "unchanged"
    again = run_once(graph, tmp_path / "state", "--json")
    assert again.returncode == 0, again.stderr  # nothing notified it: nothing said
    assert "conf changed" not in again.stderr


def test_a_secret_received_into_the_body_is_redacted(tmp_path):
    graph = _graph(tmp_path, "one\n")
    doc_text = graph.read_text()
    graph.write_text(
        doc_text.replace(
            "resources:\n", "resources:\n  password:\n  - name: pw\n    length: 24\n", 1
        )
        + "- name: pw->said\n  from: {kind: password, name: pw}\n  to: {kind: msg, name: said}\n"
        "  send: password\n  recv: body\n"
    )
    done = run_once(graph, tmp_path / "state", "--json")
    assert done.returncode == 2, done.stderr
    said = [line for line in done.stderr.splitlines() if "Msg[said]" in line]
    assert said, done.stderr
    secret = next((tmp_path / "state").rglob("password")).read_text().strip()
    assert len(secret) == 24
    assert secret not in done.stderr and secret not in done.stdout
