"""The audit of a stored chain on SQLite and PostgreSQL, in one process and on worker processes:
both find the same first problem at the same height (a receipt whose bad signature a block
holds, a header whose state root is not the replayed one, a certificate short of +2/3), both
verify a chain whose charger rotated its key, and neither trusts the database's key tables."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey

from bureau.chain import Chain
from bureau.ledger.audit import audit_chain, check_block, _keys
from bureau.ledger.block import Block
from bureau.ledger.genesis import Genesis
from bureau.ledger.tx import operator_action, receipt_tx, tx_hash
from bureau.receipts.codec import decode, seal
from bureau.storage import Repository
from bureau.storage import tables as t
from tests.support.fleet import WALLET, fleet_receipts
from tests.support.proofchain import OPERATOR, certificate, genesis_doc

BLOCKS = 12  # receipt blocks after the setup block
ROTATED_AT = 5  # the block that rotates the key of charger FL-000
TAMPERED_AT = 8


def build_chain(url: str, fault: str | None = None) -> tuple[Genesis, Repository]:
    """Block 1 enrolls three chargers and funds the wallet; blocks 2.. hold three receipts each;
    block ROTATED_AT also rotates FL-000's key, whose later receipts are signed with the new one.
    `fault` puts one flaw into block TAMPERED_AT, committed as a node that trusted it would."""
    doc = genesis_doc("ev-audit-test")
    genesis = Genesis.from_doc(doc)
    chain = Chain(genesis, Repository(url))
    keys, receipts, _ = fleet_receipts(3, BLOCKS)
    new_key = SigningKey.generate()
    now = int(time.time())

    def act(action: str, args: dict) -> bytes:
        return operator_action(OPERATOR, "operator-1", action, args, now=now)
    setup = [act("enroll_charger", {"charger_id": c, "public_key": k.verify_key.encode().hex()}) for c, k in keys.items()]
    setup += [act("open_wallet", {"wallet_id": WALLET, "public_key": SigningKey.generate().verify_key.encode().hex()}),
              act("top_up", {"wallet_id": WALLET, "amount_fen": 10**8, "reference": "bank:audit"})]
    per_block = [[] for _ in range(BLOCKS)]
    for i, (cid, env) in enumerate(receipts):
        height = i // 3 + 2
        if cid == "FL-000" and height > ROTATED_AT:
            env = seal(decode(env)[0], new_key)
        per_block[i // 3].append(receipt_tx(env))
    blocks = [setup, *per_block]
    blocks[ROTATED_AT - 1].append(act("rotate_charger_key", {"charger_id": "FL-000",
                                                            "public_key": new_key.verify_key.encode().hex()}))
    for height, txs in enumerate(blocks, start=1):
        verified = frozenset()
        if height == TAMPERED_AT and fault == "receipt_signature":
            bad = next(i for i, tx in enumerate(txs) if b"FL-001" in tx)  # a charger never rotated
            txs[bad] = txs[bad][:-1] + bytes([txs[bad][-1] ^ 1])
            verified = frozenset({tx_hash(txs[bad])})
        block, ex = chain.build(txs, "bureau-1", now * 1000 + height, verified)
        assert len(block.txs) == len(txs)
        if height == TAMPERED_AT and fault == "state_root":
            block = Block(replace(block.header, state_root=bytes(32)), block.txs)
        chain.commit(block, certificate(doc["chain_id"], height, block.hash), ex)
    if fault == "certificate":  # two of the four validators: short of +2/3 of the power
        block_hash = chain.repo.header(TAMPERED_AT)[0].hash
        with chain.repo.engine.begin() as conn:
            conn.execute(t.blocks.update().where(t.blocks.c.height == TAMPERED_AT)
                         .values(certificate=certificate(doc["chain_id"], TAMPERED_AT, block_hash, signers=(0, 1))))
    return genesis, chain.repo


@pytest.mark.parametrize("fault, problem", [
    ("receipt_signature", "invalid transaction: bad_signature"),
    ("state_root", "replayed state root differs from the header"),
    ("certificate", "insufficient_power"),
])
def test_each_flaw_is_found_at_its_height_in_one_process_and_on_two(database_urls, fault, problem):
    genesis, repo = build_chain(database_urls(fault), fault)
    try:
        one, two = audit_chain(genesis, repo), audit_chain(genesis, repo, jobs=2)
    finally:
        repo.close()
    assert one == two
    assert not one["chain_valid"] and one["blocks"] == TAMPERED_AT - 1 and one["height"] == TAMPERED_AT - 1
    assert one["problem"].startswith(f"block {TAMPERED_AT}: ") and problem in one["problem"], one["problem"]


def test_a_sound_chain_verifies_alike_and_key_tables_are_not_trusted(database_urls):
    genesis, repo = build_chain(database_urls("sound"))
    try:
        progress = []
        one = audit_chain(genesis, repo)
        two = audit_chain(genesis, repo, jobs=2, progress=lambda *a: progress.append(a))
        assert one == two and one["chain_valid"], one["problem"]
        assert one["blocks"] == BLOCKS + 1 and one["receipts"] == 3 * BLOCKS
        assert progress[-1] == (BLOCKS + 1, BLOCKS + 1, 3 * BLOCKS)
        assert [p[0] for p in progress] == sorted(p[0] for p in progress)

        # The workers check a rotated charger's receipts with the key of their height.
        keys = _keys(genesis, repo)
        for height, expect in ((ROTATED_AT, 3), (ROTATED_AT + 1, 3)):
            assert len(check_block(genesis, keys, *repo.block(height)).receipt_keys) == expect

        # Wrong keys in the key tables: the workers' checks fail, the replay checks them itself.
        with repo.engine.begin() as conn:
            conn.execute(t.chargers.update().values(public_key=SigningKey.generate().verify_key.encode()))
            conn.execute(t.charger_keys.update().values(public_key=SigningKey.generate().verify_key.encode()))
            assert conn.execute(sa.select(sa.func.count()).select_from(t.charger_keys)).scalar_one() == 1
        assert audit_chain(genesis, repo, jobs=2) == one
    finally:
        repo.close()


def test_blocks_are_read_in_batches_as_one_by_one_and_end_at_the_first_height_not_held(database_urls):
    genesis, repo = build_chain(database_urls("batches"))
    try:
        one_by_one = [repo.block(height) for height in range(1, BLOCKS + 2)]
        assert list(repo.blocks(1, batch=5)) == one_by_one
        assert list(repo.blocks(3, 9, batch=2)) == one_by_one[2:9]
        assert list(repo.blocks(BLOCKS, BLOCKS + 10, batch=4)) == one_by_one[BLOCKS - 1:]
        assert list(repo.blocks(BLOCKS + 2)) == []
    finally:
        repo.close()
