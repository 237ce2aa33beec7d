"""Shapes more than one domain of the API answers with (a block header), and their builders."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec

from ..ledger.block import Header


def iso_utc(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC with a Z: 2026-01-02T03:04:05.678Z."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HeaderOut(msgspec.Struct):
    """A block header; `encoded` is its canonical bytes (docs/ledger.md), what `hash` is the SHA-256 of."""
    version: int
    chain_id: str
    height: int
    hash: str  # hex
    prev_hash: str
    time_ms: int
    time: str  # time_ms in ISO 8601 UTC
    tx_root: str
    state_root: str
    proposer: str
    tx_count: int
    encoded: str


def header_out(h: Header) -> HeaderOut:
    return HeaderOut(version=h.version, chain_id=h.chain_id, height=h.height, hash=h.hash.hex(),
                     prev_hash=h.prev_hash.hex(), time_ms=h.time_ms, time=iso_utc(h.time_ms),
                     tx_root=h.tx_root.hex(), state_root=h.state_root.hex(), proposer=h.proposer,
                     tx_count=h.tx_count, encoded=h.encode().hex())


class ValidatorChangeOut(msgspec.Struct):
    """A validator-set change decided on chain: the deciding block's header and certificate and the
    state proof of its `v/set` record (docs/consensus.md)."""
    height: int
    header: str  # hex header bytes
    certificate: str  # canonical JSON text
    proof: dict[str, Any]  # state proof JSON v1 of v/set against the header's state_root


def validator_changes_out(repo) -> list[ValidatorChangeOut]:
    return [ValidatorChangeOut(**c) for c in repo.validator_changes()]
