"""The billing rules of the ledger (docs/ledger.md, Applying a receipt): one bill per charging
session, meter readings that never run back on one charger's meter, period energies the
session's time span can hold, and no session ending in the future; admission refuses the same,
the state root covers the new state and a restarted node reads it back."""

from dataclasses import replace

from nacl.signing import SigningKey

from bureau.ingest.admission import Admitted, Refused, admit_receipt
from bureau.ledger import records
from bureau.ledger.history import SEQ_WINDOW
from bureau.ledger.state import CLOCK_ALLOWANCE_S, MAX_RECEIPT_AGE_S, METER_REPLACED
from bureau.ledger.tariff import Tariff
from bureau.ledger.tx import receipt_tx
from bureau.receipts.codec import ReceiptError, decode, receipt_id, seal
from bureau.storage import Repository
from bureau.tools.network import DEFAULT_TARIFF
from tests.support.fleet import FLEET_START, WALLET, fleet_receipts
from tests.unit.test_operator_actions import T0_MS, Ledger, _action, _kinds

TARIFF = Tariff.from_doc(DEFAULT_TARIFF)
LOCAL_DAY = FLEET_START - 8 * 3600  # a local (UTC+8) midnight before the block times


def _enrolled(repo=None):
    """A ledger with one enrolled charger and an open wallet, the charger's key and receipts."""
    keys, receipts, _ = fleet_receipts(1, 3)
    (cid, key), = keys.items()
    ledger = Ledger(repo, tariffs=(DEFAULT_TARIFF,))  # in force from 0: the receipts start before T0
    ledger.block([_action("enroll_charger", {"charger_id": cid, "public_key": key.verify_key.encode().hex()}),
                  _action("open_wallet", {"wallet_id": WALLET, "public_key": "ab" * 32})], T0_MS)
    return ledger, key, [env for _, env in receipts]


def _changed(envelope: bytes, key: SigningKey, **fields) -> bytes:
    """The receipt with `fields` replaced, its amount recomputed and signed again."""
    r = replace(decode(envelope)[0], **fields)
    return seal(replace(r, amount_fen=TARIFF.amount_fen(r.periods)), key)


def _kind(envelope: bytes) -> int:
    return decode(envelope)[0].periods[0][0]


def _span(envelope: bytes, key: SigningKey, start: int, end: int, periods) -> bytes:
    r = decode(envelope)[0]
    return _changed(envelope, key, start_time=start, end_time=end, periods=periods,
                    meter_end_wh=r.meter_start_wh + sum(wh for _, wh in periods))


def test_a_session_is_billed_once_whatever_seq_it_comes_under():
    ledger, key, envs = _enrolled()
    first = decode(envs[0])[0]
    again = _changed(envs[1], key, session_id=first.session_id)
    ex = ledger.block([receipt_tx(envs[0]), receipt_tx(again)], T0_MS + 1000)  # within one block
    assert _kinds(ex) == [("receipt", None), ("dropped", "session_billed")]
    ex = ledger.block([receipt_tx(again), receipt_tx(envs[1])], T0_MS + 2000)  # and across blocks
    assert _kinds(ex) == [("receipt", None), ("dropped", "session_billed")]
    # admission leaves the session to the block's one batched lookup; the block's refusal names
    # the charger and seq its reply goes to
    third = _changed(envs[2], key, session_id=first.session_id)
    assert isinstance(admit_receipt(third, ledger.state, first.charger_id), Admitted)
    ex = ledger.block([receipt_tx(third)], T0_MS + 3000)
    assert _kinds(ex) == [("dropped", "session_billed")]
    assert (ex.refused[0].charger_id, ex.refused[0].seq) == (first.charger_id, 3)


def test_a_meter_never_starts_below_its_last_end_reading_unless_the_meter_was_replaced():
    ledger, key, envs = _enrolled()
    first = decode(envs[0])[0]
    ledger.block([receipt_tx(envs[0])], T0_MS + 1000)
    behind = _changed(envs[1], key, meter_start_wh=first.meter_end_wh - 1, meter_end_wh=first.meter_end_wh + 500,
                      periods=((_kind(envs[1]), 501),))
    assert _kinds(ledger.block([receipt_tx(behind)], T0_MS + 2000)) == [("dropped", "meter_rollback")]
    refused = admit_receipt(behind, ledger.state, first.charger_id)
    assert isinstance(refused, Refused) and refused.reason == "meter_rollback"
    other_meter = _changed(envs[1], key, meter_serial="M-OTHER", meter_start_wh=0, meter_end_wh=501,
                           periods=((_kind(envs[1]), 501),))
    replaced = _changed(envs[2], key, meter_status=METER_REPLACED, meter_start_wh=0, meter_end_wh=501,
                        periods=((_kind(envs[2]), 501),))
    assert isinstance(admit_receipt(replaced, ledger.state, first.charger_id), Admitted)
    ex = ledger.block([receipt_tx(other_meter), receipt_tx(replaced)], T0_MS + 3000)
    assert _kinds(ex) == [("receipt", None), ("receipt", None)]
    assert ledger.state.meters[(first.charger_id, first.meter_serial)].end_wh == 501  # the new meter's reading


