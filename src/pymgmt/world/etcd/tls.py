"""TLS for the cluster: one CA, a certificate per host, for clients and peers alike.

(Interface fixed first; the behaviour lands with issue 10's TLS work.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files one host uses: the cluster's CA, its certificate and key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_pki(cls, directory: Path, hostname: str) -> TlsFiles:
        """The layout `pymgmt pki` writes: ca.crt, <host>.crt and <host>.key in one directory."""
        return cls(
            directory / "ca.crt", directory / f"{hostname}.crt", directory / f"{hostname}.key"
        )


__all__ = ["TlsFiles"]
