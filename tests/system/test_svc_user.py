"""svc with ``session: true``: a user's systemd manager (user@0 in the container)."""

from __future__ import annotations

import uuid

import pytest
from helpers import run_once

pytestmark = [pytest.mark.slow, pytest.mark.system]

XDG = "XDG_RUNTIME_DIR=/run/user/0"


def test_a_user_unit_is_started_through_the_session_bus(
    tmp_path, nspawn_systemd, user_manager, monkeypatch
):
    c = nspawn_systemd
    name = f"pymgmt-user-{uuid.uuid4().hex[:8]}"
    units = c.root / "root/.config/systemd/user"
    units.mkdir(parents=True, exist_ok=True)
    (units / f"{name}.service").write_text("[Service]\nExecStart=/bin/sleep infinity\n")
    c.run("env", XDG, "systemctl", "--user", "daemon-reload")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", user_manager)
    g = tmp_path / "g.yaml"
    g.write_text(
        f"graph: user\nresources:\n  svc:\n  - name: {name}\n    state: running\n"
        "    session: true\n"
    )
    proc = run_once(g, tmp_path / "p")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = c.run("env", XDG, "systemctl", "--user", "is-active", f"{name}.service", check=False)
    assert out.stdout.strip() == "active"
    c.run("env", XDG, "systemctl", "--user", "stop", f"{name}.service", check=False)
