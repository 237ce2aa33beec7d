"""The charger core: sessions, stop at the prepaid limit, outbox delivery and acks, and power
cuts at every flash write step losing and duplicating nothing."""

import hashlib
import json
import os
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

import charger as fw_charger
import meter as fw_meter
import receipt as fw_receipt
import trust as fw_trust
from flash import Flash
from bureau.receipts.codec import decode, signed_message
from tests.support import bureau_replies
from tests.support.flashsim import CuttableFlash, PowerCut
from tests.support.signer import NaclSigner

TARIFF = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "tariff.json").read_text())["tariff"]
START = 1_793_491_200  # 2026-11-01T00:00:00Z: 08:00 local, the flat period begins


class Clock:
    def __init__(self):
        self.t = START

    def now(self):
        return self.t

    def synced(self):
        return True


class Meter:
    def __init__(self, wh=500_000):
        self.wh = wh
        self.fail = 0

    def read_wh(self):
        if self.fail:
            self.fail -= 1
            raise fw_meter.MeterError("timeout")
        return self.wh


def rng(seed=b"x"):
    state = [hashlib.sha256(seed).digest()]

    def urandom(n):
        state[0] = hashlib.sha256(state[0]).digest()
        return state[0][:n]
    return urandom


def make(flash, meter, clock, urandom=None):
    c = fw_charger.Charger("CH-1", flash, meter, clock, NaclSigner, urandom or rng(), "fw-test", "MTR-1",
                           default_tariff=TARIFF)
    c.boot()
    return c


def receipts_of(c):
    out = []
    for seq in c.outbox.pending():
        r, body, sig = decode(c.outbox.get(seq))
        VerifyKey(c.public_key()).verify(signed_message(body), sig)
        out.append(r)
    return out


def test_session_stops_at_prepaid_limit_and_receipt_is_billed_by_the_tariff():
    flash, meter, clock = CuttableFlash(), Meter(), Clock()
    c = make(flash, meter, clock)
    c.start(1, "04AA", "W-1", 500, "auth:1")
    reason = None
    while reason is None:
        clock.t += 60
        meter.wh += 117  # 7 kW for a minute
        reason = c.tick()
    assert reason == "Q"
    (r,) = receipts_of(c)
    assert r.stop_reason == "Q"
    # the bill stays within the prepaid amount, and one more minute would have passed it
    rate = 7000 + 8000  # flat
    assert r.amount_fen <= 500 < ((r.energy_wh + 117) * rate + 50_000) // 100_000
    assert r.seq == 1 and r.meter_start_wh == 500_000 and r.periods == ((2, r.energy_wh),)


def test_energy_split_across_a_period_boundary():
    flash, meter, clock = CuttableFlash(), Meter(), Clock()
    clock.t = START + 3600 + 59 * 60  # 09:59 local: flat, peak starts at 10:00
    c = make(flash, meter, clock)
    c.start(3, "app:1", "W-1", 10**6, "auth:2")
    clock.t += 30; meter.wh += 50; c.tick()   # 09:59:30 flat
    clock.t += 60; meter.wh += 70; c.tick()   # 10:00:30 peak
    c.stop("L")
    (r,) = receipts_of(c)
    assert r.periods == ((1, 70), (2, 50))
    assert r.amount_fen == (70 * 19000 + 50 * 15000 + 50_000) // 100_000


def test_ack_removes_only_the_matching_receipt_and_rejects_are_kept_aside():
    flash, meter, clock = CuttableFlash(), Meter(), Clock()
    fw_trust.provision(flash, bureau_replies.GENESIS)
    c = make(flash, meter, clock)
    for i in range(3):
        c.start(1, "04AA", "W-1", 10**6, "")
        meter.wh += 100; clock.t += 60; c.tick()
        c.stop("L")
    due = c.due(0)
    assert [fw_receipt.decode_envelope(e)[0]["seq"] for _, e in due] == [1, 2, 3]
    assert c.due(1000) == []  # nothing resent before RESEND_MS
    assert len(c.due(fw_charger.RESEND_MS + 1)) == 3
    assert c.on_reply(bureau_replies.ack("CH-1", 1, c.outbox.get(2))) == ("ignored", 1)  # receipt 2's id
    assert c.on_reply(bureau_replies.ack("CH-1", 1, c.outbox.get(1))) == ("ack", 1)
    assert c.on_reply(bureau_replies.reject("CH-1", 2, c.outbox.get(2), "busy")) == ("reject", 2)
    assert c.outbox.pending() == [2, 3]
    assert c.on_reply(bureau_replies.reject("CH-1", 3, c.outbox.get(3), "unknown_wallet")) == ("reject", 3)
    assert c.outbox.pending() == [2] and c.outbox.refused() == ["0000000003.unknown_wallet"]
    assert c.on_reply(b"not json") == ("ignored", None)


