"""Binding a phone to a wallet: the phone's `bind_phone` transaction (docs/ledger.md), signed with
the binding key of the code the driver typed, so the request needs no other credential."""

from __future__ import annotations

import msgspec
from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from ..ledger.tx import KIND_DRIVER
from ..node import Node
from .errors import refusals
from .operator import admit_signed_hex


class BindSubmission(msgspec.Struct):
    tx: str  # hex of a signed driver transaction, kind 3 (docs/ledger.md)


class BindAccepted(msgspec.Struct):
    tx_hash: str
    status: str  # "pending": poll GET /v1/wallets/{id}, signed with the new key, until it answers


class BindController(Controller):
    path = "/v1/driver"
    tags = ["driver"]

    # admission is in memory: a signature check and the chain's state
    @post("/bind", status_code=202, summary="Bind a phone's key to a wallet with a binding code's signed transaction",
          responses=refusals("malformed", "unsupported_version", "wrong_chain", "no_binding_code", "binding_expired",
                             "bad_signature", "expired", "too_early", "duplicate", "busy"))
    async def bind(self, node: NamedDependency[Node], data: JSONBody[BindSubmission]) -> BindAccepted:
        _, h = admit_signed_hex(data.tx, KIND_DRIVER, "a driver transaction", node.chain, node.mempool)
        return BindAccepted(tx_hash=h.hex(), status="pending")
