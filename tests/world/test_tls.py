"""TLS: `pymgmt pki` (files, modes, names, refusals), the checks of the TLS files at
start-up, and an etcd server and client speaking TLS to each other (real etcd)."""

from __future__ import annotations

import datetime
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from etcdutil import fast_config, serving, world_on
from helpers import PYMGMT, run_async

from pymgmt.cli.pki import PkiError, init_ca, issue_host
from pymgmt.world.base import WorldError
from pymgmt.world.etcd.server import EtcdConfig
from pymgmt.world.etcd.tls import CLUSTER_NAME, TlsError, TlsFiles, diagnose
from pymgmt.world.etcd.urls import host_port

UTC = datetime.UTC


def pki(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYMGMT, "pki", *args], capture_output=True, text=True, timeout=60, check=False
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    """A CA and a certificate for host h1 (127.0.0.1) in tmp_path/pki."""
    d = tmp_path / "pki"
    init_ca(d)
    issue_host(d, "h1", ips=["127.0.0.1"])
    return d


# -- pymgmt pki ---------------------------------------------------------------------------------


def test_pki_init_makes_a_ca_whose_key_is_0600(tmp_path: Path) -> None:
    d = tmp_path / "new" / "pki"
    proc = pki("init", str(d))
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(d)) == ["ca.crt", "ca.key"]
    assert mode(d / "ca.key") == 0o600
    assert mode(d / "ca.crt") == 0o644
    assert mode(d) == 0o700
    c = cert(d / "ca.crt")
    assert c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(c.public_key(), ec.EllipticCurvePublicKey)
    years = (c.not_valid_after_utc - c.not_valid_before_utc).days / 365
    assert 9.9 < years < 10.1
    # what is printed names the files, never a key's content
    assert str(d / "ca.key") in proc.stdout
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr


def test_pki_host_certificate_names_the_host_its_addresses_and_the_cluster(ca: Path) -> None:
    proc = pki("host", str(ca), "web1", "--ip", "10.0.0.7", "--ip", "::1", "--dns", "web1.lan")
    assert proc.returncode == 0, proc.stderr
    assert mode(ca / "web1.key") == 0o600
    c = cert(ca / "web1.crt")
    sans = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["web1", CLUSTER_NAME, "web1.lan"]
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7", "::1"]
    usage = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    c.verify_directly_issued_by(cert(ca / "ca.crt"))
    years = (c.not_valid_after_utc - c.not_valid_before_utc).days / 365
    assert 2 < years < 5
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr
    # and the files pass the start-up checks
    TlsFiles.from_pki(ca, "web1").load()


