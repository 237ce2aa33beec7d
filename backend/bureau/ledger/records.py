"""The state map's records (docs/state.md): one key per entity, its value the canonical JSON text
of the entity's whole current state, built here and nowhere else.

`key(mark)` names the record of an entity mark, a tuple (kind letter, id parts...), e.g.
("w", "W-1001") -> "w/W-1001"; the ledger marks an entity when a block changes it and builds the
record of each mark once at the end of the block (LedgerState._record), and the same functions
build every record when the map is rebuilt at start.
"""

from __future__ import annotations

import hashlib

from .canonical import dumps
from .tariff import Tariff


def key(mark: tuple) -> str:
    return "/".join(str(part) for part in mark)


def _text(doc: dict) -> str:
    return dumps(doc).decode()


def operator(public_key: bytes) -> str:
    return _text({"public_key": public_key.hex()})


def charger(public_key: bytes, retired: bool) -> str:
    """`public_key` is the one in effect after the block (a rotation's new key)."""
    return _text({"public_key": public_key.hex(), "retired": retired})


def wallet(balance_fen: int, public_key: bytes | None) -> str:
    """`debt_fen` is what a top-up must settle before the wallet authorizes again (bills of energy
    delivered may take the balance below zero)."""
    return _text({"balance_fen": balance_fen, "debt_fen": max(0, -balance_fen),
                  "public_key": public_key.hex() if public_key is not None else None})


def card(wallet_id: str, blocked: bool) -> str:
    return _text({"wallet_id": wallet_id, "blocked": blocked})


def tariff_digest(t: Tariff) -> str:
    """Hex SHA-256 of the tariff's canonical document: what the phone checks a document against."""
    return hashlib.sha256(dumps(t.to_doc())).hexdigest()


def tariff(t: Tariff, effective_from: int) -> str:
    return _text({"digest": tariff_digest(t), "effective_from": effective_from})


def meter(seq: int, start_wh: int, end_wh: int) -> str:
    return _text({"seq": seq, "start_wh": start_wh, "end_wh": end_wh})


def payment(wallet_id: str) -> str:
    return _text({"wallet_id": wallet_id})


def binding(binding_key: bytes, expires: int) -> str:
    """An unused binding code of a wallet (deleted when used)."""
    return _text({"binding_key": binding_key.hex(), "expires": expires})


def evidence(block_id_a: bytes, block_id_b: bytes) -> str:
    """An equivocation: the two block ids (nil = 32 zero bytes) one validator voted for."""
    return _text({"block_ids": sorted([block_id_a.hex(), block_id_b.hex()])})
