"""Signing that can never equivocate, and signature verification with a memo.

`SafeSigner` holds the validator key and the last-signed (height, round, step) record. It signs
only at a (height, round, step) above the last one, or at the same one with byte-identical sign
bytes (it then returns the stored signature). That is the rule that keeps a restarted node from
signing two different things at one height/round/step, whatever the rest of the code does.

`SignatureCache` memoizes successful Ed25519 verifications keyed by the exact
(public key, message, signature): verification is a pure function of those bytes, so a hit is
the same answer libsodium would give, and duplicates and re-broadcasts cost a dict lookup.
"""

from __future__ import annotations

from nacl.bindings import crypto_sign
from nacl.signing import SigningKey

from ..crypto import verify
from .types import LastSigned


class SignatureCache:
    """verify(public_key, message, signature) -> bool with a bounded memo of verified triples."""

    __slots__ = ("capacity", "_ok", "hits", "checks")

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.capacity = capacity
        self._ok: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.hits = 0
        self.checks = 0

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = (public_key, message, signature)
        if key in self._ok:
            self.hits += 1
            return True
        self.checks += 1
        if not verify(public_key, message, signature):
            return False
        ok = self._ok
        if len(ok) >= self.capacity:
            # drop the oldest quarter (dicts keep insertion order)
            for k in list(ok)[: self.capacity // 4]:
                del ok[k]
        ok[key] = True
        return True


class DoubleSignError(RuntimeError):
    """Refused: signing this would sign a second thing at or below the last-signed step."""


class SafeSigner:
    def __init__(self, signing_key: SigningKey, last_signed: LastSigned | None = None) -> None:
        if not isinstance(signing_key, SigningKey):
            signing_key = SigningKey(bytes(signing_key))
        self._sk = signing_key._signing_key  # libsodium's 64-byte secret key
        self.public_key = signing_key.verify_key.encode()
        self.last = last_signed

    def observe(self, rec: LastSigned) -> None:
        """Raise the last-signed mark to `rec` if it is higher (used on restart with WAL records)."""
        if self.last is None or rec.hrs > self.last.hrs:
            self.last = rec

    def check(self, height: int, round_: int, step: int, sign_bytes: bytes) -> bytes | None:
        """The stored signature if exactly this was signed last, None if signing is allowed;
        raises DoubleSignError if it is not."""
        last = self.last
        if last is None:
            return None
        hrs = (height, round_, step)
        if hrs > last.hrs:
            return None
        if hrs == last.hrs and sign_bytes == last.sign_bytes:
            return last.signature
        raise DoubleSignError(f"refusing to sign at {hrs}: last signed {last.hrs}")

    def sign(self, height: int, round_: int, step: int, sign_bytes: bytes) -> tuple[bytes, LastSigned | None]:
        """(signature, record to persist or None when it is a re-sign of the last one)."""
        again = self.check(height, round_, step, sign_bytes)
        if again is not None:
            return again, None
        sig = crypto_sign(sign_bytes, self._sk)[:64]
        self.last = LastSigned(height, round_, step, sign_bytes, sig)
        return sig, self.last
