"""Key rotation by signed operator actions: a charger's key (rotate_charger_key) and an
operator's own key (rotate_operator_key) change from the block after the one that commits the
rotation; a signature by a replaced key is refused `key_rotated`, whatever it signed and when;
committed receipts keep the key they were verified with; the state root covers every rotation
and a restarted node reads them back (SQLite and PostgreSQL)."""

from nacl.signing import SigningKey

from bureau.ingest.admission import Refused, admit_operator, admit_receipt
from bureau.ledger.tx import TxError, operator_action, receipt_tx, tx_hash
from bureau.receipts.codec import decode, seal
from bureau.storage import Repository
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.fleet import WALLET, fleet_receipts
from tests.unit.test_operator_actions import OPERATOR, T0_MS, Ledger, _action, _kinds

NEW_OPERATOR = SigningKey(b"\x09" * 32)


def _hex(key: SigningKey) -> str:
    return key.verify_key.encode().hex()


def _enrolled(repo=None):
    """A ledger with one enrolled charger, an open wallet, and that charger's three receipts."""
    keys, receipts, _ = fleet_receipts(1, 3)
    (cid, key), = keys.items()
    ledger = Ledger(repo, tariffs=(DEFAULT_TARIFF,))  # in force from 0: the receipts start before T0
    ledger.block([_action("enroll_charger", {"charger_id": cid, "public_key": _hex(key)}),
                  _action("open_wallet", {"wallet_id": WALLET, "public_key": "ab" * 32})], T0_MS)
    return ledger, cid, key, [env for _, env in receipts]


def _resealed(envelope: bytes, key: SigningKey) -> bytes:
    receipt, _, _ = decode(envelope)
    return seal(receipt, key)


def test_a_rotated_charger_key_takes_effect_from_the_next_block():
    ledger, cid, old, envs = _enrolled()
    new = SigningKey.generate()
    rotate = _action("rotate_charger_key", {"charger_id": cid, "public_key": _hex(new)})
    # in the rotating block the old key still signs; the new one does not yet
    ex = ledger.block([rotate, receipt_tx(envs[0]), receipt_tx(_resealed(envs[1], new))], T0_MS + 1000)
    assert _kinds(ex) == [("rotate_charger_key", None), ("receipt", None), ("dropped", "bad_signature")]
    assert ledger.state.chargers[cid] == new.verify_key.encode()
    # from the next block: the new key signs, the old key is refused with its reason
    ex = ledger.block([receipt_tx(envs[1]), receipt_tx(_resealed(envs[2], new))], T0_MS + 2000)
    assert _kinds(ex) == [("receipt", None), ("dropped", "key_rotated")]
    assert "until block 2" in ex.refused[0].detail


def test_receipts_signed_before_the_rotation_and_still_in_flight_are_refused():
    """The ledger cannot tell when a receipt was signed (its times and seq are the signer's own
    claims), so after a rotation no signature of the old key is accepted, even one admitted and
    checked at ingest while the old key was current (`verified`)."""
    ledger, cid, old, envs = _enrolled()
    in_flight = receipt_tx(envs[0])
    admitted = admit_receipt(envs[0], ledger.state, cid)
    assert not isinstance(admitted, Refused)  # checked under the old key, waiting for a block
    ledger.block([_action("rotate_charger_key", {"charger_id": cid, "public_key": _hex(SigningKey.generate())})],
                 T0_MS + 1000)
    ex = ledger.state.execute([in_flight], T0_MS + 2000, verified={tx_hash(in_flight)})
    assert [r.reason for r in ex.refused] == ["key_rotated"]
    refused = admit_receipt(envs[0], ledger.state, cid)
    assert isinstance(refused, Refused) and refused.reason == "key_rotated"


