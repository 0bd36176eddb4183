"""A package's state as apt's backend judges it, with nothing but `os` (issue 13).

`Pkg.check` (on the engine's event loop) and the one-shot fast path
(`pymgmt.oneshot`, before asyncio is imported) ask the same question, in
the same words: one ``dpkg-query -W`` for every package (`installed_argv`,
read by `parse_installed`), then `changes`, the rule that says which
packages differ from their wanted state. Keeping these here, once, means
the fast path can only call "unchanged" what `Pkg.check` calls unchanged.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

DPKG_STATUS = "/var/lib/dpkg/status"
_INSTALLED_FORMAT = "${Package}\t${db:Status-Abbrev}\t${Version}\n"
#: dpkg-query's exit statuses that answer: 1 only means some names are unknown to dpkg
QUERY_OK = (0, 1)


def dpkg_stamp() -> tuple[int, ...]:
    """Identifies one state of the dpkg database.

    dpkg replaces its status file by a rename after every change, so a new
    inode (or mtime or size) means packages were installed or removed.
    """
    try:
        st = os.stat(DPKG_STATUS)
    except OSError:
        return ()
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def uses_apt(backend: str) -> bool:
    """Whether a package of `backend` (auto, apt, packagekit) goes through apt here:
    ``auto`` does where ``apt-get`` is on the PATH."""
    from .spawn import which

    if backend == "auto":
        return which("apt-get", os.environ.get("PATH") or os.defpath) is not None
    return backend == "apt"


def apt_env() -> dict[str, str]:
    """The environment of every apt and dpkg process the agent starts."""
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}


def installed_argv(names: Sequence[str]) -> list[str]:
    """The one query of the installed version of every package in `names`."""
    return ["dpkg-query", "-W", "-f", _INSTALLED_FORMAT, *names]


def parse_installed(out: str, names: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each of `names` (None when not installed) from the query's output."""
    found: dict[str, str | None] = dict.fromkeys(names)
    for line in out.splitlines():
        pkg, status, version = [*line.split("\t"), "", ""][:3]
        if status.startswith("ii") and pkg in found:
            found[pkg] = version
    return found


def changes(
    wanted: Sequence[tuple[str, str]],
    have: Mapping[str, str | None],
    candidates: Mapping[str, str | None],
) -> list[tuple[str, str, str]]:
    """(package, from, to) of each package of `wanted` ((name, state)) not in its state.

    `have`: installed versions; `candidates`: what an install would get now,
    for the packages wanted ``newest``. LookupError: a ``newest`` package
    that is neither installed nor known (``Pkg.check`` says so).
    """
    out: list[tuple[str, str, str]] = []
    for name, state in wanted:
        cur = have.get(name)
        if state == "uninstalled":
            if cur is not None:
                out.append((name, cur, "uninstalled"))
        elif state == "installed":
            if cur is None:
                out.append((name, "uninstalled", "installed"))
        elif state == "newest":
            want = candidates.get(name)
            if want is None and cur is None:
                raise LookupError(name)
            if want is not None and cur != want:
                out.append((name, cur or "uninstalled", want))
        elif cur != state:
            out.append((name, cur or "uninstalled", state))
    return out