def test_receipts_of_one_meter_may_commit_out_of_seq_order_but_not_overlap():
    ledger, key, envs = _enrolled()
    second = decode(envs[1])[0]
    ledger.block([receipt_tx(envs[1])], T0_MS + 1000)
    overlapping = _changed(envs[0], key, meter_end_wh=second.meter_start_wh + 1,
                           periods=((_kind(envs[0]), second.meter_start_wh + 1 - decode(envs[0])[0].meter_start_wh),))
    ex = ledger.block([receipt_tx(overlapping), receipt_tx(envs[0])], T0_MS + 2000)
    assert _kinds(ex) == [("receipt", None), ("dropped", "meter_rollback")]
    assert ex.effects[0].receipt_id == receipt_id(envs[0])  # the one that fits below seq 2
    assert ledger.state.meters[(second.charger_id, second.meter_serial)].seq == 2  # still the latest


def test_energy_is_billed_only_in_periods_the_session_touched():
    ledger, key, envs = _enrolled()
    # 10:00-11:00 local is peak (1); valley energy in it is impossible
    peak = (LOCAL_DAY + 10 * 3600, LOCAL_DAY + 11 * 3600)
    wrong = _span(envs[0], key, *peak, periods=((1, 500), (3, 100)))
    refused = admit_receipt(wrong, ledger.state, decode(wrong)[0].charger_id)
    assert isinstance(refused, Refused) and refused.reason == "period_mismatch"
    assert _kinds(ledger.block([receipt_tx(wrong)], T0_MS + 1000)) == [("dropped", "period_mismatch")]
    # a period with zero energy is no claim; the end reading at 11:30 sharp is flat (docs/tariff.md)
    right = _span(envs[0], key, peak[0], LOCAL_DAY + 11 * 3600 + 1800, periods=((1, 500), (2, 10), (3, 0)))
    assert _kinds(ledger.block([receipt_tx(right)], T0_MS + 2000)) == [("receipt", None)]


def test_the_periods_a_time_span_touches():
    assert TARIFF.kinds_between(LOCAL_DAY + 10 * 3600, LOCAL_DAY + 11 * 3600) == {1}
    assert TARIFF.kinds_between(LOCAL_DAY + 10 * 3600, LOCAL_DAY + 11 * 3600 + 1799) == {1}
    assert TARIFF.kinds_between(LOCAL_DAY + 10 * 3600, LOCAL_DAY + 11 * 3600 + 1800) == {1, 2}
    assert TARIFF.kinds_between(LOCAL_DAY + 23 * 3600, LOCAL_DAY + 32 * 3600) == {3, 2}  # over midnight
    assert TARIFF.kinds_between(LOCAL_DAY + 18 * 3600 + 5, LOCAL_DAY + 18 * 3600 + 5) == {0}
    assert TARIFF.kinds_between(LOCAL_DAY, LOCAL_DAY + 86400) == {0, 1, 2, 3}


def test_a_session_ends_no_later_than_the_block_time_and_the_clock_allowance():
    ledger, key, envs = _enrolled()
    block_s = (T0_MS + 1000) // 1000
    end = block_s + CLOCK_ALLOWANCE_S
    at_limit = _span(envs[0], key, end - 600, end, periods=((TARIFF.kind_at(end), 300),))
    beyond = _span(envs[1], key, end - 599, end + 1, periods=((TARIFF.kind_at(end + 1), 300),))
    ex = ledger.block([receipt_tx(at_limit), receipt_tx(beyond)], T0_MS + 1000)
    assert _kinds(ex) == [("receipt", None), ("dropped", "from_future")]
    refused = admit_receipt(beyond, ledger.state, decode(beyond)[0].charger_id, now_s=block_s)
    assert isinstance(refused, Refused) and refused.reason == "from_future"
    r = decode(envs[2])[0]
    backwards = seal(replace(r, start_time=r.end_time + 1), key)
    try:
        decode(backwards)
    except ReceiptError as e:
        assert e.reason == "inconsistent"
    else:
        raise AssertionError("a receipt ending before it starts was decoded")


