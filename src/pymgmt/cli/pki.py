"""``pymgmt pki``: a CA and host certificates for a TLS cluster, without openssl recipes.

    pymgmt pki init DIR                      DIR/ca.crt, DIR/ca.key
    pymgmt pki host DIR NAME [--ip IP]... [--dns NAME]...
                                             DIR/NAME.crt, DIR/NAME.key

Keys are ECDSA P-256: Go's crypto/tls (etcd 3.5), gRPC's BoringSSL and
Python's OpenSSL all accept it, for TLS 1.2 and 1.3 alike. A key file is
mode 0600 from its first byte and every file is written atomically
(temporary file, fsync, rename: a crash leaves the old file or the new,
never half a key); an existing file is never overwritten without --force,
not even one another run made a moment ago (the file is linked into place,
which fails where a file is). The CA's files are read without following a
symlink: a link planted at DIR/ca.key must not make pymgmt sign with
whatever key it points to.

The CA is valid for 10 years; a host certificate for 3 (``--days``). A host
certificate is usable as a TLS server and client (etcd's members are
both), and names NAME, every ``--ip`` and ``--dns``, and the cluster-wide
name `CLUSTER_NAME` that pymgmt's clients verify (world/etcd/tls.py says
why). `cryptography` is imported here only, so no other command pays for it.
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import os
import re
import secrets
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..report.exitcodes import EXIT_INPUT
from ..world.base import valid_hostname
from ..world.etcd.tls import CLUSTER_NAME

if TYPE_CHECKING:
    import argparse

#: validity of the CA and (default) of a host certificate, in days
CA_DAYS = 3652
HOST_DAYS = 1096
#: a certificate's start is backdated this much, for hosts whose clocks lag a little
_SKEW = datetime.timedelta(hours=1)
_DNS_RE = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


class PkiError(Exception):
    """A usage or file problem: printed, exit 1."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The `pki` subparser (cli/main.py calls this with its subparsers)."""
    pki: argparse.ArgumentParser = sub.add_parser(
        "pki",
        help="make a CA and host certificates for a TLS cluster",
        description="Make the files of a TLS cluster: 'init' makes the CA (ca.crt, ca.key), "
        "'host' a certificate and key for one host, signed by that CA. Run every agent "
        "with --pki DIR (the directory holding ca.crt, HOSTNAME.crt and HOSTNAME.key). "
        "Keys are written mode 0600; existing files are kept unless --force.",
    )
    what = pki.add_subparsers(dest="pki_command", metavar="ACTION")
    init = what.add_parser("init", help="make a new CA in DIR (ca.crt, ca.key)")
    init.add_argument("dir", metavar="DIR", help="the directory (made if missing, mode 0700)")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    host = what.add_parser(
        "host",
        help="make NAME.crt and NAME.key in DIR, signed by DIR's CA",
        description=f"Make DIR/NAME.crt and DIR/NAME.key, signed by DIR/ca.crt. The "
        f"certificate names NAME, each --ip and --dns, and {CLUSTER_NAME!r} (the name "
        "pymgmt's clients verify); give every address the host serves etcd on and "
        "connects from: etcd's peers check them.",
    )
    host.add_argument("dir", metavar="DIR", help="the directory holding the CA")
    host.add_argument("name", metavar="NAME", help="the host's name (its --hostname)")
    host.add_argument(
        "--ip", action="append", default=[], metavar="IP", help="an IP address of the host"
    )
    host.add_argument(
        "--dns", action="append", default=[], metavar="NAME", help="another DNS name of the host"
    )
    host.add_argument(
        "--days",
        type=int,
        default=HOST_DAYS,
        metavar="N",
        help=f"validity in days (default {HOST_DAYS}, 3 years)",
    )
    host.add_argument("--force", action="store_true", help="replace an existing certificate")
    pki.set_defaults(pki_parser=pki)
    return pki


