"""The server's TLS certificate: a self-signed one, made once in the data directory when none is configured.

Agents pin it: the operator gives them its SHA-256 fingerprint with the enrollment token; an agent checks the
fingerprint on its first contact and from then on trusts that certificate only. So the certificate must stay the
same for as long as agents use it: it is made once (ECDSA P-256, valid ten years) and never replaced by this
module. Deleting the two files makes a new one at the next start, after which every agent must enroll again.

This module makes and reads files; it serves nothing and knows nothing of HTTP.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from garrison.atomicfile import write_atomic

CERT_NAME = "tls-cert.pem"
KEY_NAME = "tls-key.pem"
VALIDITY = dt.timedelta(days=3650)
_UNSPECIFIED = {"", "0.0.0.0", "::", "*"}  # noqa: S104 - names of "every address", never a certificate name


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A certificate and its key on disk; ``created`` when this call made them."""

    cert: Path
    key: Path
    created: bool = False

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.cert)


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, as ``openssl x509 -fingerprint -sha256`` prints it (``AB:CD:...``)."""
    digest = x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256())
    return ":".join(f"{byte:02X}" for byte in digest)


def certificate_fingerprint(path: Path) -> str:
    """The fingerprint of the first certificate in a PEM file (the one the server presents)."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def data_dir_fingerprint(data_dir: Path) -> str | None:
    """The fingerprint of the self-signed certificate in ``data_dir``, if there is one (what agents and child
    servers pin when they enroll or join)."""
    cert = Path(data_dir) / CERT_NAME
    if not cert.is_file():
        return None
    try:
        return certificate_fingerprint(cert)
    except (OSError, ValueError):
        return None


def subject_names(host: str, extra: Iterable[str] = ()) -> list[str]:
    """The names a self-signed certificate should hold: the listening address when it is a specific one, the
    extra names given, this machine's names, and the loopback names. Duplicates removed, order kept."""
    names = [host, *extra, socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1", "::1"]
    seen: dict[str, None] = {}
    for name in names:
        name = name.strip().strip("[]").rstrip(".")  # noqa: PLW2901
        if name.lower() not in _UNSPECIFIED and name.lower() not in (n.lower() for n in seen):
            seen[name] = None
    return list(seen)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name.encode("idna").decode("ascii"))


def make_self_signed(names: list[str], now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """A new key and a self-signed server certificate for ``names``, both PEM: ``(certificate, key)``."""
    if not names:
        raise ValueError("a certificate needs at least one name")
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"Garrison server {names[0]}"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Garrison"),
        ]
    )
    alternative: list[x509.GeneralName] = []
    for item in names:
        with contextlib.suppress(ValueError, UnicodeError):  # a name that cannot be encoded is left out
            alternative.append(_general_name(item))
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # a little slack for clocks that run behind
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_self_signed(data_dir: Path, names: list[str]) -> TlsFiles:
    """The self-signed certificate and key in ``data_dir``, made now if they do not both exist yet.

    The key file is written with mode 0600 before the certificate, so a certificate on disk always has its key.
    ``names`` only matter when the files are made.
    """
    data_dir = Path(data_dir)
    cert_path, key_path = data_dir / CERT_NAME, data_dir / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        return TlsFiles(cert_path, key_path)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_pem, key_pem = make_self_signed(names)
    write_atomic(key_path, key_pem, 0o600)
    write_atomic(cert_path, cert_pem, 0o644)
    return TlsFiles(cert_path, key_path, created=True)