def test_a_session_ended_no_earlier_than_the_staleness_bound_before_the_block_time():
    ledger, key, envs = _enrolled()
    block_s = (T0_MS + 1000) // 1000
    end = block_s - MAX_RECEIPT_AGE_S
    at_limit = _span(envs[0], key, end - 600, end, periods=((TARIFF.kind_at(end), 300),))
    beyond = _span(envs[1], key, end - 601, end - 1, periods=((TARIFF.kind_at(end - 1), 300),))
    refused = admit_receipt(beyond, ledger.state, decode(beyond)[0].charger_id, now_s=block_s)
    assert isinstance(refused, Refused) and refused.reason == "too_old"
    assert refused.detail == f"end_time {end - 1} is more than {MAX_RECEIPT_AGE_S} s before the block time {block_s}"
    ex = ledger.block([receipt_tx(at_limit), receipt_tx(beyond)], T0_MS + 1000)
    assert _kinds(ex) == [("receipt", None), ("dropped", "too_old")]
    # a resend of a committed receipt once it is past the bound: too_old, whatever was committed
    assert _kinds(ledger.block([receipt_tx(at_limit)], T0_MS + 2000)) == [("dropped", "too_old")]


def test_a_seq_more_than_the_window_below_the_highest_is_refused_in_the_same_block_too():
    ledger, key, envs = _enrolled()
    cid = decode(envs[0])[0].charger_id
    r = decode(envs[0])[0]  # (readings above the others': the meter runs forward with the seq)
    high = _changed(envs[0], key, seq=2000, meter_start_wh=r.meter_start_wh + 10**8, meter_end_wh=r.meter_end_wh + 10**8)
    low = _changed(envs[1], key, seq=2000 - SEQ_WINDOW)  # the floor: at or below it
    inside = _changed(envs[2], key, seq=2001 - SEQ_WINDOW)
    ex = ledger.block([receipt_tx(high), receipt_tx(low), receipt_tx(inside)], T0_MS + 1000)
    assert _kinds(ex) == [("receipt", None), ("receipt", None), ("dropped", "seq_too_old")]
    assert ex.refused[0].detail == f"seq {2000 - SEQ_WINDOW} of {cid} is more than {SEQ_WINDOW} below its " \
                                   f"highest committed seq 2000"
    refused = admit_receipt(low, ledger.state, cid, now_s=T0_MS // 1000)
    assert isinstance(refused, Refused) and refused.reason == "seq_too_old"


def test_the_state_root_covers_the_billing_state_and_a_restart_reads_it_back(database_urls):
    url = database_urls("billing")
    ledger, key, envs = _enrolled(Repository(url))
    ledger.block([receipt_tx(envs[1])], T0_MS + 1000)
    before = ledger.state.state_map
    ex = ledger.block([receipt_tx(envs[0]), receipt_tx(envs[2])], T0_MS + 2000)
    r3 = decode(envs[2])[0]
    # the block changes two records: the meter's mark (seq 3 is the highest) and the wallet; the
    # receipts and sessions it bills are history, proven by the block's transactions
    expected = before.update({f"m/{r3.charger_id}/{r3.meter_serial}": records.meter(3, r3.meter_start_wh, r3.meter_end_wh),
                              f"w/{WALLET}": records.wallet(ledger.balance(WALLET), bytes.fromhex("ab" * 32))})
    assert ex.state_root == expected.root != before.root
    again = Ledger(Repository(url), tariffs=(DEFAULT_TARIFF,))
    s = again.state
    assert s.state_root == ledger.state.state_root
    billed = {(r.charger_id, r.session_id) for r in (decode(e)[0] for e in envs[:3])}
    assert s.history.billed_sessions(billed | {(r3.charger_id, bytes(16))}, T0_MS) == billed  # from storage
    assert s.history.billed_sessions(billed, T0_MS + 10**6) == set()  # billed before the horizon asked
    assert s.seq_windows == ledger.state.seq_windows and s.seq_windows.high(r3.charger_id) == 3
    assert s.meters == ledger.state.meters and s.meters[(r3.charger_id, r3.meter_serial)].seq == 3
    replay = _changed(envs[2], key, seq=4, meter_start_wh=r3.meter_end_wh, meter_end_wh=r3.meter_end_wh + 10,
                      periods=((r3.periods[0][0], 10),))
    behind = _changed(envs[2], key, seq=5, session_id=b"\x05" * 16)
    ex = again.block([receipt_tx(replay), receipt_tx(behind)], T0_MS + 3000)
    assert _kinds(ex) == [("dropped", "session_billed"), ("dropped", "meter_rollback")]


V2 = {**DEFAULT_TARIFF, "version": 2}
T0_S = T0_MS // 1000


def _recent(envelope: bytes, key: SigningKey, start: int, version: int, seq: int | None = None) -> bytes:
    """The receipt as a 100 s session from `start`, billed by `version` of the tariff."""
    end = start + 100
    fields = {"tariff_version": version} if seq is None else {"tariff_version": version, "seq": seq,
                                                              "session_id": seq.to_bytes(16, "big")}
    r = decode(_span(envelope, key, start, end, periods=((TARIFF.kind_at(end), 100),)))[0]
    return _changed(seal(r, key), key, **fields)


def test_a_receipt_names_the_tariff_version_in_force_at_its_start(database_urls):
    url = database_urls("tariff_from")
    ledger, key, envs = _enrolled(Repository(url))
    switch = T0_S + 60
    ex = ledger.block([_action("publish_tariff", {"tariff": V2, "effective_from": switch}, at_ms=T0_MS + 1000)],
                      T0_MS + 1000)
    assert _kinds(ex) == [("publish_tariff", None)] and ex.effects[0].detail["effective_from"] == switch
    assert ledger.state.tariff_versions("GD-2026-A") == [(1, 0), (2, switch)]
    before = _recent(envs[0], key, switch - 1, 1)  # started a second before v2: v1 bills it
    v2_early = _recent(envs[1], key, switch - 1, 2, seq=11)
    v1_late = _recent(envs[1], key, switch, 1, seq=12)  # v1 named after v2 came in force
    v2_on_time = _recent(envs[2], key, switch, 2, seq=13)
    now_s = switch + 200
    for env, reason in ((v2_early, "tariff_not_in_force"), (v1_late, "tariff_not_in_force")):
        refused = admit_receipt(env, ledger.state, decode(env)[0].charger_id, now_s=now_s)
        assert isinstance(refused, Refused) and refused.reason == reason, refused
    assert isinstance(admit_receipt(before, ledger.state, decode(before)[0].charger_id, now_s=now_s), Admitted)
    ex = ledger.block([receipt_tx(e) for e in (v1_late, before, v2_early, v2_on_time)], now_s * 1000)
    assert sorted(_kinds(ex)) == sorted([("receipt", None), ("receipt", None), ("dropped", "tariff_not_in_force"),
                                         ("dropped", "tariff_not_in_force")])
    assert {e.seq for e in ex.effects} == {1, 13}
    again = Ledger(Repository(url), tariffs=(DEFAULT_TARIFF,))  # a restart reads the effective time back
    assert again.state.tariff_versions("GD-2026-A") == [(1, 0), (2, switch)]
    assert again.state.state_root == ledger.state.state_root


def test_a_tariff_version_comes_in_force_at_or_after_its_block_and_after_the_ones_before():
    ledger = Ledger(tariffs=(DEFAULT_TARIFF,))
    block_s = (T0_MS + 1000) // 1000
    ex = ledger.block([_action("publish_tariff", {"tariff": V2, "effective_from": block_s - 1}),
                       _action("publish_tariff", {"tariff": {**DEFAULT_TARIFF, "version": 3},
                                                  "effective_from": block_s + 600}),
                       _action("publish_tariff", {"tariff": {**DEFAULT_TARIFF, "version": 4},
                                                  "effective_from": block_s + 599}),
                       _action("publish_tariff", {"tariff": V2, "effective_from": block_s + 700}),
                       _action("publish_tariff", {"tariff": {**DEFAULT_TARIFF, "version": 5}}),
                       _action("publish_tariff", {"tariff": {**DEFAULT_TARIFF, "version": 6},
                                                  "effective_from": "soon"})], T0_MS + 1000)
    assert _kinds(ex) == [("refused_action", "effective_in_past"), ("publish_tariff", None),
                          ("refused_action", "tariff_out_of_order"), ("refused_action", "tariff_out_of_order"),
                          ("refused_action", "tariff_out_of_order"), ("refused_action", "malformed")]
    s = ledger.state
    assert s.tariff_versions("GD-2026-A") == [(1, 0), (3, block_s + 600)]
    assert s.tariff_in_force("GD-2026-A", block_s + 599).version == 1
    assert s.tariff_in_force("GD-2026-A", block_s + 600).version == 3
    assert s.next_tariff("GD-2026-A", block_s)[1] == block_s + 600 and s.next_tariff("GD-2026-A", block_s + 600) is None
    ex = ledger.block([_action("publish_tariff", {"tariff": {**DEFAULT_TARIFF, "version": 5}}, at_ms=T0_MS + 2000)],
                      T0_MS + 2000)  # no effective_from: the block's time, which is before v3's
    assert _kinds(ex) == [("refused_action", "tariff_out_of_order")]
