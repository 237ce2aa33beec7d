"""A CA of its own for a TLS test (bureau.tools.pki: ECDSA P-256, a broker certificate for
127.0.0.1 as an IP subjectAltName), as the PEM files mosquitto reads and the DER file a charger
pins.

    pki = make_pki(tmp_path / "pki")
    Mosquitto(tls=pki.broker_files)              # a TLS listener with the broker's certificate
    pki.ca_der                                   # what goes onto the charger's flash as ca.der
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bureau.tools.pki import TlsFiles, issue_server_cert, make_ca


@dataclass(frozen=True)
class PKI:
    ca_pem: Path
    ca_der: Path
    broker_files: TlsFiles


def der_of(pem_file: Path) -> bytes:
    """The DER bytes of a PEM certificate file."""
    return x509.load_pem_x509_certificate(Path(pem_file).read_bytes()).public_bytes(serialization.Encoding.DER)


def make_pki(directory: Path, ca_name: str = "chargeledger test CA", ip: str = "127.0.0.1") -> PKI:
    """A new CA and a broker certificate for `ip` signed by it, as files under `directory`."""
    d = Path(directory)
    files = TlsFiles(d / "ca.pem", d / "broker.pem", d / "broker.key")
    make_ca(files.ca_file, d / "ca.key", ca_name)
    issue_server_cert(files.ca_file, d / "ca.key", files.cert_file, files.key_file, "broker", [ip])
    (d / "ca.der").write_bytes(der_of(files.ca_file))
    return PKI(files.ca_file, d / "ca.der", files)
