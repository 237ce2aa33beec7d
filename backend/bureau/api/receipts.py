"""A driver's bill with everything a phone needs to check it offline. Driver-signed."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, Parameter

from ..chain import Chain
from ..ledger import merkle
from ..node import Node
from ..receipts.codec import decode as decode_receipt
from .driver import DRIVER_DEPENDENCIES
from .errors import ApiError, refusals
from .schemas import HeaderOut, ValidatorChangeOut, header_out, validator_changes_out

MAX_SEQ = 2**32 - 1  # a receipt's seq is a u32 (docs/receipt-v1.md)
Seq = Annotated[int, Parameter(ge=1, le=MAX_SEQ, description="receipt seq, 1..2^32-1")]


class ReceiptOut(msgspec.Struct):
    """The signed receipt (`envelope`, docs/receipt-v1.md) and the fields a phone shows."""
    envelope: str  # hex, as the charger signed it
    receipt_id: str
    charger_id: str
    seq: int
    wallet_id: str
    energy_wh: int
    amount_fen: int
    start_time: int  # unix seconds, UTC
    end_time: int
    stop_reason: str
    periods: list[tuple[int, int]]  # [tariff kind, Wh]
    tariff_id: str
    tariff_version: int


class ReceiptProof(msgspec.Struct):
    receipt: ReceiptOut
    charger_public_key: str  # hex Ed25519, what the envelope's signature verifies with
    leaf_index: int
    tree_size: int
    audit_path: list[str]  # hex sibling hashes from the leaf up to the header's tx_root
    header: HeaderOut
    certificate: str  # the block's commit certificate, canonical JSON text
    validator_changes: list[ValidatorChangeOut]  # to follow the validator sets from the genesis to the block


class ReceiptProver:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def proof(self, wallet_id: str, charger_id: str, seq: int) -> ReceiptProof:
        chain = self.chain
        loc = chain.repo.receipt_location(charger_id, seq)
        if loc is None or loc.wallet_id != wallet_id:
            # the same answer for "absent" and "someone else's": a driver learns nothing of others
            raise ApiError("no_receipt", f"no committed receipt {charger_id}#{seq} in your wallet")
        block, cert = chain.repo.block(loc.height)
        leaves = block.leaf_hashes()
        envelope = block.txs[loc.idx][1:]
        r, _, _ = decode_receipt(envelope)
        receipt = ReceiptOut(envelope=envelope.hex(), receipt_id=loc.receipt_id, charger_id=r.charger_id, seq=r.seq,
                             wallet_id=r.wallet_id, energy_wh=r.energy_wh, amount_fen=r.amount_fen,
                             start_time=r.start_time, end_time=r.end_time, stop_reason=r.stop_reason,
                             periods=[tuple(p) for p in r.periods], tariff_id=r.tariff_id,
                             tariff_version=r.tariff_version)
        return ReceiptProof(receipt=receipt, charger_public_key=chain.state.charger_key_at(charger_id, loc.height).hex(),
                            leaf_index=loc.idx, tree_size=len(leaves),
                            audit_path=[p.hex() for p in merkle.audit_path(leaves, loc.idx)],
                            header=header_out(block.header), certificate=cert.decode(),
                            validator_changes=validator_changes_out(chain.repo))


def provide_receipt_prover(node: NamedDependency[Node]) -> ReceiptProver:
    return ReceiptProver(node.chain)


class ReceiptController(Controller):
    path = "/v1/receipts"
    tags = ["receipts (driver-signed)"]
    dependencies = {**DRIVER_DEPENDENCIES, "prover": Provide(provide_receipt_prover, sync_to_thread=False)}

    @get("/{charger_id:str}/{seq:int}/proof", sync_to_thread=True,
         summary="A bill with everything a phone needs to check it: receipt, charger key, Merkle path, header, certificate",
         responses=refusals("no_receipt", driver_signed=True))
    def proof(self, prover: NamedDependency[ReceiptProver], signer: NamedDependency[str], charger_id: FromPath[str], seq: Seq) -> ReceiptProof:
        return prover.proof(signer, charger_id, seq)