def test_pki_never_overwrites_without_force(ca: Path) -> None:
    before = contents(ca)
    for args in (("init", str(ca)), ("host", str(ca), "h1")):
        proc = pki(*args)
        assert proc.returncode == 1
        assert "already exist" in proc.stderr and "--force" in proc.stderr, proc.stderr
        assert contents(ca) == before
    proc = pki("host", str(ca), "h1", "--force")
    assert proc.returncode == 0, proc.stderr
    after = contents(ca)
    assert after["h1.crt"] != before["h1.crt"] and after["h1.key"] != before["h1.key"]
    assert after["ca.key"] == before["ca.key"]
    assert mode(ca / "h1.key") == 0o600
    assert not [n for n in os.listdir(ca) if n.startswith(".")]  # no temporary file left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("host", "{dir}", "web1", "--ip", "10.0.0.300"), "--ip '10.0.0.300': not an IP"),
        (("host", "{dir}", "web1", "--dns", "bad name"), "--dns 'bad name': not a DNS name"),
        (("host", "{dir}", "a/b"), "cannot name a host"),
        (("host", "{dir}", "web1", "--days", "0"), "--days 0"),
        (("host", "{empty}", "web1"), "no CA in"),
        (
            (
                "host",
                "{dir}",
            ),
            "the following arguments are required: NAME",
        ),
        ((), "an action is required"),
    ],
)
def test_pki_usage_errors_exit_1_saying_why(
    ca: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    before = contents(ca)
    proc = pki(*(a.format(dir=ca, empty=empty) for a in args))
    assert proc.returncode == 1, proc.stdout
    assert message in proc.stderr
    assert contents(ca) == before and not os.listdir(empty)


def test_pki_host_refuses_the_name_ca_whose_files_are_the_cas_own(ca: Path) -> None:
    # DIR/ca.crt and DIR/ca.key are the CA: a host "ca" would replace the CA's key
    before = contents(ca)
    proc = pki("host", str(ca), "ca", "--force")
    assert proc.returncode == 1, proc.stdout
    assert "'ca' cannot name a host" in proc.stderr, proc.stderr
    assert contents(ca) == before


def test_pki_never_replaces_a_file_made_while_it_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # another 'pymgmt pki init' finishing between the check and the write: each
    # run keeps its files whole, never one's key with the other's certificate
    d = tmp_path / "pki"
    generate = ec.generate_private_key

    def racing(curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        (d / "ca.key").write_bytes(b"the other run's key\n")
        return generate(curve)

    monkeypatch.setattr(ec, "generate_private_key", racing)
    with pytest.raises(PkiError, match="already exist"):
        init_ca(d)
    assert contents(d) == {"ca.key": b"the other run's key\n"}


def test_pki_host_does_not_follow_a_symlink_planted_at_the_ca_key(tmp_path: Path) -> None:
    # a key that is not this CA's, signed with by pymgmt because DIR/ca.key points at it
    elsewhere = tmp_path / "elsewhere"
    init_ca(elsewhere)
    d = tmp_path / "pki"
    d.mkdir()
    (d / "ca.crt").write_bytes((elsewhere / "ca.crt").read_bytes())
    (d / "ca.key").symlink_to(elsewhere / "ca.key")
    proc = pki("host", str(d), "h1")
    assert proc.returncode == 1, proc.stdout
    assert f"{d / 'ca.key'} is a symbolic link" in proc.stderr, proc.stderr
    assert sorted(os.listdir(d)) == ["ca.crt", "ca.key"]


def test_pki_host_refuses_a_ca_key_and_certificate_that_do_not_match(
    ca: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    init_ca(other)
    (ca / "ca.crt").write_bytes((other / "ca.crt").read_bytes())
    before = contents(ca)
    proc = pki("host", str(ca), "web1")
    assert proc.returncode == 1, proc.stdout
    assert "does not belong to the CA certificate" in proc.stderr, proc.stderr
    assert contents(ca) == before


def test_pki_host_refuses_an_expired_ca(ca: Path) -> None:
    key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    old = cert(ca / "ca.crt")
    now = datetime.datetime.now(UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=20))
        .not_valid_after(now - datetime.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    (ca / "ca.crt").write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    before = contents(ca)
    proc = pki("host", str(ca), "web1")
    assert proc.returncode == 1, proc.stdout
    assert "expired on" in proc.stderr, proc.stderr
    assert contents(ca) == before


# -- checking the files at start-up -------------------------------------------------------------


def _other_ca(tmp_path: Path) -> Path:
    d = tmp_path / "other"
    init_ca(d)
    issue_host(d, "h1", ips=["127.0.0.1"])
    return d


def _bare_cert(ca: Path, path: Path, key: ec.EllipticCurvePrivateKey, **kw: object) -> None:
    """A certificate signed by `ca` for `key`, made by hand (no SAN unless `dns`)."""
    ca_cert = cert(ca / "ca.crt")
    ca_key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), None)
    now = datetime.datetime.now(UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "h1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if kw.get("dns"):
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(CLUSTER_NAME)]), critical=False
        )
    if kw.get("server_only"):
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    path.write_bytes(b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))  # type: ignore[arg-type]


def test_the_files_pymgmt_pki_makes_pass_the_checks(ca: Path) -> None:
    material = TlsFiles.from_pki(ca, "h1").load()
    assert material.key == (ca / "h1.key").read_bytes()


def test_the_loaded_key_never_shows_in_a_repr(ca: Path) -> None:
    # a repr reaches logs and tracebacks (a debugger, locals in an error report)
    material = TlsFiles.from_pki(ca, "h1").load()
    assert "PRIVATE KEY" not in repr(material) and "PRIVATE KEY" not in str(material)
    assert "PRIVATE KEY" in material.key.decode()


def test_each_bad_file_is_named_in_the_error(ca: Path, tmp_path: Path) -> None:
    good = TlsFiles.from_pki(ca, "h1")
    other = TlsFiles.from_pki(_other_ca(tmp_path), "h1")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a pem file\n")
    key = ec.generate_private_key(ec.SECP256R1())
    no_name, server_only, enc = tmp_path / "noname.crt", tmp_path / "server.crt", tmp_path / "e.key"
    _bare_cert(ca, no_name, key)
    _bare_cert(ca, server_only, key, dns=True, server_only=True)
    own_key = tmp_path / "own.key"
    own_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    enc.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    cases = [
        (TlsFiles(ca / "nope.crt", good.cert, good.key), ca / "nope.crt", "does not exist"),
        (TlsFiles(junk, good.cert, good.key), junk, "is not a PEM certificate"),
        (TlsFiles(good.ca, junk, good.key), junk, "is not a PEM certificate"),
        (TlsFiles(good.ca, good.cert, junk), junk, "is not a PEM private key"),
        (TlsFiles(good.ca, good.cert, other.key), other.key, "does not belong to"),
        (TlsFiles(good.ca, other.cert, other.key), other.cert, "is not signed by the CA"),
        (TlsFiles(good.ca, no_name, own_key), no_name, CLUSTER_NAME),
        (TlsFiles(good.ca, server_only, own_key), server_only, "cannot be used as a TLS client"),
        (TlsFiles(good.ca, server_only, enc), enc, "is encrypted"),
    ]
    for files, culprit, words in cases:
        with pytest.raises(TlsError) as info:
            files.load()
        assert isinstance(info.value, WorldError)
        assert info.value.path == culprit, (files, info.value)
        assert str(culprit) in str(info.value) and words in str(info.value), str(info.value)
        assert "BEGIN" not in str(info.value)  # never a file's content


