"""TLS for the cluster: one CA, a certificate per host, for clients and peers alike.

The trust model is the CA: every certificate it signed is a host of the
cluster, allowed to serve etcd, to join it as a peer, and to read and write
its data. `pymgmt pki` (cli/pki.py) makes the CA and the host certificates.

What is verified, and by whom:

* etcd (client and peer ports) requires a client certificate signed by the
  CA (``--client-cert-auth``, ``--peer-client-cert-auth``): a host without
  one cannot even finish the handshake, so it can neither read nor write.
* The agent's client verifies the server's certificate against the CA and
  against one fixed name, `CLUSTER_NAME`, that every host certificate
  carries. One gRPC channel verifies one name for all its endpoints (the
  channel fails over between members by itself, and the endpoints follow
  the membership), so clients verify the cluster's name rather than each
  member's address, also with a single endpoint: one rule, whatever the
  endpoints are. The addresses are still in each certificate (``--ip``):
  etcd's peers dial each other by URL and verify the address.
* At start-up `TlsFiles.load` checks the three files (exist, parse, the key
  matches the certificate, the certificate is signed by the CA, is valid
  now, is usable as server and client, carries `CLUSTER_NAME`); each error
  names the file. A server that presents a certificate the CA did not sign,
  or that refuses ours, is diagnosed by `diagnose` with a real handshake,
  instead of gRPC's bare "unavailable".

Nothing here reads a key into any output: messages name key files, never
their content. `cryptography` and `ssl` are imported only when TLS is used.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..base import WorldError

if TYPE_CHECKING:
    import ssl

log = logging.getLogger("pymgmt.cluster")

T = TypeVar("T")

#: the DNS name every host certificate carries and every client verifies
CLUSTER_NAME = "pymgmt-cluster"


class TlsError(WorldError):
    """A TLS file is missing, unreadable or wrong, or a handshake showed a mismatch."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        #: the file at fault, if one is
        self.path = path


@dataclass(frozen=True)
class TlsMaterial:
    """The three files' bytes, as read and checked together by `TlsFiles.load`."""

    ca: bytes
    cert: bytes
    #: the private key: never in a repr (reprs end up in logs and tracebacks)
    key: bytes = field(repr=False)


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

    def load(self, now: datetime.datetime | None = None) -> TlsMaterial:
        """Read and check the three files; raise `TlsError` naming the file at fault."""
        return _load(self, now or datetime.datetime.now(datetime.UTC))

    def etcd_args(self) -> list[str]:
        """etcd's flags: serve clients and peers with this certificate, demand theirs."""
        ca, cert, key = str(self.ca), str(self.cert), str(self.key)
        return [
            "--cert-file", cert, "--key-file", key,
            "--trusted-ca-file", ca, "--client-cert-auth",
            "--peer-cert-file", cert, "--peer-key-file", key,
            "--peer-trusted-ca-file", ca, "--peer-client-cert-auth",
        ]  # fmt: skip

    def ssl_context(self) -> ssl.SSLContext:
        """A client context (health probes): verify the server against the CA and
        `CLUSTER_NAME` (pass it as ``server_hostname``), present our certificate."""
        import ssl

        try:
            context = ssl.create_default_context(cafile=str(self.ca))
            context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as e:
            raise TlsError(f"cannot use the TLS files {self._names()}: {e}") from None
        return context

    def grpc_credentials(self, material: TlsMaterial | None = None) -> Any:
        """gRPC channel credentials: the CA to trust, our certificate and key."""
        import grpc

        m = material or self.load()
        return grpc.ssl_channel_credentials(
            root_certificates=m.ca, private_key=m.key, certificate_chain=m.cert
        )

    def _names(self) -> str:
        return f"{self.ca}, {self.cert}, {self.key}"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"{what} {path} does not exist", path) from None
    except OSError as e:
        raise TlsError(f"cannot read {what} {path}: {e.strerror}", path) from None


def _parse(loader: Callable[[bytes], T], pem: bytes, path: Path, what: str) -> T:
    try:
        return loader(pem)
    except ValueError:
        raise TlsError(f"{what} {path} is not a PEM certificate", path) from None


