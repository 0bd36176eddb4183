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
    assert again.returncode == 0, again.stderr  # nothing notified it: said once, at start
    assert again.stderr.count("conf changed: reloading") == 1, again.stderr
    assert recap_of(again)["resources"]["Msg[said]"]["outcome"] == "unchanged"


def _alone(tmp_path: Path) -> Path:
    graph = tmp_path / "graph.yaml"
    write_graph(graph, {"graph": "hello", "resources": {"msg": [{"name": "hi", "body": "up"}]}})
    return graph


def test_a_message_is_logged_once_at_its_first_check_as_in_mgmt(tmp_path):
    """mgmt's msg logs at its first CheckApply (logStateOK starts false), notified or not."""
    for flags in ((), ("--noop",)):
        done = run_once(_alone(tmp_path), tmp_path / "state", "--json", *flags)
        assert done.returncode == 0, done.stderr  # logging is no change
        said = [line for line in done.stderr.splitlines() if "Msg[hi]" in line]
        assert len(said) == 1 and said[0].endswith(": up") and "INFO" in said[0], done.stderr
        assert recap_of(done)["resources"]["Msg[hi]"]["outcome"] == "unchanged", flags


def test_a_running_agent_says_it_at_start_then_once_per_refresh(tmp_path, agent):
    graph = _graph(tmp_path, "one\n", body="conf changed")
    a = agent(graph, json_mode=False)

    def said(e: dict[str, Any]) -> bool:
        return "Msg[said]" in e.get("line", "") and "conf changed" in e.get("line", "")

    first = a.wait_event(said, what="the message at start")
    (tmp_path / "conf").write_text("tampered\n")  # repaired: the file notifies the msg
    a.wait_event(said, since=first + 1, what="the message of the refresh")
    assert a.stop() == 0
    # the first check was also the first refresh: one line for both, as in mgmt
    assert len(a.find(said)) == 2, a.describe()


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