def test_an_expired_or_not_yet_valid_certificate_is_refused(ca: Path) -> None:
    files = TlsFiles.from_pki(ca, "h1")
    with pytest.raises(TlsError, match=r"h1\.crt expired on"):
        files.load(now=datetime.datetime.now(UTC) + datetime.timedelta(days=4 * 365))
    with pytest.raises(TlsError, match=r"ca\.crt expired on"):
        files.load(now=datetime.datetime.now(UTC) + datetime.timedelta(days=11 * 365))
    with pytest.raises(TlsError, match="is not valid yet"):
        files.load(now=datetime.datetime.now(UTC) - datetime.timedelta(days=1))


# -- etcd's configuration ------------------------------------------------------------------------


def test_with_tls_etcd_serves_https_and_demands_client_certificates(ca: Path, tmp_path) -> None:
    files = TlsFiles.from_pki(ca, "h1")
    config = EtcdConfig(
        "h1",
        tmp_path / "d",
        ("http://127.0.0.1:1",),
        ("https://127.0.0.1:2",),
        initial_cluster="h1=http://127.0.0.1:2",
        tls=files,
    )
    argv = config.argv("etcd")
    assert config.client_urls == ("https://127.0.0.1:1",)
    assert argv[argv.index("--initial-cluster") + 1] == "h1=https://127.0.0.1:2"
    for flag in ("--client-cert-auth", "--peer-client-cert-auth"):
        assert flag in argv
    for flag, value in (
        ("--cert-file", files.cert),
        ("--key-file", files.key),
        ("--trusted-ca-file", files.ca),
        ("--peer-cert-file", files.cert),
        ("--peer-key-file", files.key),
        ("--peer-trusted-ca-file", files.ca),
    ):
        assert argv[argv.index(flag) + 1] == str(value)


def test_without_tls_an_https_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match=r"https://127\.0\.0\.1:1: serving https needs"):
        EtcdConfig("h1", tmp_path / "d", ("https://127.0.0.1:1",), ("http://127.0.0.1:2",))


# -- a real server and client --------------------------------------------------------------------


def _tls_config(tmp_path: Path, files: TlsFiles) -> EtcdConfig:
    return fast_config(tmp_path, "h1", tls=files)


def test_a_tls_server_and_client_work_together(ca: Path, tmp_path: Path) -> None:
    files = TlsFiles.from_pki(ca, "h1")

    async def main() -> None:
        async with serving(_tls_config(tmp_path, files)) as server:
            assert all(u.startswith("https://") for u in server.client_urls)
            async with world_on(server.client_urls, "h1", tls=files) as w:
                await w.put("/t/k", b"v")
                kvs, _ = await w.get_prefix("/t/")
                assert [(kv.key, kv.value) for kv in kvs] == [("/t/k", b"v")]

    run_async(main())


def test_a_client_of_another_ca_or_without_tls_is_refused_at_once(ca: Path, tmp_path) -> None:
    files = TlsFiles.from_pki(ca, "h1")
    other = TlsFiles.from_pki(_other_ca(tmp_path), "h1")

    async def main() -> None:
        async with serving(_tls_config(tmp_path, files)) as server:
            [url] = server.client_urls
            plain = url.replace("https://", "http://")
            # connect_timeout is long: the error must come from the diagnosis, not a timeout
            with pytest.raises(TlsError, match="presented a certificate not signed by the CA"):
                async with world_on([url], "h2", tls=other, connect_timeout=60):
                    pass
            with pytest.raises(TlsError, match="requires TLS with a client certificate"):
                async with world_on([plain], "h2", connect_timeout=60):
                    pass
            with pytest.raises(WorldError, match="an https endpoint needs this host's TLS"):
                async with world_on([url], "h2", connect_timeout=60):
                    pass
            # trusting the server's CA but showing a certificate another CA signed
            # (the agent's own checks refuse such files: a bare handshake here)
            host, port = host_port(url)
            foreign = TlsFiles(files.ca, other.cert, other.key)
            refused = await diagnose(host, port, foreign)
            assert refused is not None and "refused this host's certificate" in str(refused)
            assert await diagnose(host, port, files) is None

    run_async(main())


def test_a_tls_client_of_a_plain_text_server_is_told_so_at_once(ca: Path, tmp_path) -> None:
    files = TlsFiles.from_pki(ca, "h1")

    async def main() -> None:
        async with serving(fast_config(tmp_path, "h1")) as server:
            with pytest.raises(TlsError, match="does not speak TLS"):
                async with world_on(server.client_urls, "h2", tls=files, connect_timeout=60):
                    pass

    run_async(main())
