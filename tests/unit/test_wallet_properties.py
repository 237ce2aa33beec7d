"""Wallet totals, as a property: after any run of blocks mixing top-ups, charges (some above the
balance), duplicate payments and resent receipts, every wallet's balance equals the sum of its
committed transactions' amounts: in memory, in the stored entries, and after a restart reads
the state back. And after every block each wallet's balance proof verifies against the state
root, while a proof of any other balance does not."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from hypothesis import HealthCheck, given, settings, strategies as st
from nacl.signing import SigningKey

from bureau.ledger.stateproof import verify_state_proof
from bureau.ledger.tariff import Tariff
from bureau.ledger.tx import receipt_tx
from bureau.receipts.codec import Receipt, seal
from bureau.storage import Repository
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.fleet import FLEET_START
from tests.unit.test_operator_actions import T0_MS, Ledger, _action

TARIFF = Tariff.from_doc(DEFAULT_TARIFF)
WALLETS = ("W-A", "W-B", "W-C")
CHARGER = "PROP-1"
KEY = SigningKey(hashlib.sha256(b"wallet-properties").digest())

# one step: ("top_up", wallet, fen, reference number) or ("charge", wallet, Wh) or ("resend",)
steps = st.lists(st.one_of(
    st.tuples(st.just("top_up"), st.sampled_from(WALLETS), st.integers(1, 50_000), st.integers(0, 5)),
    st.tuples(st.just("charge"), st.sampled_from(WALLETS), st.integers(1, 40_000)),
    st.tuples(st.just("resend"))), min_size=1, max_size=30)


def _receipt(seq: int, wallet: str, wh: int) -> bytes:
    r = Receipt(charger_id=CHARGER, seq=seq, session_id=seq.to_bytes(16, "big"), auth_method=2, id_token="",
                wallet_id=wallet, authorized_fen=10**6, auth_ref=f"p{seq}", start_time=FLEET_START + seq * 7200,
                end_time=FLEET_START + seq * 7200 + 1800, time_flags=3, meter_serial="M-PROP",
                meter_start_wh=seq * 10**6, meter_end_wh=seq * 10**6 + wh, meter_status=0, stop_reason="L",
                tariff_id="GD-2026-A", tariff_version=1, periods=(), amount_fen=0, firmware_version="fw-1.0.0")
    periods = ((TARIFF.kind_at(r.end_time), wh),)
    return seal(replace(r, periods=periods, amount_fen=TARIFF.amount_fen(periods)), KEY)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps, block_size=st.integers(1, 6))
def test_every_wallet_balance_is_the_sum_of_its_committed_transactions(tmp_path_factory, steps, block_size):
    url = f"sqlite:///{tmp_path_factory.mktemp('wallets') / 'ledger.db'}"
    repo = Repository(url)
    ledger = Ledger(repo, tariffs=(DEFAULT_TARIFF,))  # in force from 0: the receipts start before T0
    ledger.block([_action("enroll_charger", {"charger_id": CHARGER, "public_key": KEY.verify_key.encode().hex()})]
                 + [_action("open_wallet", {"wallet_id": w, "public_key": "ab" * 32}) for w in WALLETS], T0_MS)
    committed = dict.fromkeys(WALLETS, 0)
    model = dict.fromkeys(WALLETS, 0)  # what the steps mean, worked out without the ledger
    credited: set[int] = set()
    txs, sent, seq = [], [], 0
    for step in steps:
        if step[0] == "top_up":
            _, wallet, fen, ref = step
            txs.append(_action("top_up", {"wallet_id": wallet, "amount_fen": fen, "reference": f"bank:{ref}"}))
            if ref not in credited:  # a payment reference is credited once
                credited.add(ref)
                model[wallet] += fen
        elif step[0] == "charge":
            seq += 1
            sent.append(receipt_tx(_receipt(seq, step[1], step[2])))
            txs.append(sent[-1])
            model[step[1]] -= TARIFF.amount_fen(((TARIFF.kind_at(FLEET_START + seq * 7200 + 1800), step[2]),))
        elif sent:
            txs.append(sent[-1])  # a charger resending what it has not seen acked
    time_ms = T0_MS
    for i in range(0, len(txs), block_size):
        time_ms += 1000
        ex = ledger.block(txs[i:i + block_size], time_ms)
        for e in ex.effects:
            if e.wallet_id is not None:
                committed[e.wallet_id] += e.delta_fen
        _check_balance_proofs(ledger.state)
    assert committed == model
    for w in WALLETS:
        assert ledger.state.wallets[w].balance == committed[w]
        stored = repo.wallet_history(w, limit=1000)
        assert sum(r.delta_fen for r in stored) == committed[w]
        if stored:
            assert stored[0].balance_after == committed[w]  # the newest entry carries the balance
    restarted = Ledger(Repository(url), tariffs=(DEFAULT_TARIFF,))
    assert {w: restarted.state.wallets[w].balance for w in WALLETS} == committed
    assert restarted.state.state_root == ledger.state.state_root


def _check_balance_proofs(state) -> None:
    root = state.state_root
    for w in WALLETS:
        proof = state.snapshot.state_map.prove(f"w/{w}")
        assert verify_state_proof(root, proof)[0], proof
        record = json.loads(proof["value"])
        assert record["balance_fen"] == state.wallets[w].balance
        forged = json.loads(proof["value"])
        forged["balance_fen"] += 1  # the same record with another balance
        tampered = {**proof, "value": json.dumps(forged, separators=(",", ":"), sort_keys=True)}
        assert not verify_state_proof(root, tampered)[0]
        other = {**proof, "key": f"w/{WALLETS[(WALLETS.index(w) + 1) % len(WALLETS)]}"}
        assert not verify_state_proof(root, other)[0]  # another wallet's key with this one's record
