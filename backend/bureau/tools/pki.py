"""A network's certificate authority and its TLS server certificates (PyPI `cryptography`).

Every key is ECDSA P-256 and every certificate is signed with ECDSA-SHA256: the one choice that
mosquitto (OpenSSL), Python's ssl and the chargers' Mbed TLS 3.6 (MicroPython on the ESP32) all
verify. The CA is a root with pathlen 0 (it signs server certificates only); a server
certificate names its hosts as subjectAltNames (IP addresses as IP entries, other names as DNS
entries), which is what every one of those clients checks. Files are PEM; private keys are
PKCS#8, unencrypted, mode 0600 (docs/broker.md, "TLS").
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest server validity browsers and most TLS stacks still accept


@dataclass(frozen=True)
class TlsFiles:
    """What a TLS server is configured with: the CA certificate its clients verify against, and
    its own certificate and key."""
    ca_file: Path
    cert_file: Path
    key_file: Path


def client_tls_context(ca_file: Path) -> ssl.SSLContext:
    """TLS as the broker's and the API's clients use it: the server's certificate must chain to
    the network's CA and name the host connected to; TLS 1.2 or later."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


_verify_lock = threading.Lock()
_verify_contexts: dict[tuple[str, int, int], ssl.SSLContext] = {}  # by CA file (path, mtime, size)


def http_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    """httpx's `verify` for a bureau API: the network's CA when given, else the system's. The
    same context while the CA file is unchanged, so that the requests made with it share one
    pooled client (bureau.tools.httpclient.shared_client)."""
    if not ca_file:
        return True
    path = Path(ca_file).resolve()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _verify_lock:
        if key not in _verify_contexts:
            _verify_contexts[key] = client_tls_context(path)
        return _verify_contexts[key]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chargeledger"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load(cert_file: Path, key_file: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    return cert, key


def subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    """IP entries for addresses, DNS entries for names; each once, in order."""
    out: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def make_ca(cert_file: Path, key_file: Path, common_name: str) -> None:
    """A new root CA, unless both files exist (a network's CA is made once)."""
    if Path(cert_file).exists() and Path(key_file).exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(Path(key_file), key)
    _write_cert(Path(cert_file), cert)


def issue_server_cert(ca_cert_file: Path, ca_key_file: Path, cert_file: Path, key_file: Path, common_name: str,
                      hosts: list[str]) -> None:
    """A server certificate for `hosts` signed by the CA, unless both files exist."""
    if Path(cert_file).exists() and Path(key_file).exists():
        return
    if not hosts:
        raise ValueError("a server certificate needs at least one host")
    ca_cert, ca_key = _load(ca_cert_file, ca_key_file)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(subject_alt_names(hosts)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(Path(key_file), key)
    _write_cert(Path(cert_file), cert)
