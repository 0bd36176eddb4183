"""The live web view in a real headless Chromium, against a real agent.

A drift made on disk turns the vertex's colour in the browser and back: the
file is replaced by a directory (the repair fails: red), then the directory
goes (repaired: green again). The page's pictures are saved under tmp_path,
and copied to $PYMGMT_ARTEFACTS when it is set.

Chromium and chromedriver are Debian's (`scripts/system/prepare` installs
them); the test skips where they are missing, except under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import graph_doc, wait_for, write_graph
from webutil import send_password

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: the page's colours (app.css): what getComputedStyle reports for a node's fill
COLOURS = {"converged": "rgb(165, 214, 167)", "failed": "rgb(239, 154, 154)"}


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if shutil.which("dot") is None:
        missing.append("dot (graphviz)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if not missing:
        return
    problem = f"the web view test needs {', '.join(missing)} (scripts/system/prepare)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium driven by chromedriver, with a fresh profile; quit after the test."""
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    # Debian's chromedriver, never one selenium-manager would download
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _status(driver: Any, vertex: str) -> tuple[str | None, str | None]:
    """(data-status, computed fill) of the vertex's node in the drawn graph."""
    return tuple(  # type: ignore[return-value]
        driver.execute_script(
            """
            const g = [...document.querySelectorAll("#graph g.node")]
              .find((n) => n.dataset.vertex === arguments[0]);
            if (!g) return [null, null];
            return [g.dataset.status || null, getComputedStyle(g.querySelector("polygon")).fill];
            """,
            vertex,
        )
    )


def _wait_colour(driver: Any, vertex: str, status: str) -> None:
    want = (status, COLOURS[status])
    wait_for(lambda: _status(driver, vertex) == want, what=f"{vertex} drawn {want}")


def _dir_in_place_of(path: Path) -> None:
    """Replace the file at `path` by a directory, however fast the agent writes it back."""
    for _ in range(1000):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        try:
            path.mkdir()
            return
        except FileExistsError:  # the agent repaired it between the two calls
            continue
    raise AssertionError(f"could not put a directory in place of {path}")


def _screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), f"no screenshot {path}"
    assert path.read_bytes().startswith(b"\x89PNG")
    if artefacts := os.environ.get("PYMGMT_ARTEFACTS"):
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artefacts) / name)
    return path


def test_a_drift_turns_the_vertex_colour_and_back(served, browser, tmp_path, managed):
    graph = tmp_path / "g.yaml"
    doc = graph_doc(
        "webview",
        files=[
            {"name": "motd", "path": str(managed / "motd"), "content": "hello\n"},
            {"name": "secret", "path": str(managed / "secret")},
        ],
        edges=[("file:motd", "file:secret")],
    )
    send_password(doc, "secret", 24)
    write_graph(graph, doc)
    _a, base = served(graph)
    browser.get(base)
    _wait_colour(browser, "File[motd]", "converged")
    wait_for(lambda: browser.find_element("id", "connection").text == "live", what="SSE open")

    # the drift: the file becomes a directory, which the repair refuses to replace
    _dir_in_place_of(managed / "motd")
    _wait_colour(browser, "File[motd]", "failed")
    assert browser.find_element("id", "overall").text == "failures"
    _screenshot(browser, tmp_path, "web-view-failed.png")

    # and back: the directory goes, the watch sees it, the file is written again
    (managed / "motd").rmdir()
    _wait_colour(browser, "File[motd]", "converged")
    assert (managed / "motd").read_text() == "hello\n"
    wait_for(lambda: browser.find_element("id", "overall").text == "converged", what="all green")
    steps = browser.execute_script(
        """return [...document.querySelectorAll("#activity li")]
             .filter((li) => li.dataset.vertex === "File[motd]")
             .map((li) => li.dataset.status).reverse();"""
    )
    assert steps[-3:] == ["failed", "applying", "converged"], steps

    # a click shows the vertex: its params, last diff and error; no secret anywhere
    secret = (managed / "secret").read_text()
    assert len(secret) == 24
    browser.execute_script(
        """[...document.querySelectorAll("#graph g.node")]
             .find((n) => n.dataset.vertex === "File[secret]")
             .dispatchEvent(new MouseEvent("click", {bubbles: true}));"""
    )
    wait_for(
        lambda: browser.find_element("id", "d-name").text == "File[secret]", what="the details"
    )
    wait_for(lambda: "<redacted>" in browser.find_element("id", "d-diff").text, what="the diff")
    assert f"{managed}/secret" in browser.find_element("id", "d-params").text
    _screenshot(browser, tmp_path, "web-view.png")
    assert secret not in browser.page_source
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