def pki_command(args: argparse.Namespace) -> int:
    """Run `pymgmt pki ...`; 0 on success, 1 (with a message) on any problem."""
    if args.pki_command is None:
        args.pki_parser.error(
            "an action is required: pymgmt pki init DIR, or pymgmt pki host DIR NAME"
        )
    try:
        if args.pki_command == "init":
            written = init_ca(Path(args.dir), force=args.force)
        else:
            written = issue_host(
                Path(args.dir),
                args.name,
                ips=args.ip,
                dns=args.dns,
                days=args.days,
                force=args.force,
            )
    except PkiError as e:
        print(f"pymgmt pki: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    for line in written:
        print(line)
    return 0


# -- the work ----------------------------------------------------------------------------------


def init_ca(directory: Path, *, force: bool = False) -> list[str]:
    """Make DIR/ca.key and DIR/ca.crt; what was written, one line each."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    crt, key_path = directory / "ca.crt", directory / "ca.key"
    _make_dir(directory)
    _refuse_existing([crt, key_path], force, "a CA")
    key = ec.generate_private_key(ec.SECP256R1())
    # a name of its own: "not signed by the CA" messages then tell two CAs apart
    label = f"pymgmt cluster CA {secrets.token_hex(4)}"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage("key_cert_sign", "crl_sign"),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600, force, "a CA")
    _write(crt, _cert_pem(cert), 0o644, force, "a CA")
    return [
        f"wrote {key_path} (the CA's private key, mode 0600: keep it secret, off the hosts)",
        f"wrote {crt} (the CA certificate, valid until {cert.not_valid_after_utc:%Y-%m-%d})",
    ]


def issue_host(
    directory: Path,
    name: str,
    *,
    ips: list[str] = [],  # noqa: B006 (never mutated)
    dns: list[str] = [],  # noqa: B006
    days: int = HOST_DAYS,
    force: bool = False,
) -> list[str]:
    """Make DIR/NAME.key and DIR/NAME.crt signed by DIR's CA; what was written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not valid_hostname(name):
        raise PkiError(f"{name!r} cannot name a host (letters, digits, '-', '_' and '.')")
    if name == "ca":
        raise PkiError("'ca' cannot name a host: DIR/ca.crt and DIR/ca.key are the CA's own files")
    addresses = []
    for text in ips:
        try:
            addresses.append(ipaddress.ip_address(text))
        except ValueError:
            raise PkiError(f"--ip {text!r}: not an IP address") from None
    for text in dns:
        if not _DNS_RE.fullmatch(text):
            raise PkiError(f"--dns {text!r}: not a DNS name")
    if not 1 <= days <= CA_DAYS:
        raise PkiError(f"--days {days}: expected 1 to {CA_DAYS}")
    ca_crt, ca_key_path = directory / "ca.crt", directory / "ca.key"
    crt, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    ca_pem, ca_key_pem = _read(ca_crt), _read(ca_key_path)
    if ca_pem is None or ca_key_pem is None:
        raise PkiError(f"no CA in {directory} (ca.crt and ca.key): make it with 'pymgmt pki init'")
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as e:
        raise PkiError(f"cannot read the CA certificate {ca_crt}: {_why(e)}") from None
    try:
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise PkiError(f"cannot read the CA's private key {ca_key_path}: {_why(e)}") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"the CA's private key {ca_key_path} is not an ECDSA key")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if ca_key.public_key().public_bytes(*spki) != ca.public_key().public_bytes(*spki):
        raise PkiError(
            f"the private key {ca_key_path} does not belong to the CA certificate {ca_crt}"
        )
    now = datetime.datetime.now(datetime.UTC)
    if now >= ca.not_valid_after_utc:
        raise PkiError(f"the CA certificate {ca_crt} expired on {ca.not_valid_after_utc:%Y-%m-%d}")
    if now < ca.not_valid_before_utc:
        raise PkiError(
            f"the CA certificate {ca_crt} is not valid yet (from "
            f"{ca.not_valid_before_utc:%Y-%m-%d %H:%M} UTC): is this host's clock right?"
        )
    _refuse_existing([crt, key_path], force, f"a certificate for {name}")

    until = min(now + datetime.timedelta(days=days), ca.not_valid_after_utc)
    key = ec.generate_private_key(ec.SECP256R1())
    dns_names = list(dict.fromkeys([name, CLUSTER_NAME, *dns]))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(a) for a in dict.fromkeys(addresses)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage("digital_signature"),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600, force, f"a certificate for {name}")
    _write(crt, _cert_pem(cert), 0o644, force, f"a certificate for {name}")
    names = [f"DNS:{d}" for d in dns_names] + [f"IP:{a}" for a in dict.fromkeys(addresses)]
    return [
        f"wrote {key_path} ({name}'s private key, mode 0600)",
        f"wrote {crt} (valid until {cert.not_valid_after_utc:%Y-%m-%d}; names {', '.join(names)})",
    ]


def _key_usage(*allowed: str) -> Any:
    """The KeyUsage extension with only the `allowed` bits set."""
    from cryptography import x509

    bits = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return x509.KeyUsage(**{bit: bit in allowed for bit in bits})


# -- files -------------------------------------------------------------------------------------


def _why(e: Exception) -> str:
    if isinstance(e, TypeError):
        return "it is encrypted"
    return "not PEM"


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise PkiError(f"cannot make the directory {directory}: {e.strerror}") from None
    if not directory.is_dir():
        raise PkiError(f"{directory} is not a directory")


def _refuse_existing(paths: list[Path], force: bool, what: str) -> None:
    if force:
        return
    if present := [str(p) for p in paths if os.path.lexists(p)]:
        _exists(present, what)


def _exists(present: list[str], what: str) -> NoReturn:
    raise PkiError(
        f"{' and '.join(present)} already exist{'s' if len(present) == 1 else ''}: "
        f"not replacing {what} (--force replaces it)"
    )


def _read(path: Path) -> bytes | None:
    """A CA file's bytes (None if absent), never through a symlink at `path`."""
    from ..fsutil import UnsafePathError, open_node, opened_dir

    try:
        with opened_dir(str(path.absolute().parent)) as dfd:
            fd = open_node(dfd, path.name)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PkiError(f"{path} is a symbolic link: not following it") from None
        raise PkiError(f"cannot read {path}: {e.strerror or e}") from None
    except UnsafePathError as e:
        raise PkiError(f"cannot read {path}: {e}") from None
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise PkiError(f"{path} is not a regular file")
        return f.read()


def _write(path: Path, data: bytes, mode: int, force: bool, what: str) -> None:
    """Atomically, with `mode` from the first byte (fsutil's temp+fsync+rename);
    without `force` never over a file, even one made since `_refuse_existing`."""
    from ..fsutil import UnsafePathError, atomic_write

    try:
        atomic_write(str(path.absolute()), data, mode, None, None, replace=force)
    except FileExistsError:
        _exists([str(path)], what)
    except (OSError, UnsafePathError) as e:
        raise PkiError(f"cannot write {path}: {getattr(e, 'strerror', None) or e}") from None


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cert_pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))
