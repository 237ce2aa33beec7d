"""Binding codes (docs/ledger.md, Binding a phone): the one-time code an operator hands a driver
to bind a phone to a wallet. Pure: no I/O.

The code never goes on chain nor into any log: the operator's tool derives the binding key from it
and sends only that key (`issue_binding_code`); the phone derives the same key from the code the
driver types and signs its `bind_phone` transaction with it. tests/vectors/binding.json holds the
derivation for the phone page to check its own against.
"""

from __future__ import annotations

import hashlib
import secrets

from nacl.signing import SigningKey

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_LEN = 16  # 80 bits
BIND_TAG = "EV-BIND/v1\n"
# what a person may type for a character of the code: case, and the letters Crockford reads as digits
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


class BindingCodeError(ValueError):
    """Text that is not a binding code."""


def new_code() -> str:
    """A fresh code of CODE_LEN characters, from the system's CSPRNG."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LEN))


def display(code: str) -> str:
    """XXXX-XXXX-XXXX-XXXX, as the operator shows it to the driver."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def normalise(text: str) -> str:
    """The code as typed (any case, hyphens and spaces anywhere, O for 0, I or L for 1) in its one
    form; BindingCodeError when it is not CODE_LEN characters of the alphabet."""
    code = text.upper().replace("-", "").replace(" ", "").translate(_READ_AS)
    if len(code) != CODE_LEN or any(c not in ALPHABET for c in code):
        raise BindingCodeError(f"a binding code is {CODE_LEN} characters of {ALPHABET} (hyphens and spaces aside)")
    return code


def seed(wallet_id: str, code: str) -> bytes:
    """SHA-256("EV-BIND/v1\\n" ‖ wallet_id ‖ "\\n" ‖ normalised code), UTF-8: the binding key's seed."""
    return hashlib.sha256(f"{BIND_TAG}{wallet_id}\n{normalise(code)}".encode()).digest()


def signing_key(wallet_id: str, code: str) -> SigningKey:
    return SigningKey(seed(wallet_id, code))


def binding_key(wallet_id: str, code: str) -> bytes:
    """The Ed25519 public key the chain holds for the code (`b/<wallet>`)."""
    return signing_key(wallet_id, code).verify_key.encode()
