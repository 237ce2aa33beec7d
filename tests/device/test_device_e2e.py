"""The charger's device application (firmware/device/app.py, unchanged) under the real
MicroPython unix port (32-bit, firmware/manifest.py frozen in, 96 KB heap: the ESP32's word
size and about its heap), with fake machine/network/ntptime reaching the hardware bench, real
sockets to a real mosquitto and real bureau node processes: a card tap is authorized online,
the session is metered and its signed receipt committed and acked; a power cut (kill -9)
mid-session and its receipt (reason P) delivered after the reboot; the broker down at boot and
restarted mid-session; the broker's name failing to resolve; a half-open connection caught by
the keepalive; a session over TLS with the network's CA pinned, and a broker whose certificate
another CA signed refused. After each, the ledger holds every receipt exactly once."""

from __future__ import annotations

import time

import httpx
import pytest

from bureau.api.auth import authorization_header
from tests.support.charger_flow import MANIFEST
from tests.support.device_run import ChargerRig
from tests.support.mpunix import require_frozen_interpreter
from bureau.tools.netproxy import Proxy

HEAP = "96K"


@pytest.fixture
def interpreter():
    return require_frozen_interpreter(MANIFEST)


@pytest.fixture
def rig(tmp_path):
    r = ChargerRig(tmp_path)
    yield r
    r.close()


def stop_reason(rig: ChargerRig, seq: int) -> str:
    path = f"/v1/receipts/{rig.charger_id}/{seq}/proof"
    r = httpx.get(rig.stack.nodes[0].url + path, timeout=10,
                  headers={"Authorization": authorization_header(rig.driver, rig.wallet, "GET", path,
                                                                node_id=rig.stack.nodes[0].node_id)})
    r.raise_for_status()
    return r.json()["receipt"]["stop_reason"]


def assert_ledger_exact(rig: ChargerRig, seqs: list[int], node: int = 0) -> None:
    """Each receipt committed once, none missing; the wallet paid exactly their sum."""
    entries = rig.receipts(node)
    assert [e["seq"] for e in entries] == seqs
    assert entries[-1]["balance_after"] == rig.top_up_fen + sum(e["delta_fen"] for e in entries)


def boot(rig: ChargerRig, interpreter: str, **kw):
    dev = rig.device(interpreter, HEAP, **kw).start()
    dev.wait_line("link: up", timeout=60)
    if not rig.enrolled:
        rig.enroll()
    return dev


def test_card_session_and_power_cut(rig, interpreter):
    dev = boot(rig, interpreter)
    try:
        # card tap -> online authorization -> charge -> unplug -> receipt -> commit -> ack
        rig.charge(dev, seconds=3)
        dev.wait_for(lambda: len(rig.receipts()) == 1 and not dev.outbox(), "the first receipt's ack", timeout=60)
        assert stop_reason(rig, 1) == "U"
        # a power cut while energy flows
        rig.bench.plug("B")
        rig.bench.tap(rig.CARD)
        dev.wait_for(lambda: rig.bench.duty not in (0, 65535), "the second authorization")
        rig.bench.plug("C")
        dev.wait_for(lambda: rig.bench.relay_closed, "the contactor to close")
        wh = rig.bench.meter_wh
        dev.wait_for(lambda: rig.bench.meter_wh >= wh + 3, "energy to flow")
        dev.kill()
        assert not rig.bench.relay_closed
        assert dev.outbox() == [] and len(rig.receipts()) == 1
        dev.start()  # power back: the interrupted session is closed (P) and its receipt sent
        dev.wait_for(lambda: len(rig.receipts()) == 2 and not dev.outbox(), "the power-cut receipt's ack",
                     timeout=60)
        assert stop_reason(rig, 2) == "P"
        assert_ledger_exact(rig, [1, 2])
        assert rig.receipts()[1]["energy_wh"] >= 3
        heap = dev.heap_free()
        assert heap, dev.output()
    finally:
        dev.kill()


