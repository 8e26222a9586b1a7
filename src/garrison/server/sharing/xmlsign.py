"""XML-DSig for documents sent to the national authority: enveloped signature, rsa-sha256, exclusive c14n, the
signer's X.509 certificate in ``KeyInfo/X509Data`` (regulations.md §7B–§7C; official letter 2290/BTTTT-CATTT).

``sign`` is the sender's side; ``verify`` the receiver's (and the tests'). Both go through signxml, so the
canonicalisation and the algorithms are those of a maintained implementation, not of this module.
"""

from __future__ import annotations

import tempfile
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureConstructionMethod, SignatureMethod
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

DSIG_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"


class SignatureError(Exception):
    """The document's signature is missing, malformed, or does not verify against the trusted certificate."""


def placeholder() -> Any:
    """An empty ``ds:Signature`` to put where the signature belongs (signxml replaces it when it signs; without
    one, the signature is appended to the root element)."""
    return etree.Element(f"{{{DSIG_NAMESPACE}}}Signature", {"Id": "placeholder"}, nsmap={"ds": DSIG_NAMESPACE})


def load_key(key_pem: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """The RSA private key of a PEM file (``ValueError`` if it is not one)."""
    key = serialization.load_pem_private_key(key_pem, password=password)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the signing key is not an RSA key (rsa-sha256 needs one)")
    return key


def load_certificates(cert_pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM file, the signer's first then its chain (``ValueError`` if there are none)."""
    certs = x509.load_pem_x509_certificates(cert_pem)
    if not certs:
        raise ValueError("no certificate in the PEM file")
    return certs


def sign(root: Any, key_pem: bytes, cert_pem: bytes) -> Any:
    """``root`` signed: an enveloped XML-DSig signature over the whole document (reference URI ""), rsa-sha256,
    SHA-256 digest, exclusive c14n, with the certificate (and its chain) in ``KeyInfo/X509Data``.

    The signature goes where ``root`` holds a :func:`placeholder`, else at the end of ``root``. The key and the
    certificate must match (``ValueError`` otherwise). Returns a new element; ``root`` is left as it was.
    """
    key = load_key(key_pem)
    certs = load_certificates(cert_pem)
    public = certs[0].public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != key.public_key().public_numbers():
        raise ValueError("the certificate is not the signing key's")
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    return signer.sign(root, key=key, cert=certs)


def _config() -> SignatureConfiguration:
    return SignatureConfiguration(
        require_x509=True,
        expect_references=1,
        signature_methods=frozenset({SignatureMethod.RSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
    )


def verify(data: bytes, trusted_pem: bytes, *, as_ca: bool = False) -> Any:
    """The signed root element of ``data`` once its signature verified, else :class:`SignatureError`.

    ``trusted_pem`` is the sender's certificate itself (pinned: the signature must be made with its key), or with
    ``as_ca`` the certificate authorities its certificate must chain to. Only rsa-sha256 signatures with SHA-256
    digests over the whole document are accepted. Use the returned element, never ``data``: only what was signed
    is in it.
    """
    verifier = XMLVerifier()
    try:
        if as_ca:
            load_certificates(trusted_pem)
            # signxml reads the authorities from a file.
            with tempfile.NamedTemporaryFile(suffix=".pem") as authorities:
                authorities.write(trusted_pem)
                authorities.flush()
                result = verifier.verify(data, ca_pem_file=authorities.name, expect_config=_config())
        else:
            (cert,) = load_certificates(trusted_pem)[:1]
            pem = cert.public_bytes(serialization.Encoding.PEM).decode()
            result = verifier.verify(data, x509_cert=pem, expect_config=_config())
    except Exception as error:  # signxml raises InvalidInput, InvalidSignature, InvalidCertificate, lxml errors
        raise SignatureError(f"the signature does not verify: {error}") from error
    if isinstance(result, list):  # only with several expected references, which the configuration rules out
        raise SignatureError("more than one signed reference")
    return result.signed_xml
