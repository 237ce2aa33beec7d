"""A metering device that signs OCMF records with its own P-256 key, as an Eichrecht meter does
(tests of the OCPP bills and the phone's meter-signature check)."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


class OcmfMeter:
    def __init__(self, seed: int = 1) -> None:
        self.key = ec.derive_private_key(seed + 10**6, ec.SECP256R1())

    @property
    def public_key_hex(self) -> str:
        return self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo).hex()

    def record(self, begin_wh: int, end_wh: int, begin_time: str = "2026-12-01T10:00:00,000+0800 S",
               end_time: str = "2026-12-01T11:00:00,000+0800 S", *, tamper: bool = False) -> str:
        payload = json.dumps({
            "FV": "1.0", "GI": "SIM-METER", "GS": "SIM-1", "PG": "T1", "MV": "Sim", "MS": "SIM-1",
            "IS": True, "IT": "ISO14443", "ID": "04A1B2C3",
            "RD": [{"TM": begin_time, "TX": "B", "RV": begin_wh / 1000, "RI": "1-b:1.8.0", "RU": "kWh", "ST": "G"},
                   {"TM": end_time, "TX": "E", "RV": end_wh / 1000, "RI": "1-b:1.8.0", "RU": "kWh", "ST": "G"}]},
            separators=(",", ":"))
        sig = self.key.sign(payload.encode(), ec.ECDSA(hashes.SHA256())).hex()
        if tamper:
            payload = payload.replace(f'"RV":{end_wh / 1000}', f'"RV":{(end_wh + 1000) / 1000}')
        return f'OCMF|{payload}|{json.dumps({"SA": "ECDSA-secp256r1-SHA256", "SD": sig}, separators=(",", ":"))}'
