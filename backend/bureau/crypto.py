"""Ed25519 over PyNaCl: verification with cached keys, and node/operator key files."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey


@lru_cache(maxsize=65536)
def _verify_key(public_key: bytes) -> VerifyKey:
    return VerifyKey(public_key)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """The one Ed25519 check of the node (receipts, operator actions, votes, certificates, peers)."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        _verify_key(bytes(public_key)).verify(bytes(message), bytes(signature))
        return True
    except (BadSignatureError, ValueError, TypeError):
        return False


def load_or_create_key(path: Path) -> SigningKey:
    """The 32-byte seed in `path` (hex); made with the OS's randomness on first use, mode 0600."""
    path = Path(path)
    if path.exists():
        seed = bytes.fromhex(path.read_text().strip())
        if len(seed) != 32:
            raise ValueError(f"{path} does not hold a 32-byte Ed25519 seed")
        return SigningKey(seed)
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.encode().hex() + "\n")
    return key
