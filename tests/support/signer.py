"""A PyNaCl signer with the interface of firmware/lib/ed25519.py (sign, public_key, verify).

The firmware's own signer is checked against the shared vectors in tests/firmware; tests that
sign hundreds of receipts (reboots, power cuts, sessions) use this one for speed."""

from nacl.signing import SigningKey

from bureau import crypto


class NaclSigner:
    @staticmethod
    def sign(seed, msg):
        return SigningKey(seed).sign(msg).signature

    @staticmethod
    def public_key(seed):
        return SigningKey(seed).verify_key.encode()

    @staticmethod
    def verify(public_key, msg, sig):
        return crypto.verify(bytes(public_key), bytes(msg), bytes(sig))
