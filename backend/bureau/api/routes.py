"""Controllers: thin; they read the node's chain and storage and map errors."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody, Parameter

from ..ledger import merkle
from ..ledger.block import Header
from ..ledger.state import LedgerState
from ..ingest.admission import admit_operator
from ..ledger.tx import KIND_OPERATOR, TxError, decode_operator, tx_hash
from ..ingest.mempool import MempoolFull
from ..receipts.codec import decode as decode_receipt
from . import auth
from .errors import ApiError, Busy, Forbidden, NotFound, domain_error


MAX_I64 = 2**63 - 1  # heights and entry ids are SQL BIGINTs
MAX_SEQ = 2**32 - 1  # a receipt's seq is a u32 (docs/receipt-v1.md)
Height = Annotated[int, Parameter(ge=1, le=MAX_I64, description="block height, 1..2^63-1")]
Seq = Annotated[int, Parameter(ge=1, le=MAX_SEQ, description="receipt seq, 1..2^32-1")]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def header_json(h: Header) -> dict[str, Any]:
    return {"version": h.version, "chain_id": h.chain_id, "height": h.height, "hash": h.hash.hex(),
            "prev_hash": h.prev_hash.hex(), "time_ms": h.time_ms, "time": _iso(h.time_ms), "tx_root": h.tx_root.hex(),
            "state_root": h.state_root.hex(), "proposer": h.proposer, "tx_count": h.tx_count,
            "encoded": h.encode().hex()}


def _driver(request: Request, state: LedgerState) -> str:
    node = request.app.state.node
    path_qs = request.url.path + (f"?{request.url.query}" if request.url.query else "")

    def key_of(wallet_id: str):
        w = state.wallets.get(wallet_id)
        return w.public_key if w else None
    return auth.check(request.headers.get("authorization"), request.method, path_qs, key_of, node.replay_guard,
                      node.settings.node_id)


def _own_wallet(request: Request, wallet_id: str) -> None:
    state = request.app.state.node.chain.state
    who = _driver(request, state)
    if who != wallet_id:
        raise Forbidden("not_your_wallet", "a driver reads only their own wallet")


class ChainController(Controller):
    path = "/v1"
    tags = ["chain"]

    @get("/chain/head", summary="Latest committed block")
    async def head(self, request: Request) -> dict[str, Any]:
        chain = request.app.state.node.chain
        found = chain.repo.header(chain.height) if chain.height else None
        out = {"chain_id": chain.genesis.chain_id, "height": chain.height, "genesis_hash": chain.genesis.hash.hex(),
               "state_root": chain.state.state_root.hex()}
        if found:
            out["header"] = header_json(found[0])
        return out

    @get("/blocks/{height:int}", summary="A committed block: header, commit certificate, transaction hashes")
    async def block(self, request: Request, height: Height) -> dict[str, Any]:
        found = request.app.state.node.chain.repo.block(height)
        if found is None:
            raise NotFound("no_block", f"no block at height {height}")
        block, cert = found
        return {"header": header_json(block.header), "certificate": cert.decode(),
                "txs": [tx_hash(t).hex() for t in block.txs]}

    @get("/genesis", summary="The genesis document (validator set to check certificates with)")
    async def genesis(self, request: Request) -> dict[str, Any]:
        return request.app.state.node.chain.genesis.doc

    @get("/chargers", summary="The chargers enrolled and not retired, at a height")
    async def chargers(self, request: Request) -> dict[str, Any]:
        chain = request.app.state.node.chain
        with chain.lock:
            return {"height": chain.state.height, "chargers": chain.state.active_chargers()}

    @get("/chargers/{charger_id:str}", summary="An enrolled charger's public key, and whether it is retired")
    async def charger(self, request: Request, charger_id: FromPath[str]) -> dict[str, Any]:
        state = request.app.state.node.chain.state
        key = state.chargers.get(charger_id)
        if key is None:
            raise NotFound("unknown_charger", f"charger {charger_id} is not enrolled")
        return {"charger_id": charger_id, "public_key": key.hex(), "retired": charger_id in state.retired}

    @get("/tariffs/{tariff_id:str}", summary="The latest version of a tariff")
    async def tariff(self, request: Request, tariff_id: FromPath[str]) -> dict[str, Any]:
        t = request.app.state.node.chain.state.latest_tariff(tariff_id)
        if t is None:
            raise NotFound("unknown_tariff", f"tariff {tariff_id} is not published")
        return t.to_doc()


class WalletController(Controller):
    path = "/v1/wallets"
    tags = ["wallets (driver-signed)"]

    @get("/{wallet_id:str}", summary="Balance of the caller's wallet, O(1)")
    async def balance(self, request: Request, wallet_id: FromPath[str]) -> dict[str, Any]:
        _own_wallet(request, wallet_id)
        chain = request.app.state.node.chain
        w = chain.state.wallets[wallet_id]
        return {"wallet_id": wallet_id, "balance_fen": w.balance, "height": chain.height}

    @get("/{wallet_id:str}/history", summary="Entries of the caller's wallet, newest first")
    async def history(self, request: Request, wallet_id: FromPath[str],
                      limit: int = Parameter(default=50, ge=1, le=500),
                      before: int | None = Parameter(default=None, ge=1, le=MAX_I64)) -> dict[str, Any]:
        _own_wallet(request, wallet_id)
        rows = request.app.state.node.chain.repo.wallet_history(wallet_id, limit, before)
        return {"wallet_id": wallet_id, "entries": [{
            "id": r.id, "kind": r.kind, "delta_fen": r.delta_fen, "balance_after": r.balance_after,
            "height": r.height, "index": r.idx, "tx_hash": bytes(r.tx_hash).hex(), "charger_id": r.charger_id,
            "seq": r.seq, "energy_wh": r.energy_wh, "time": _iso(r.time_ms)} for r in rows]}


class ReceiptController(Controller):
    path = "/v1/receipts"
    tags = ["receipts (driver-signed)"]

    @get("/{charger_id:str}/{seq:int}/proof",
         summary="A bill with everything a phone needs to check it: receipt, charger key, Merkle path, header, certificate")
    async def proof(self, request: Request, charger_id: FromPath[str], seq: Seq) -> dict[str, Any]:
        node = request.app.state.node
        chain = node.chain
        who = _driver(request, chain.state)
        loc = chain.repo.receipt_location(charger_id, seq)
        if loc is None or loc.wallet_id != who:
            # the same answer for "absent" and "someone else's": a driver learns nothing of others
            raise NotFound("no_receipt", f"no committed receipt {charger_id}#{seq} in your wallet")
        block, cert = chain.repo.block(loc.height)
        leaves = block.leaf_hashes()
        envelope = block.txs[loc.idx][1:]
        r, _, _ = decode_receipt(envelope)
        return {
            "receipt": {"envelope": envelope.hex(), "receipt_id": loc.receipt_id, "charger_id": r.charger_id,
                        "seq": r.seq, "wallet_id": r.wallet_id, "energy_wh": r.energy_wh,
                        "amount_fen": r.amount_fen, "start_time": r.start_time, "end_time": r.end_time,
                        "stop_reason": r.stop_reason, "periods": [list(p) for p in r.periods],
                        "tariff_id": r.tariff_id, "tariff_version": r.tariff_version},
            "charger_public_key": chain.state.chargers[charger_id].hex(),
            "leaf_index": loc.idx, "tree_size": len(leaves),
            "audit_path": [p.hex() for p in merkle.audit_path(leaves, loc.idx)],
            "header": header_json(block.header), "certificate": cert.decode(),
        }


class OperatorController(Controller):
    path = "/v1/operator"
    tags = ["operator (signed actions)"]

    @post("/actions", status_code=202,
          summary="Submit a signed operator action (enroll charger, open wallet, top up, publish tariff)")
    async def submit(self, request: Request, data: JSONBody[dict[str, str]]) -> dict[str, Any]:
        node = request.app.state.node
        try:
            tx = bytes.fromhex(data.get("tx", ""))
        except ValueError:
            raise ApiError("malformed", "tx must be hex") from None
        if not tx or tx[0] != KIND_OPERATOR:
            raise ApiError("malformed", "tx is not an operator action")
        try:
            h = admit_operator(tx, node.chain.state)
        except TxError as e:
            raise domain_error(e) from None
        op = decode_operator(tx)
        try:
            node.mempool.add(h, tx, verified=True)
        except MempoolFull as e:
            raise Busy("busy", str(e)) from None
        return {"tx_hash": h.hex(), "status": "pending", "action": op.action}

    @get("/actions/{tx_hex:str}", summary="Whether an operator action is committed, pending or refused")
    async def status(self, request: Request,
                     tx_hex: Annotated[str, Parameter(pattern="^[0-9a-f]{64}$")]) -> dict[str, Any]:
        node = request.app.state.node
        h = bytes.fromhex(tx_hex)
        decided = node.chain.repo.operator_outcome(h)
        if decided is not None:
            status, reason, detail = decided
            return {"tx_hash": tx_hex, "status": status, **({"reason": reason, "detail": detail} if reason else {})}
        if h in node.mempool:
            return {"tx_hash": tx_hex, "status": "pending"}
        refused = node.refused_ops.get(h)
        if refused:
            return {"tx_hash": tx_hex, "status": "refused", "reason": refused[0], "detail": refused[1]}
        raise NotFound("unknown_tx", "no such action here")
