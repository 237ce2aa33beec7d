"""The node's HTTP side of OCPP charge points: an operator's commands to a connected charge
point (Reset, ChangeAvailability; operator-signed) and a driver's proof of an OCPP bill
(driver-signed). docs/ocpp.md."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, Parameter, QueryParameter

from ..api.driver import DRIVER_DEPENDENCIES
from ..api.errors import ApiError, refusals
from ..api.operator_auth import require_operator
from ..api.schemas import HeaderOut, ValidatorChangeOut, header_out, validator_changes_out
from ..ledger import merkle, ocppbill
from ..node import Node
from .service import CsmsUnavailable

TxHashHex = Annotated[str, Parameter(pattern="^[0-9a-f]{64}$", description="the bill's tx hash, hex")]


class CommandOut(msgspec.Struct):
    charger_id: str
    command: str  # reset | change_availability
    status: str  # the charge point's answer: Accepted, Rejected, Scheduled...


class OcppBillProof(msgspec.Struct):
    """An OCPP bill with what a phone needs to check it: the bill transaction (kind 4) and the key
    it verifies with (the serving bureau's node key, from the genesis), the meter's OCMF key when
    the bill carries a meter-signed record, the Merkle path, the header and its certificate."""
    tx: str  # hex, the whole kind-4 transaction
    bill: dict  # its document, parsed
    verified_by: str  # "ocmf": the meter signed the readings; else the bureau that attests them
    ocmf_key: str | None  # hex DER SubjectPublicKeyInfo of the meter key enrolled
    leaf_index: int
    tree_size: int
    audit_path: list[str]
    header: HeaderOut
    certificate: str
    validator_changes: list[ValidatorChangeOut]  # to follow the validator sets from the genesis to the block


class OcppDesk:
    def __init__(self, node: Node) -> None:
        self.node = node

    def command(self, charger_id: str, name: str, *args) -> CommandOut:
        if not self.node.ocpp.enabled:
            raise ApiError("charger_unreachable", "this bureau runs no OCPP listener (BUREAU_OCPP_PORT)")
        try:
            status = self.node.ocpp.request(charger_id, name, *args)
        except CsmsUnavailable as e:
            raise ApiError(e.reason, e.detail) from None
        return CommandOut(charger_id=charger_id, command=name, status=str(status))

    def proof(self, wallet_id: str, tx_hash: bytes) -> OcppBillProof:
        chain = self.node.chain
        loc = chain.repo.ocpp_bill_location(tx_hash)
        if loc is None or loc.wallet_id != wallet_id:
            raise ApiError("no_receipt", "no committed OCPP bill with this hash in your wallet")
        block, cert = chain.repo.block(loc.height)
        leaves = block.leaf_hashes()
        tx = block.txs[loc.idx]
        bill = ocppbill.decode(tx)
        enrolled = chain.state.ocpp_chargers.get(loc.charger_id)
        return OcppBillProof(tx=tx.hex(), bill=bill.doc, verified_by=loc.verified_by,
                             ocmf_key=enrolled.ocmf_key if enrolled else None, leaf_index=loc.idx,
                             tree_size=len(leaves), audit_path=[p.hex() for p in merkle.audit_path(leaves, loc.idx)],
                             header=header_out(block.header), certificate=cert.decode(),
                             validator_changes=validator_changes_out(chain.repo))


def provide_ocpp_desk(node: NamedDependency[Node]) -> OcppDesk:
    return OcppDesk(node)


class OcppOperatorController(Controller):
    path = "/v1/operator/ocpp"
    tags = ["operator (OCPP charge points)"]
    dependencies = {"desk": Provide(provide_ocpp_desk, sync_to_thread=False)}

    @post("/{charger_id:str}/reset", status_code=200, sync_to_thread=True,
          summary="Reset a connected OCPP charge point (operator only)",
          responses=refusals("charger_unreachable", operator_only=True))
    def reset(self, request: Request, desk: NamedDependency[OcppDesk], charger_id: FromPath[str],
              hard: Annotated[bool, QueryParameter(description="at once, not when idle")] = False) -> CommandOut:
        require_operator(request)
        return desk.command(charger_id, "reset", hard)

    @post("/{charger_id:str}/availability", status_code=200, sync_to_thread=True,
          summary="Make a connected OCPP charge point's connector (0: all) available or not (operator only)",
          responses=refusals("charger_unreachable", operator_only=True))
    def availability(self, request: Request, desk: NamedDependency[OcppDesk], charger_id: FromPath[str],
                     available: Annotated[bool, QueryParameter()],
                     connector: Annotated[int, QueryParameter(ge=0, le=255)] = 0) -> CommandOut:
        require_operator(request)
        return desk.command(charger_id, "change_availability", connector, available)


class OcppBillController(Controller):
    path = "/v1/ocpp/bills"
    tags = ["receipts (driver-signed)"]
    dependencies = {**DRIVER_DEPENDENCIES, "desk": Provide(provide_ocpp_desk, sync_to_thread=False)}

    @get("/{tx_hash:str}/proof", sync_to_thread=True,
         summary="An OCPP bill with everything a phone needs to check it: the bill, meter key, Merkle path, header, "
                 "certificate", responses=refusals("no_receipt", driver_signed=True))
    def proof(self, desk: NamedDependency[OcppDesk], signer: NamedDependency[str], tx_hash: TxHashHex) -> OcppBillProof:
        return desk.proof(signer, bytes.fromhex(tx_hash))
