"""Ed25519 over PyNaCl: verification with cached keys, and node/operator key files."""

from __future__ import annotations

import os
from pathlib import Path

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from .errors import ReasonedError


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """The one Ed25519 check of the node (receipts, operator actions, votes, certificates, peers).
    libsodium's open of signature + message, as `VerifyKey.verify` does it, without building a
    VerifyKey per key (a full audit checks every receipt of the chain here)."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
        return True
    except (BadSignatureError, ValueError, TypeError):
        return False


class KeyFileError(ReasonedError):
    """A key file that is `missing` or `malformed`; the detail names the file."""


def load_key(path: Path) -> SigningKey:
    """The key whose 32-byte seed `path` holds (hex). A missing file is an error, never a new key:
    a mistyped path must not sign with a key nobody knows."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeyFileError("missing", f"key file {path} does not exist") from None
    except OSError as e:
        raise KeyFileError("missing", f"key file {path} cannot be read: {e.strerror}") from None
    try:
        seed = bytes.fromhex(text.strip())
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise KeyFileError("malformed", f"{path} does not hold a 32-byte Ed25519 seed in hex")
    return SigningKey(seed)


def load_or_create_key(path: Path) -> SigningKey:
    """The key in `path`, made with the OS's randomness (mode 0600) if there is none: for the
    commands that make keys (keygen, init-network) and for test fixtures."""
    path = Path(path)
    if path.exists():
        return load_key(path)
    return create_key(path)


def create_key(path: Path) -> SigningKey:
    """A new key from the OS's randomness, its seed written to `path` (hex, mode 0600); a file
    already there is never replaced (FileExistsError): it may be the only copy of a key."""
    path = Path(path)
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.encode().hex() + "\n")
    return key
