"""A small chain of four validators built in process by the project's code, with five receipts of
one charger in one block: for the tests that check bills as a driver would."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec
from nacl.signing import SigningKey

from bureau.api.receipts import ReceiptProver
from bureau.chain import Chain
from bureau.ledger.certificate import Certificate, precommit_bytes
from bureau.ledger.genesis import Genesis
from bureau.ledger.tx import operator_action, receipt_tx
from bureau.storage import Repository
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.fleet import WALLET, fleet_receipts

VALIDATORS = [SigningKey(bytes([0x20 + i]) * 32) for i in range(4)]
OPERATOR = SigningKey(b"\x07" * 32)
DRIVER = SigningKey(b"\x09" * 32)
RECEIPTS = 5


def genesis_doc(chain_id: str = "ev-doc-test") -> dict:
    return {"v": 1, "chain_id": chain_id, "genesis_time_ms": 1_700_000_000_000,
            "validators": [{"id": f"bureau-{i + 1}", "public_key": k.verify_key.encode().hex(), "power": 1,
                            "address": "", "api": ""} for i, k in enumerate(VALIDATORS)],
            "operators": [{"id": "operator-1", "public_key": OPERATOR.verify_key.encode().hex()}],
            "tariffs": [DEFAULT_TARIFF]}


def certificate(chain_id: str, height: int, block_hash: bytes, signers=(0, 1, 3)) -> bytes:
    """Precommits of three of the four validators: just over 2/3 of the power."""
    sigs = tuple(sorted((f"bureau-{i + 1}", VALIDATORS[i].sign(precommit_bytes(chain_id, height, 0, block_hash)).signature)
                        for i in signers))
    return Certificate(height, 0, block_hash, sigs).encode()


def proof_chain(folder: Path) -> tuple[Chain, dict, str]:
    """(chain, its genesis document, the charger id): block 1 enrolls the charger and opens and
    tops up the wallet WALLET (key DRIVER); block 2 holds the charger's receipts seq 1..5."""
    doc = genesis_doc()
    chain = Chain(Genesis.from_doc(doc), Repository(f"sqlite:///{folder}/chain.sqlite"))
    keys, receipts, _ = fleet_receipts(1, RECEIPTS)
    (cid, ckey), = keys.items()
    now = int(time.time())

    def act(action: str, args: dict) -> bytes:
        return operator_action(OPERATOR, "operator-1", action, args, now=now)
    blocks = [[act("enroll_charger", {"charger_id": cid, "public_key": ckey.verify_key.encode().hex()}),
               act("open_wallet", {"wallet_id": WALLET, "public_key": DRIVER.verify_key.encode().hex()}),
               act("top_up", {"wallet_id": WALLET, "amount_fen": 10**6, "reference": "bank:doc"})],
              [receipt_tx(env) for _, env in receipts]]
    for i, txs in enumerate(blocks):
        block, ex = chain.build(txs, "bureau-1", now * 1000 + i)
        assert len(block.txs) == len(txs)
        chain.commit(block, certificate(doc["chain_id"], block.height, block.hash), ex)
    return chain, doc, cid


def receipt_proof(chain: Chain, charger_id: str, seq: int) -> dict:
    """The proof JSON exactly as GET /v1/receipts/{charger}/{seq}/proof answers it."""
    return json.loads(msgspec.json.encode(ReceiptProver(chain).proof(WALLET, charger_id, seq)))


def state_answer(chain: Chain, key: str) -> dict:
    """The answer of GET /v1/state/proof?key=<key>, as the wallet's driver gets it."""
    from bureau.api.state import StateProver
    return json.loads(msgspec.json.encode(StateProver(chain).proof(WALLET, key)))
