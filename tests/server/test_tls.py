"""The server's self-signed certificate: made once, key private, the names agents use, a stable fingerprint."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509

from garrison.cli.main import cli
from garrison.server import tls

ALL = "0.0.0.0"  # noqa: S104 - listening on every address: not a name for the certificate


def test_made_once_with_a_private_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    files = tls.ensure_self_signed(data_dir, tls.subject_names(ALL, ["garrison.so-yte.example", "10.0.0.5"]))
    assert files.created
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.cert.stat().st_mode) == 0o644
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    again = tls.ensure_self_signed(data_dir, ["other.example"])
    assert not again.created and again.fingerprint == files.fingerprint
    assert sorted(p.name for p in data_dir.iterdir()) == [tls.CERT_NAME, tls.KEY_NAME]  # no temporary files left


def test_names_and_usage(tmp_path: Path) -> None:
    names = tls.subject_names(ALL, ["garrison.so-yte.example", "10.0.0.5", "[::1]", "Garrison.so-yte.example."])
    assert ALL not in names and names.count("::1") == 1
    assert [n.lower() for n in names].count("garrison.so-yte.example") == 1
    assert {"localhost", "127.0.0.1", "10.0.0.5"} <= set(names)
    cert_pem, key_pem = tls.make_self_signed(names)
    cert = x509.load_pem_x509_certificate(cert_pem)
    alternative = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "garrison.so-yte.example" in alternative.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in alternative.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "10.0.0.5", "::1"}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 3649
    # A TLS server loads the pair, and a client trusting only this certificate accepts it.
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")


def test_fingerprint_command(tmp_path: Path) -> None:
    env = {"GARRISON_DATA_DIR": str(tmp_path)}
    first = CliRunner().invoke(cli, ["server", "fingerprint"], env=env)
    assert first.exit_code == 0, first.output
    printed = first.output.strip().splitlines()[-1]
    assert printed == tls.certificate_fingerprint(tmp_path / tls.CERT_NAME)
    assert "created a self-signed TLS certificate" in first.output
    second = CliRunner().invoke(cli, ["server", "fingerprint", "--tls-cert", str(tmp_path / tls.CERT_NAME)], env=env)
    assert second.output.strip() == printed


def test_run_refuses_contradictory_tls_options(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_bytes(tls.make_self_signed(["localhost"])[0])
    env = {"GARRISON_DATA_DIR": str(tmp_path)}
    alone = CliRunner().invoke(cli, ["server", "run", "--tls-cert", str(cert)], env=env)
    assert alone.exit_code == 2 and "go together" in alone.output
    both = CliRunner().invoke(
        cli, ["server", "run", "--insecure-http", "--tls-cert", str(cert), "--tls-key", str(cert)], env=env
    )
    assert both.exit_code == 2 and "--insecure-http" in both.output
