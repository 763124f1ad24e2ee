"""The TLS listener's own certificate when none is given (docs/operations.md, HTTPS): a CA made
at start, constrained to loopback names, that signs one server certificate and is then
forgotten (its private key is never kept nor written). Pure: names in, PEM bytes out.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# What every generated certificate names: how a workload in the pod reaches the proxy.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity Apple's TLS clients accept
BACKDATE = datetime.timedelta(hours=1)  # clocks of the workload a little behind


@dataclass(frozen=True)
class GeneratedCertificate:
    ca_pem: bytes  # what a workload trusts (S3PROXY_TLS_CA_OUT)
    cert_pem: bytes  # the server certificate
    key_pem: bytes  # its private key (PKCS#8, unencrypted)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _permitted(names: Iterable[x509.GeneralName]) -> list[x509.GeneralName]:
    """Name constraints of the CA: exactly the server's names (an IP as a /32 or /128)."""
    found: list[x509.GeneralName] = []
    for name in names:
        if isinstance(name, x509.IPAddress):
            found.append(x509.IPAddress(ipaddress.ip_network(name.value)))
        else:
            found.append(name)
    return found


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s3proxy"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def generate(
    extra_names: Iterable[str] = (), now: datetime.datetime | None = None
) -> GeneratedCertificate:
    """A fresh CA and a server certificate for localhost, 127.0.0.1, ::1 and ``extra_names``
    (ECDSA P-256, SHA-256). The CA may sign for these names only."""
    now = now or datetime.datetime.now(datetime.UTC)
    wanted = list(dict.fromkeys([*LOOPBACK_NAMES, *extra_names]))
    sans = [_general_name(n) for n in wanted]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"s3proxy local CA {now:%Y-%m-%dT%H:%M:%SZ}")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.NameConstraints(_permitted(sans), None), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return GeneratedCertificate(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
