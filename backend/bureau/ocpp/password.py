"""A charge point's HTTP Basic password (OCPP security profile 2), kept on chain only as a salted
scrypt digest: `scrypt$<log2 N>$<r>$<p>$<salt hex>$<digest hex>` (docs/ocpp.md, "Enrollment")."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

DIGEST_RE = re.compile(r"scrypt\$(1[0-9]|20)\$([1-9]|1[0-6])\$([1-4])\$([0-9a-f]{32})\$([0-9a-f]{64})\Z")
LOG2_N, R, P = 14, 8, 1  # 16 MiB and about 50 ms per check
MIN_PASSWORD, MAX_PASSWORD = 16, 40  # OCPP 2.0.1 BasicAuthPassword: 16-40 characters


def make_digest(password: str, *, log2_n: int = LOG2_N, salt: bytes | None = None) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"a charge point password has {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**log2_n, r=R, p=P, dklen=32, maxmem=2**27)
    return f"scrypt${log2_n}${R}${P}${salt.hex()}${digest.hex()}"


def check(password: str, digest: str) -> bool:
    m = DIGEST_RE.match(digest)
    if m is None:
        return False
    log2_n, r, p, salt, want = int(m[1]), int(m[2]), int(m[3]), bytes.fromhex(m[4]), bytes.fromhex(m[5])
    got = hashlib.scrypt(password.encode(), salt=salt, n=2**log2_n, r=r, p=p, dklen=32, maxmem=2**28)
    return hmac.compare_digest(got, want)
