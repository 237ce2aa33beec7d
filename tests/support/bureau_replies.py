"""A bureau's replies as a node sends them, for tests that play the bureau: receipt acks and
rejects, authorization and release replies signed with bureau-1's key of the shared vectors, whose genesis
(`GENESIS`, tests/vectors/authz.json) the charger under test is provisioned with."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nacl.signing import SigningKey

from bureau.authz import wire
from bureau.receipts.ack import ack_message
from bureau.receipts.codec import receipt_id
from bureau.receipts.reject import reject_message

_AZ = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "authz.json").read_text())
GENESIS = _AZ["genesis"]
CHAIN_ID = _AZ["chain_id"]
BUREAU = "bureau-1"
KEY = SigningKey(bytes.fromhex(_AZ["bureau_seed"]))


def ack(charger_id: str, seq: int, envelope: bytes, height: int = 1) -> bytes:
    """The signed ack of the receipt `envelope` (in a block whose hash is made up from its height)."""
    block = hashlib.sha256(b"block %d" % height).digest()
    return ack_message(CHAIN_ID, BUREAU, KEY, charger_id, seq, receipt_id(bytes(envelope)), height, block)


def auth_reply(charger_id: str, reply: dict) -> bytes:
    """An authorization reply (without "v"), signed for `charger_id`."""
    return json.dumps(wire.sign_auth_reply(reply, CHAIN_ID, BUREAU, charger_id, KEY)).encode()


def reject(charger_id: str, seq: int, envelope: bytes, reason: str, detail: str = "") -> bytes:
    """The signed reject of the receipt `envelope`."""
    return reject_message(CHAIN_ID, BUREAU, KEY, charger_id, seq, receipt_id(bytes(envelope)), reason, detail)


def release_reply(charger_id: str, reply: dict) -> bytes:
    """A reply to a release request (without "v"), signed for `charger_id`."""
    return json.dumps(wire.sign_release_reply(reply, CHAIN_ID, BUREAU, charger_id, KEY)).encode()