def test_a_receipt_the_ledger_finds_too_old_is_set_aside_for_a_technician():
    # seq_too_old (held back behind 1,024 newer ones) and too_old (ended 30 days before the
    # block time) can never pass later: final, like every reason the outbox does not retry
    for reason in ("seq_too_old", "too_old"):
        flash, meter, clock = CuttableFlash(), Meter(), Clock()
        fw_trust.provision(flash, bureau_replies.GENESIS)
        c = make(flash, meter, clock)
        c.start(1, "04AA", "W-1", 10**6, "")
        meter.wh += 100; clock.t += 60; c.tick()
        c.stop("L")
        assert c.on_reply(bureau_replies.reject("CH-1", 1, c.outbox.get(1), reason)) == ("reject", 1)
        assert c.outbox.pending() == [] and c.outbox.refused() == ["0000000001." + reason]
        assert c.due(fw_charger.RESEND_MS + 1) == []  # never sent again


def test_lost_meter_stops_the_session_with_a_fault_and_keeps_the_energy_metered():
    flash, meter, clock = CuttableFlash(), Meter(), Clock()
    c = make(flash, meter, clock)
    c.start(1, "04AA", "W-1", 10**6, "")
    clock.t += 60; meter.wh += 100; c.tick()
    meter.fail = 10
    reasons = [c.tick() for _ in range(fw_charger.LOST_AFTER)]
    assert reasons[-1] == "F"
    (r,) = receipts_of(c)
    assert r.energy_wh == 100 and r.meter_status & 4


def test_a_rollback_is_flagged_by_the_watch_and_counts_no_energy():
    flash, meter, clock = CuttableFlash(), Meter(), Clock()
    c = make(flash, meter, clock)
    c.start(1, "04AA", "W-1", 10**6, "")
    clock.t += 60; meter.wh += 100; c.tick()
    clock.t += 60; meter.wh -= 40; c.tick()  # the register went back
    assert c.watch.status == fw_meter.STATUS_ROLLBACK
    clock.t += 60; meter.wh += 70; c.tick()  # 30 Wh above the highest reading
    c.stop("L")
    (r,) = receipts_of(c)
    assert r.meter_status == fw_meter.STATUS_ROLLBACK and r.energy_wh == 130


class IdentifiedMeter(Meter):
    def __init__(self):
        super().__init__()
        self.serial = "MTR-1"


def test_the_core_takes_the_watchs_verdict_a_replaced_meter_is_no_rollback():
    flash, meter, clock = CuttableFlash(), IdentifiedMeter(), Clock()
    watched = fw_meter.WatchedMeter(meter, fw_meter.MeterWatch(lost_after=fw_charger.LOST_AFTER),
                                    lambda: meter.serial)
    c = make(flash, watched, clock)
    assert c.watch is watched.watch
    c.start(1, "04AA", "W-1", 10**6, "")
    clock.t += 60; meter.wh += 100; c.tick()
    meter.serial, meter.wh = "MTR-2", 20  # another meter, a lower register
    clock.t += 60; c.tick()
    c.stop("L")
    (r,) = receipts_of(c)
    assert r.meter_status == fw_meter.STATUS_REPLACED and r.energy_wh == 100


def test_first_boot_makes_a_key_that_survives_reboot(tmp_path):
    flash = Flash(str(tmp_path / "flash"))
    c1 = make(flash, Meter(), Clock(), os.urandom)
    c2 = make(flash, Meter(), Clock(), os.urandom)
    assert c1.public_key() == c2.public_key() and len(c1.public_key()) == 32
    assert (tmp_path / "flash" / "key.seed").stat().st_size == 32


def _scenario(c, meter, clock):
    """Three sessions: a local stop, a limit stop, and one still running at the end."""
    for limit, stop in ((10**6, "L"), (300, None), (10**6, None)):
        c.start(1, "04AA", "W-1", limit, "")
        for _ in range(25):
            clock.t += 60
            meter.wh += 117
            if c.tick():
                break
        else:
            if stop:
                c.stop(stop)


def test_power_cut_at_every_flash_step_loses_and_duplicates_nothing():
    # count the steps of an uninterrupted run
    flash, meter, clock = CuttableFlash(), Meter(), Clock()
    _scenario(make(flash, meter, clock), meter, clock)
    total_steps = flash.steps
    assert total_steps > 20
    for cut in range(total_steps + 1):
        flash, meter, clock = CuttableFlash(), Meter(), Clock()
        start_wh = meter.wh
        flash.cut_at = cut
        try:
            _scenario(make(flash, meter, clock), meter, clock)
        except PowerCut:
            pass
        flash.cut_at = None
        clock.t += 5
        c = make(flash, meter, clock)  # reboot: an interrupted session closes with reason P
        if c.session is not None:
            c.stop("L")
        rs = receipts_of(c)
        seqs = [r.seq for r in rs]
        assert len(seqs) == len(set(seqs)), f"cut {cut}: seq repeated"
        assert len({r.session_id for r in rs}) == len(rs), f"cut {cut}: a session billed twice"
        assert sum(r.energy_wh for r in rs) == meter.wh - start_wh, f"cut {cut}: energy lost or counted twice"
        spans = sorted((r.meter_start_wh, r.meter_end_wh) for r in rs)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"cut {cut}: overlapping readings"
        # a second reboot changes nothing
        again = make(flash, meter, clock)
        assert again.outbox.pending() == c.outbox.pending()