def test_broker_down_at_boot_then_restarted_mid_session(tmp_path, interpreter):
    rig = ChargerRig(tmp_path)
    try:
        rig.broker.stop()
        dev = rig.device(interpreter, HEAP).start()
        dev.wait_line("mqtt: ", timeout=60)  # refused (connect_error or io_error:111): the link backs off
        rig.broker.start()
        dev.wait_line("link: up", timeout=60)
        rig.enroll()
        rig.bench.plug("B")
        rig.bench.tap(rig.CARD)
        dev.wait_for(lambda: rig.bench.duty not in (0, 65535), "the authorization", timeout=30)
        rig.bench.plug("C")
        dev.wait_for(lambda: rig.bench.relay_closed, "the contactor to close")
        mark = len(dev.lines)
        rig.broker.restart()  # mid-session: charging goes on, the link walks up again
        dev.wait_line("link: down", after=mark, timeout=60)
        dev.wait_line("link: up", after=mark, timeout=60)
        assert rig.bench.relay_closed
        rig.bench.plug("B")
        rig.bench.plug("A")  # unplugged: the session ends
        dev.wait_for(lambda: not rig.bench.relay_closed, "the contactor to open")
        dev.wait_for(lambda: len(rig.receipts()) == 1 and not dev.outbox(), "the receipt's ack", timeout=60)
        for node in range(len(rig.stack.nodes)):
            deadline = time.monotonic() + 30
            while len(rig.receipts(node)) < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert_ledger_exact(rig, [1], node)
        dev.kill()
    finally:
        rig.close()


def test_broker_name_that_does_not_resolve_then_does(tmp_path, interpreter):
    rig = ChargerRig(tmp_path)
    try:
        flash = rig.new_flash("flash-dns", host="broker.depot")
        dev = rig.device(interpreter, HEAP, flash=flash).start()
        dev.wait_for(lambda: rig.bench.dns_queries.count("broker.depot") >= 2, "two failed lookups", timeout=60)
        dev.wait_line("dns broker.depot", timeout=10)
        assert not any("link: up" in ln for ln in dev.lines)
        rig.bench.dns["broker.depot"] = "127.0.0.1"
        dev.wait_line("link: up", timeout=60)
        queries = rig.bench.dns_queries.count("broker.depot")
        rig.flash = flash
        rig.enroll()
        rig.charge(dev, seconds=2)
        dev.wait_for(lambda: len(rig.receipts()) == 1 and not dev.outbox(), "the receipt's ack", timeout=60)
        assert rig.bench.dns_queries.count("broker.depot") == queries  # resolved once per association
        assert_ledger_exact(rig, [1])
        dev.kill()
    finally:
        rig.close()


def test_half_open_connection_is_caught_by_the_keepalive(tmp_path, interpreter):
    rig = ChargerRig(tmp_path, mqtt={"keepalive_s": 4})  # short, yet not tripped by a loaded machine
    proxy = Proxy(rig.broker.port)
    try:
        flash = rig.new_flash("flash-proxy", port=proxy.port)
        dev = rig.device(interpreter, HEAP, flash=flash).start()
        dev.wait_line("link: up", timeout=60)
        rig.flash = flash
        rig.enroll()
        rig.charge(dev, seconds=2)
        dev.wait_for(lambda: len(rig.receipts()) == 1 and not dev.outbox(), "the first receipt's ack", timeout=60)
        mark = len(dev.lines)
        proxy.stall()  # nothing gets through; no side sees the connection close
        rig.charge(dev, seconds=2)  # offline: the signed list decides, the receipt waits in flash
        dev.wait_line("link: down (broker_lost)", after=mark, timeout=30)
        assert len(rig.receipts()) == 1  # nothing got through the stalled path
        proxy.heal()
        dev.wait_line("link: up", after=mark, timeout=60)
        dev.wait_for(lambda: len(rig.receipts()) == 2 and not dev.outbox(), "the second receipt's ack", timeout=60)
        assert_ledger_exact(rig, [1, 2])
        dev.kill()
    finally:
        proxy.close()
        rig.close()


def test_session_over_tls_with_the_pinned_ca(tmp_path, interpreter):
    rig = ChargerRig(tmp_path, tls=True)  # the charger reaches the broker on its TLS listener only
    try:
        dev = boot(rig, interpreter)
        assert "TLS" in dev.wait_line("link: up")
        rig.charge(dev, seconds=2)
        dev.wait_for(lambda: len(rig.receipts()) == 1 and not dev.outbox(), "the receipt's ack", timeout=60)
        assert_ledger_exact(rig, [1])
        assert dev.heap_free(), dev.output()
        dev.kill()
    finally:
        rig.close()


def test_broker_certificate_from_another_ca_is_refused(tmp_path, interpreter):
    from tests.support.tlscerts import make_pki

    rig = ChargerRig(tmp_path, tls=True)
    try:
        flash = rig.new_flash("flash-other-ca")
        (flash / "ca.der").write_bytes(make_pki(tmp_path / "other-ca").ca_der.read_bytes())
        dev = rig.device(interpreter, HEAP, flash=flash).start()
        line = dev.wait_line("mqtt: tls_bad_cert", timeout=60)
        assert "not correctly signed by the trusted CA" in line, line
        assert not any("link: up" in ln for ln in dev.lines)
        dev.kill()
    finally:
        rig.close()
