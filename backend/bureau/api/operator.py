"""Signed operator actions: submitted to the mempool, then committed or refused on the chain."""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, Parameter

from ..chain import Chain
from ..ingest.admission import admit_signed
from ..ingest.mempool import Mempool, MempoolFull
from ..ledger.tx import KIND_OPERATOR, decode_operator
from ..node import Node
from .errors import ApiError, refusals
from .operator_auth import require_operator

TxHashHex = Annotated[str, Parameter(pattern="^[0-9a-f]{64}$", description="the action's hash, lowercase hex")]


class ActionSubmission(msgspec.Struct):
    tx: str  # hex of a signed operator action (docs/ledger.md)


class ActionAccepted(msgspec.Struct):
    tx_hash: str
    status: str  # "pending"
    action: str  # enroll_charger, open_wallet, top_up, publish_tariff


class ActionStatus(msgspec.Struct):
    tx_hash: str
    status: str  # "committed", "pending" or "refused"
    height: int | msgspec.UnsetType = msgspec.UNSET  # the block that decided it, once decided on chain
    reason: str | msgspec.UnsetType = msgspec.UNSET  # only when refused
    detail: str | msgspec.UnsetType = msgspec.UNSET


def admit_signed_hex(tx_hex: str, kind: int, what: str, chain: Chain, mempool: Mempool) -> tuple[bytes, bytes]:
    """(tx, hash) of a signed transaction of `kind` (hex) admitted to the mempool, checked against
    the committed state like the ledger will check it; the TxError or ApiError is the refusal."""
    try:
        tx = bytes.fromhex(tx_hex)
    except ValueError:
        raise ApiError("malformed", "tx must be hex") from None
    if not tx or tx[0] != kind:
        raise ApiError("malformed", f"tx is not {what}")
    h = admit_signed(tx, chain.state)
    try:
        mempool.add(h, tx, verified=True)
    except MempoolFull as e:
        raise ApiError("busy", str(e)) from None
    return tx, h


class OperatorDesk:
    """Admits operator actions into the mempool and says what became of them."""

    def __init__(self, chain: Chain, mempool: Mempool, refused: OrderedDict[bytes, tuple[str, str]]) -> None:
        self.chain, self.mempool, self.refused = chain, mempool, refused

    def submit(self, tx_hex: str) -> ActionAccepted:
        tx, h = admit_signed_hex(tx_hex, KIND_OPERATOR, "an operator action", self.chain, self.mempool)
        return ActionAccepted(tx_hash=h.hex(), status="pending", action=decode_operator(tx).action)

    def status(self, h: bytes) -> ActionStatus:
        # An action is stored as decided (a committed block) or recorded as refused before it
        # leaves the mempool, so the mempool is read first: an action that is not there any more
        # is already in storage or among the refusals when they are read next.
        if h in self.mempool:
            return ActionStatus(tx_hash=h.hex(), status="pending")
        decided = self.chain.repo.operator_outcome(h)
        if decided is not None:
            status, reason, detail, height = decided
            if reason:
                return ActionStatus(tx_hash=h.hex(), status=status, height=height, reason=reason, detail=detail)
            return ActionStatus(tx_hash=h.hex(), status=status, height=height)
        refused = self.refused.get(h)
        if refused:
            return ActionStatus(tx_hash=h.hex(), status="refused", reason=refused[0], detail=refused[1])
        raise ApiError("unknown_tx", "no such action here")


def provide_operator_desk(node: NamedDependency[Node]) -> OperatorDesk:
    return OperatorDesk(node.chain, node.mempool, node.refused_ops)


class OperatorController(Controller):
    path = "/v1/operator"
    tags = ["operator (signed actions)"]
    dependencies = {"desk": Provide(provide_operator_desk, sync_to_thread=False)}

    # admission is in memory: a signature check and the chain's state
    @post("/actions", status_code=202,
          summary="Submit a signed operator action (enroll charger, open wallet, top up, publish tariff)",
          responses=refusals("malformed", "bad_signature", "duplicate", "busy"))
    async def submit(self, desk: NamedDependency[OperatorDesk], data: JSONBody[ActionSubmission]) -> ActionAccepted:
        return desk.submit(data.tx)

    @get("/actions/{tx_hex:str}", summary="Whether an operator action is committed, pending or refused (operator only)",
         sync_to_thread=True, responses=refusals("unknown_tx", operator_only=True))
    def status(self, request: Request, desk: NamedDependency[OperatorDesk], tx_hex: TxHashHex) -> ActionStatus:
        require_operator(request)  # a signed operator request or the operator token (docs/observability.md)
        return desk.status(bytes.fromhex(tx_hex))
