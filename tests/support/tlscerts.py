"""Certificates for TLS tests, made with `cryptography`: an ECDSA P-256 CA and a broker
certificate it signs for 127.0.0.1 (an IP subjectAltName, as a charger that dials the broker's
address checks), written as the PEM files mosquitto reads and the DER file a charger pins.

    pki = make_pki(tmp_path / "pki")
    Mosquitto(tls=pki.broker_files)              # listener with the broker's certificate
    pki.ca_der                                   # what goes onto the charger's flash as ca.der
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bureau.tools.mosquitto import TLSFiles


@dataclass(frozen=True)
class PKI:
    ca_pem: Path
    ca_der: Path
    broker_files: TLSFiles


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path, ca_name: str = "chargeledger test network CA", ip: str = "127.0.0.1") -> PKI:
    """A new CA and a broker certificate for `ip` signed by it, as files under `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    valid_from, valid_to = now - dt.timedelta(hours=1), now + dt.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(ca_name)).issuer_name(_name(ca_name))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid_from).not_valid_after(valid_to)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("broker")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid_from).not_valid_after(valid_to)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {
        "ca.pem": ca.public_bytes(serialization.Encoding.PEM),
        "ca.der": ca.public_bytes(serialization.Encoding.DER),
        "broker.pem": cert.public_bytes(serialization.Encoding.PEM),
        "broker.key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / "broker.key").chmod(0o600)
    return PKI(directory / "ca.pem", directory / "ca.der",
               TLSFiles(directory / "ca.pem", directory / "broker.pem", directory / "broker.key"))
