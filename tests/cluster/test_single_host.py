"""A graph that neither exports nor collects, run with no cluster flag, stays single-host.

No etcd process is started and neither aetcd nor grpc is imported (checked
on the running agent through /proc), exactly as before the etcd World.
"""

from __future__ import annotations

import os

import pytest
from harness import children_of, mapped_files
from helpers import event, graph_doc, write_graph

pytestmark = pytest.mark.slow


def test_a_local_graph_starts_no_etcd_and_imports_no_grpc(cluster, tmp_path):
    host = cluster.host("solo")
    graph = tmp_path / "local.yaml"
    files = [{"name": "f1", "path": str(host.root / "f1"), "content": "local\n"}]
    write_graph(graph, graph_doc("local", files=files))
    agent = cluster.start("solo", graph, local=True)
    agent.wait_event(event("settled"), what="the local graph settled")
    assert (host.root / "f1").read_text() == "local\n"
    kids = children_of(agent.pid)
    names = [os.path.basename(os.readlink(f"/proc/{k}/exe")) for k in kids]
    assert "etcd" not in names, names
    assert not cluster.etcd_processes(host)
    # nor cryptography (TLS only): its native module would show in the maps too
    heavy = ("grpc", "aetcd", "cryptography")
    native = [p for p in mapped_files(agent.pid) if any(h in p for h in heavy)]
    assert not native, native
    assert not (host.prefix / "etcd").exists()
    assert cluster.stop("solo") == 0
    assert not agent.find(event("host_joined"))