def test_rotation_is_refused_for_unknown_retired_or_reused_keys():
    ledger, cid, old, envs = _enrolled()
    new = SigningKey.generate()
    ex = ledger.block([
        _action("rotate_charger_key", {"charger_id": "NOBODY", "public_key": _hex(new)}),
        _action("rotate_charger_key", {"charger_id": cid, "public_key": _hex(old)}),
        _action("rotate_charger_key", {"charger_id": cid, "public_key": "ab"}),
        _action("rotate_charger_key", {"charger_id": cid, "public_key": _hex(new)}),
        _action("rotate_charger_key", {"charger_id": cid, "public_key": _hex(SigningKey.generate())}),
    ], T0_MS + 1000)
    assert _kinds(ex) == [("refused_action", "unknown_charger"), ("refused_action", "key_reused"),
                          ("refused_action", "malformed"), ("rotate_charger_key", None),
                          ("refused_action", "rotation_pending")]
    ex = ledger.block([_action("rotate_charger_key", {"charger_id": cid, "public_key": _hex(old)}),
                       _action("retire_charger", {"charger_id": cid})], T0_MS + 2000)
    assert _kinds(ex) == [("refused_action", "key_reused"), ("retire_charger", None)]
    ex = ledger.block([_action("rotate_charger_key", {"charger_id": cid, "public_key": _hex(SigningKey.generate())})],
                      T0_MS + 3000)
    assert _kinds(ex) == [("refused_action", "charger_retired")]


def test_an_operator_rotates_its_own_key_and_the_old_one_is_refused_from_then_on():
    ledger = Ledger()
    rotate = _action("rotate_operator_key", {"public_key": _hex(NEW_OPERATOR)})
    by_new_too_soon = operator_action(NEW_OPERATOR, "operator-1", "open_wallet",
                                      {"wallet_id": "W-2", "public_key": "ab" * 32}, now=T0_MS // 1000)
    ex = ledger.block([rotate, _action("open_wallet", {"wallet_id": "W-1", "public_key": "ab" * 32}),
                       by_new_too_soon], T0_MS)
    assert _kinds(ex) == [("rotate_operator_key", None), ("open_wallet", None), ("dropped", "bad_signature")]
    assert ledger.state.operators["operator-1"] == NEW_OPERATOR.verify_key.encode()
    by_old = _action("open_wallet", {"wallet_id": "W-3", "public_key": "ab" * 32}, T0_MS + 1000)
    by_new = operator_action(NEW_OPERATOR, "operator-1", "open_wallet",
                             {"wallet_id": "W-4", "public_key": "ab" * 32}, now=(T0_MS + 1000) // 1000)
    ex = ledger.block([by_old, by_new], T0_MS + 1000)
    assert _kinds(ex) == [("open_wallet", None), ("dropped", "key_rotated")]
    assert sorted(ledger.state.wallets) == ["W-1", "W-4"]
    try:
        admit_operator(by_old, ledger.state, now_s=(T0_MS + 1000) // 1000)
    except TxError as e:
        assert e.reason == "key_rotated"
    else:
        raise AssertionError("the API took an action signed with a rotated operator key")
    # back to the first key is a reuse; the old key cannot even sign its own rotation any more
    back = operator_action(NEW_OPERATOR, "operator-1", "rotate_operator_key", {"public_key": _hex(OPERATOR)},
                           now=(T0_MS + 2000) // 1000)
    assert _kinds(ledger.block([back], T0_MS + 2000)) == [("refused_action", "key_reused")]


def test_the_state_root_covers_rotations_and_a_restart_reads_them_back(database_urls):
    url = database_urls("rotation")
    ledger, cid, old, envs = _enrolled(Repository(url))
    same_blocks, _, _, _ = _enrolled()  # the same chain without the rotations
    new = SigningKey.generate()
    ledger.block([receipt_tx(envs[0]), _action("rotate_charger_key", {"charger_id": cid, "public_key": _hex(new)}),
                  _action("rotate_operator_key", {"public_key": _hex(NEW_OPERATOR)})], T0_MS + 1000)
    same_blocks.block([receipt_tx(envs[0])], T0_MS + 1000)
    assert ledger.state.state_root != same_blocks.state.state_root
    again = Ledger(Repository(url), tariffs=(DEFAULT_TARIFF,))
    s = again.state
    assert s.state_root == ledger.state.state_root
    assert s.chargers[cid] == new.verify_key.encode() and s.operators["operator-1"] == NEW_OPERATOR.verify_key.encode()
    assert s.charger_key_at(cid, 2) == old.verify_key.encode()  # the receipt of block 2 verifies with it
    assert s.charger_key_at(cid, 3) == new.verify_key.encode()
    ex = again.block([receipt_tx(envs[1]), receipt_tx(_resealed(envs[2], new))], T0_MS + 2000)
    assert _kinds(ex) == [("receipt", None), ("dropped", "key_rotated")]
