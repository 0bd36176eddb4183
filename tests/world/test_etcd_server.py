"""EtcdServer: the agent's own etcd member, a supervised child (real etcd)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from etcdutil import (
    EtcdProcess,
    etcd_processes,
    eventually,
    fast_config,
    healthy,
    parent_of,
    serving,
    world_on,
)
from helpers import pid_alive, run_async, wait_for

from pymgmt import service
from pymgmt.world.base import WorldError
from pymgmt.world.etcd.server import (
    BINARY_ENV,
    EtcdCrashed,
    EtcdPortBusy,
    EtcdServer,
    EtcdStartError,
)


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie (dead, reaped later)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_starts_healthy_and_stops_cleanly(tmp_path: Path) -> None:
    config = fast_config(tmp_path)

    async def main() -> int:
        async with serving(config) as server:
            assert server.pid is not None
            urls = server.client_urls
            assert urls == list(config.listen_client_urls)
            assert await asyncio.to_thread(healthy, urls[0])
            return int(server.pid)

    pid = run_async(main())
    assert not pid_alive(pid)  # reaped, not a zombie
    assert stat.S_IMODE(config.data_dir.stat().st_mode) == 0o700
    assert "starting" in config.log_path.read_text()


def test_busy_client_port_is_named_and_the_first_keeps_running(tmp_path: Path) -> None:
    first = fast_config(tmp_path, "n1")
    port = first.listen_client_urls[0].rsplit(":", 1)[1]
    second = fast_config(tmp_path, "n2", client_port=int(port))

    async def main() -> None:
        async with serving(first) as server:
            with pytest.raises(EtcdPortBusy) as err:
                async with serving(second):
                    pass
            assert f"127.0.0.1:{port}" in str(err.value)
            assert "in use" in str(err.value)
            assert isinstance(err.value, WorldError)
            assert server.pid is not None and server.restarts == 0
            assert await asyncio.to_thread(healthy, server.client_urls[0])

    run_async(main())
    assert not (tmp_path / "etcd-n2").exists() or not any((tmp_path / "etcd-n2").iterdir())


def test_busy_peer_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = fast_config(tmp_path, peer_port=port)

        async def main() -> None:
            with pytest.raises(EtcdPortBusy, match=f"127.0.0.1:{port}: the port is in use"):
                async with serving(config):
                    pass

        run_async(main())


def test_a_killed_etcd_is_restarted_and_the_world_works_again(tmp_path: Path) -> None:
    config = fast_config(tmp_path)

    async def main() -> None:
        async with serving(config) as server, world_on(server.client_urls, "h1") as world:
            await world.put("/t/before", b"1")
            old = server.pid
            assert old is not None
            os.kill(old, signal.SIGKILL)
            await eventually(lambda: server.restarts == 1 and server.pid not in (None, old), "")
            await world.put("/t/after", b"2")  # retried until the member is back
            kvs, _ = await world.get_prefix("/t/")
            assert [(kv.key, kv.value) for kv in kvs] == [("/t/after", b"2"), ("/t/before", b"1")]

    run_async(main())


def test_etcd_that_keeps_dying_makes_the_supervisor_give_up(tmp_path: Path) -> None:
    config = fast_config(tmp_path, max_quick_failures=2)

    async def main() -> None:
        server = EtcdServer(config)
        with pytest.raises(ExceptionGroup) as err:
            async with asyncio.TaskGroup() as tg:
                await service.start(tg, server.run, name="etcd")
                first = server.pid
                assert first is not None
                os.kill(first, signal.SIGKILL)
                await eventually(lambda: server.pid not in (None, first), "a restart")
                second = server.pid
                assert second is not None
                os.kill(second, signal.SIGKILL)
                await asyncio.Event().wait()  # until the supervisor gives up
        [crash] = err.value.exceptions
        assert isinstance(crash, EtcdCrashed), crash
        assert "giving up" in str(crash)

    run_async(main())


AGENT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from pymgmt import service
    from pymgmt.world.etcd.server import EtcdConfig, EtcdServer

    async def main():
        cfg = EtcdConfig(
            "n1", Path(sys.argv[1]), (sys.argv[2],), (sys.argv[3],),
            heartbeat_ms=10, election_ms=100,
        )
        server = EtcdServer(cfg)
        async with asyncio.TaskGroup() as tg:
            await service.start(tg, server.run, name="etcd")
            print(server.pid, flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def test_kill_9_of_the_agent_takes_its_etcd_down(tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    agent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            AGENT,
            str(config.data_dir),
            config.listen_client_urls[0],
            config.listen_peer_urls[0],
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        etcd_pid = int(agent.stdout.readline())
        assert healthy(config.listen_client_urls[0])
        agent.kill()
        agent.wait()
        wait_for(lambda: gone(etcd_pid), what="the orphaned etcd to exit (PDEATHSIG)")
    finally:
        agent.kill()
        agent.wait()
        if agent.stdout:
            agent.stdout.close()


def test_two_servers_racing_for_one_port_one_serves_one_is_refused(tmp_path: Path) -> None:
    """Both pass the bind pre-check at once: etcd's own "address in use" is caught."""
    first = fast_config(tmp_path, "n1")
    port = int(first.listen_client_urls[0].rsplit(":", 1)[1])
    second = fast_config(tmp_path, "n2", client_port=port)

    async def main() -> None:
        servers = [EtcdServer(first), EtcdServer(second)]
        async with asyncio.TaskGroup() as tg:
            results = await asyncio.gather(
                *(service.start(tg, s.run, name=s.config.name) for s in servers),
                return_exceptions=True,
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            assert len(errors) == 1, results
            assert isinstance(errors[0], EtcdPortBusy), errors[0]
            assert f"127.0.0.1:{port}" in str(errors[0])
            [winner] = [s for s, r in zip(servers, results, strict=True) if r is not errors[0]]
            assert await asyncio.to_thread(healthy, winner.client_urls[0])
            tg.create_task(_cancel(tg))

    run_async(main())


async def _cancel(tg: asyncio.TaskGroup) -> None:
    """End a task group from inside: cancel its other tasks."""
    me = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not me and task.get_name() in ("n1", "n2"):
            task.cancel()


def test_etcd_exiting_while_starting_reports_its_own_words(tmp_path: Path) -> None:
    config = fast_config(tmp_path, extra_args=("--no-such-flag",))

    async def main() -> None:
        said = r"(?s)exited with code 2 while starting:.*flag provided but not defined"
        with pytest.raises(EtcdStartError, match=said):
            async with serving(config):
                pass

    run_async(main())


def test_the_binary_can_be_overridden_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "no-etcd-here"))

    async def main() -> None:
        with pytest.raises(WorldError, match="no-etcd-here is missing or not executable"):
            async with serving(fast_config(tmp_path)):
                pass

    run_async(main())


def test_the_leak_check_sees_a_running_etcd(etcd_node: EtcdProcess, tmp_path: Path) -> None:
    """What `no_etcd_leaks` relies on: etcd found by name, its data dir in its argv."""
    found = etcd_processes()
    assert etcd_node.pid in found
    assert f"--data-dir {tmp_path}/" in found[etcd_node.pid]
    assert parent_of(etcd_node.pid) == os.getpid()
