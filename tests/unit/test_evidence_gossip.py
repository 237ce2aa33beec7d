"""Equivocation evidence (kind 5) travels between bureaus: a node relays what its core saw as a
local transaction, and the bureau it reaches admits it from the peer link (ingest/admission.py
admit_signed, by the ledger's own check) into its mempool, so whichever bureau proposes next
records it. Forged, misdirected and already recorded evidence is refused with its reason."""

import pytest
from nacl.signing import SigningKey

from bureau.chain import Chain
from bureau.consensus.types import Step, Vote, vote_sign_bytes
from bureau.ingest.admission import admit_signed
from bureau.ingest.mempool import Mempool
from bureau.ingest.mqtt import MqttIngest
from bureau.ledger import evidence
from bureau.ledger.tx import TxError
from bureau.metrics import Metrics
from bureau.ledger.genesis import Genesis
from bureau.storage import Repository
from tests.support.proofchain import VALIDATORS, certificate, genesis_doc


def _vote(chain_id: str, index: int, block_hash: bytes, key: SigningKey | None = None) -> Vote:
    key = key or VALIDATORS[index]
    return Vote(Step.PREVOTE, 1, 0, block_hash, index,
                key.sign(vote_sign_bytes(chain_id, Step.PREVOTE, 1, 0, block_hash)).signature)


def _reason(tx, state) -> str:
    with pytest.raises(TxError) as e:
        admit_signed(tx, state)
    return e.value.reason


def test_relayed_evidence_is_admitted_and_the_next_block_records_it(tmp_path):
    doc = genesis_doc("ev-gossip")
    chain = Chain(Genesis.from_doc(doc), Repository(f"sqlite:///{tmp_path}/chain.sqlite"))
    cid = doc["chain_id"]
    tx = evidence.encode(_vote(cid, 1, b"\x01" * 32), _vote(cid, 1, bytes(32)))
    forged = evidence.encode(_vote(cid, 1, b"\x02" * 32, SigningKey(b"\x44" * 32)), _vote(cid, 1, bytes(32)))
    assert _reason(forged, chain.state) == "bad_signature"
    assert _reason(evidence.encode(_vote(cid, 9, b"\x03" * 32, VALIDATORS[0]), _vote(cid, 9, bytes(32), VALIDATORS[0])),
                   chain.state) == "unknown_validator"
    mempool, metrics = Mempool(100), Metrics()
    ingest = MqttIngest(chain, mempool, metrics, node_id="bureau-1", signing_key=VALIDATORS[0], host="127.0.0.1",
                        port=1, client_id="ingest")  # never started: the peer link's handler alone
    ingest.handle_relayed(tx)
    ingest.handle_relayed(forged)
    assert tx in [t for _, t in mempool.peek(10)] and len(mempool) == 1
    # the bureau's next proposal holds it, and then it is recorded: the same evidence again is refused
    txs, verified = mempool.candidates(10)
    block, ex = chain.build(txs, "bureau-1", doc["genesis_time_ms"] + 1000, verified)
    assert [e.kind for e in ex.effects] == ["evidence"]
    chain.commit(block, certificate(cid, block.height, block.hash), ex)
    assert chain.state.state_map.get("e/bureau-2/1/0/2") is not None
    assert _reason(tx, chain.state) == "evidence_recorded"
    chain.repo.close()