def _load(files: TlsFiles, now: datetime.datetime) -> TlsMaterial:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_pem = _read(files.ca, "the CA certificate")
    cert_pem = _read(files.cert, "the certificate")
    key_pem = _read(files.key, "the private key")

    cas = _parse(x509.load_pem_x509_certificates, ca_pem, files.ca, "the CA certificate")
    cert = _parse(x509.load_pem_x509_certificate, cert_pem, files.cert, "the certificate")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsError(
            f"the private key {files.key} is encrypted: etcd needs it unencrypted "
            "(keep it mode 0600 instead)",
            files.key,
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError(f"the private key {files.key} is not a PEM private key", files.key) from None

    for ca in cas:
        _check_dates(ca, files.ca, "the CA certificate", now)
    _check_dates(cert, files.cert, "the certificate", now)

    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, pub) != cert.public_key().public_bytes(der, pub):
        raise TlsError(
            f"the private key {files.key} does not belong to the certificate {files.cert}",
            files.key,
        )

    def signed_by(ca: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    if not any(signed_by(ca) for ca in cas):
        raise TlsError(
            f"the certificate {files.cert} is not signed by the CA {files.ca} "
            f"(issuer {cert.issuer.rfc4514_string()!r}); make it with 'pymgmt pki host' "
            "from that CA",
            files.cert,
        )

    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if CLUSTER_NAME not in dns:
        raise TlsError(
            f"the certificate {files.cert} lacks the name {CLUSTER_NAME!r} (DNS subject "
            "alternative name) that pymgmt's clients verify; make it with 'pymgmt pki host'",
            files.cert,
        )
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None  # no restriction: any use
    if usages is not None:
        for oid, role in (
            (ExtendedKeyUsageOID.SERVER_AUTH, "server"),
            (ExtendedKeyUsageOID.CLIENT_AUTH, "client"),
        ):
            if oid not in usages:
                raise TlsError(
                    f"the certificate {files.cert} cannot be used as a TLS {role} "
                    "(extended key usage); a host's certificate serves both roles",
                    files.cert,
                )
    return TlsMaterial(ca_pem, cert_pem, key_pem)


def _check_dates(cert: Any, path: Path, what: str, now: datetime.datetime) -> None:
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < before:
        raise TlsError(f"{what} {path} is not valid yet (from {before:%Y-%m-%d %H:%M} UTC)", path)
    if now > after:
        raise TlsError(f"{what} {path} expired on {after:%Y-%m-%d %H:%M} UTC", path)


# -- diagnosing a failed connection ---------------------------------------------------------


async def diagnose(
    host: str, port: int, files: TlsFiles | None, *, timeout: float = 2.0
) -> TlsError | None:
    """Why a TLS (or plain) client cannot talk to the server at host:port, if TLS is why.

    One real handshake, then one HTTP request (TLS 1.3 servers refuse a
    client certificate only after the client's handshake has finished).
    Returns None when the handshake shows nothing wrong, or when the server
    cannot be reached at all (that is not TLS's doing: the caller retries).
    With `files` None, the question is whether the server demands TLS.
    """
    import asyncio
    import contextlib
    import ssl

    where = f"{host}:{port}"
    if files is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = files.ssl_context()
    answered = bytearray()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=CLUSTER_NAME
            )
            try:
                writer.write(b"GET /health HTTP/1.0\r\n\r\n")
                await writer.drain()
                while chunk := await reader.read(4096):
                    answered += chunk
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except ssl.SSLCertVerificationError as e:
        assert files is not None
        return TlsError(
            f"the etcd server at {where} presented a certificate not signed by the CA "
            f"{files.ca} ({e.verify_message}): is it another cluster's?",
            files.ca,
        )
    except ssl.SSLError as e:
        reason = e.reason or str(e)
        plain = "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason
        if answered or (files is None and plain):
            return None  # it answered, or a plain client met a plain server: not TLS's doing
        if files is None:
            return _needs_tls(where)
        if plain:
            return _no_tls(where)
        return TlsError(
            f"the etcd server at {where} refused this host's certificate {files.cert} "
            f"({reason}): does it trust another CA than {files.ca}?",
            files.cert,
        )
    except (OSError, TimeoutError):
        # etcd's plain port drops a TLS hello (or the host is unreachable): plain HTTP?
        if files is not None and not answered and await _speaks_http(host, port, timeout):
            return _no_tls(where)
        return None
    if files is None:
        return _needs_tls(where)
    return None


async def health(
    host: str, port: int, context: ssl.SSLContext | None = None, *, timeout: float = 1.0
) -> bytes:
    """One ``GET /health`` (over TLS with `context`, verifying `CLUSTER_NAME`): the
    whole answer. Raises OSError (ssl.SSLError among them) or TimeoutError."""
    import asyncio
    import contextlib

    name = CLUSTER_NAME if context is not None else None
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=name
        )
        try:
            writer.write(f"GET /health HTTP/1.0\r\nHost: {where}\r\n\r\n".encode())
            await writer.drain()
            return await reader.read()  # HTTP/1.0: the server closes after the body
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _speaks_http(host: str, port: int, timeout: float) -> bool:
    try:
        return (await health(host, port, timeout=timeout)).startswith(b"HTTP/")
    except (OSError, TimeoutError):
        return False


def _no_tls(where: str) -> TlsError:
    return TlsError(
        f"the etcd server at {where} does not speak TLS (a plain-text cluster?): "
        "run this agent without --pki/--tls-*, or turn TLS on for the whole cluster"
    )


def _needs_tls(where: str) -> TlsError:
    return TlsError(
        f"the etcd server at {where} requires TLS with a client certificate: run with "
        "--pki DIR (or --tls-ca, --tls-cert and --tls-key); see 'pymgmt pki'"
    )


_warned_plain = False


def warn_plain_text() -> None:
    """Say once per process (one agent run) that the cluster's traffic is not protected."""
    global _warned_plain
    if _warned_plain:
        return
    _warned_plain = True
    log.warning(
        "cluster traffic is plain text: anyone who can reach the etcd ports can read and "
        "change the cluster's data, unauthenticated. To turn TLS on, make certificates with "
        "'pymgmt pki init DIR' and 'pymgmt pki host DIR HOSTNAME --ip IP', then run every "
        "agent with --pki DIR"
    )


def plain_text_is_tunnelled() -> None:
    """This process reaches etcd through an SSH tunnel (``--remote``): its traffic is
    SSH's, encrypted and authenticated, so `warn_plain_text` says nothing."""
    global _warned_plain
    _warned_plain = True


__all__ = [
    "CLUSTER_NAME",
    "TlsError",
    "TlsFiles",
    "TlsMaterial",
    "diagnose",
    "plain_text_is_tunnelled",
    "warn_plain_text",
]
