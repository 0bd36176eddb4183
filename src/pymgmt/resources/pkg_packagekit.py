"""The PackageKit backend of the pkg resource, over PackageKit's D-Bus API.

Every operation is one PackageKit transaction: CreateTransaction, then a
call (Resolve, InstallPackages, RemovePackages) whose results arrive as
Package signals and whose end is the Finished signal; an ErrorCode signal
turns into a ResourceError carrying PackageKit's own message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..errors import ResourceError
from ..events.dbus import DBusHub, system_bus_address

_PK = "org.freedesktop.PackageKit"
_PK_PATH = "/org/freedesktop/PackageKit"
_TX = "org.freedesktop.PackageKit.Transaction"

# PackageKit enums (bitfields are 1 << enum value)
_FILTER_NONE = 1 << 1
_FILTER_INSTALLED = 1 << 2
_FILTER_NOT_INSTALLED = 1 << 3
_FILTER_NEWEST = 1 << 16
_FLAG_ONLY_TRUSTED = 1 << 1
_INFO_INSTALLED = 1
_EXIT_SUCCESS = 1
#: seconds a whole transaction may take (a download and install, not a reply)
_TX_DEADLINE = 600


class PackageKitBackend:
    name = "packagekit"

    def __init__(self, dbus: DBusHub) -> None:
        self.dbus = dbus

    async def _transaction(
        self, member: str, signature: str, body: list[Any]
    ) -> list[tuple[int, str]]:
        """Run one transaction; return its (info, package_id) Package signals."""
        addr = system_bus_address()
        (path,) = await self.dbus.call(addr, _PK, _PK_PATH, _PK, "CreateTransaction")
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[int] = loop.create_future()
        packages: list[tuple[int, str]] = []
        errors: list[str] = []

        def on_package(msg: Any) -> None:
            if msg.path == path:
                packages.append((int(msg.body[0]), str(msg.body[1])))

        def on_error(msg: Any) -> None:
            if msg.path == path:
                errors.append(str(msg.body[1]))

        def on_finished(msg: Any) -> None:
            if msg.path == path and not finished.done():
                finished.set_result(int(msg.body[0]))

        unsubs = [
            await self.dbus.subscribe(addr, path="", interface=_TX, member=m, handler=h)
            for m, h in (
                ("Package", on_package),
                ("ErrorCode", on_error),
                ("Finished", on_finished),
            )
        ]
        lost = asyncio.ensure_future(self.dbus.wait_lost(addr))
        try:
            await self.dbus.call(addr, _PK, str(path), _TX, member, signature, body)
            # The end is a signal, not a reply: a bus that goes away meanwhile
            # must end the wait at once, not after the deadline (issue 8 item
            # 17: a run sat 600 s in silence after the bus went away).
            ends: set[asyncio.Future[Any]] = {finished, lost}
            await asyncio.wait(ends, timeout=_TX_DEADLINE, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            for u in unsubs:
                u()
        if not finished.done():
            finished.cancel()
            if lost.done() and not lost.cancelled():
                raise ResourceError(f"lost the system bus during PackageKit {member}")
            raise ResourceError(f"PackageKit {member} did not finish within {_TX_DEADLINE} s")
        code = finished.result()
        if errors or code != _EXIT_SUCCESS:
            raise ResourceError(
                f"PackageKit {member} failed: {'; '.join(errors) or f'exit {code}'}"
            )
        return packages

    async def _resolve(self, names: Sequence[str], filters: int) -> list[tuple[int, str]]:
        return await self._transaction("Resolve", "tas", [filters, list(names)])

    async def installed(self, names: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = dict.fromkeys(names)
        for info, pid in await self._resolve(names, _FILTER_INSTALLED):
            name, version = pid.split(";")[:2]
            if info == _INFO_INSTALLED and name in found:
                found[name] = version
        return found

    async def candidates(self, names: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = dict.fromkeys(names)
        for _info, pid in await self._resolve(names, _FILTER_NEWEST):
            name, version = pid.split(";")[:2]
            if name in found:
                found[name] = version
        return found

    async def install(self, specs: Sequence[str]) -> None:
        wanted: dict[str, str] = {}
        for spec in specs:
            name, _, version = spec.partition("=")
            wanted[name] = version
        ids: dict[str, str] = {}
        filters = _FILTER_NONE if any(wanted.values()) else _FILTER_NOT_INSTALLED | _FILTER_NEWEST
        for _info, pid in await self._resolve(list(wanted), filters):
            name, version = pid.split(";")[:2]
            if name in wanted and (not wanted[name] or wanted[name] == version):
                ids.setdefault(name, pid)
        missing = sorted(set(wanted) - set(ids))
        if missing:
            raise ResourceError(f"PackageKit cannot find {', '.join(missing)}")
        await self._transaction("InstallPackages", "tas", [_FLAG_ONLY_TRUSTED, list(ids.values())])

    async def remove(self, names: Sequence[str]) -> None:
        ids = [
            pid
            for info, pid in await self._resolve(names, _FILTER_INSTALLED)
            if info == _INFO_INSTALLED
        ]
        if ids:
            await self._transaction(
                "RemovePackages", "tasbb", [_FLAG_ONLY_TRUSTED, ids, False, False]
            )
