"""The phone page in headless Chromium shows an OCPP bill whose readings the meter signed (OCMF,
checked with WebCrypto's ECDSA P-256 against the key enrolled) apart from one only the serving
bureau attests, in English and Chinese; a meter record altered in the proof fails on the phone."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from bureau.ocpp import password
from bureau.tools.mosquitto import free_port
from bureau.tools.pki import client_tls_context
from bureau.tools.stack import Stack
from tests.integration.test_dashboard import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.integration.test_ocpp_csms import SECRET, _energy_v16, _energy_v201
from tests.support.ocmf_meter import OcmfMeter
from tests.support.ocpp_station import iso, station

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
METER = OcmfMeter(11)
WALLET, CARD = "W-OCPP-PHONE", "04F0F0F0F0"


@pytest.fixture
def stack(tmp_path):
    port = free_port()
    s = Stack(tmp_path / "stack", nodes_count=1, tls=True).prepare()
    s.launch(node_env={"bureau-1": {"BUREAU_OCPP_PORT": str(port)}})
    s.ocpp_port = port
    yield s
    s.stop()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="ocpp-phone-chromium-")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                            headless=True, viewport={"width": 360, "height": 740},
                                                            locale="en-US", timezone_id="Asia/Shanghai",
                                                            ignore_https_errors=True)
            yield browser.new_page()
            browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _sessions(stack) -> None:
    tls = client_tls_context(stack.ca_file)
    t0 = int(time.time()) - 1200
    token = {"id_token": CARD, "type": "ISO14443"}

    async def run():
        async with station(stack.ocpp_port, "CP-M", SECRET, "1.6", tls) as cp:
            start = await cp.call(call16.StartTransaction(connector_id=1, id_tag=CARD, meter_start=1_000,
                                                          timestamp=iso(t0)))
            await cp.call(call16.StopTransaction(meter_stop=4_000, timestamp=iso(t0 + 600),
                                                 transaction_id=start.transaction_id,
                                                 transaction_data=_energy_v16(t0 + 600, 4_000,
                                                                              METER.record(1_000, 4_000))))
        async with station(stack.ocpp_port, "CP-B", SECRET, "2.0.1", tls) as cp:
            await cp.call(call201.TransactionEvent(
                event_type="Started", timestamp=iso(t0), trigger_reason="Authorized", seq_no=0,
                transaction_info={"transaction_id": "T-B-1"}, id_token=token,
                meter_value=_energy_v201(t0, 7_000, "Transaction.Begin")))
            await cp.call(call201.TransactionEvent(
                event_type="Ended", timestamp=iso(t0 + 900), trigger_reason="StopAuthorized", seq_no=1,
                transaction_info={"transaction_id": "T-B-1"}, meter_value=_energy_v201(t0 + 900, 9_500)))

    with ThreadPoolExecutor(1) as pool:  # (Playwright's sync API holds this thread's event loop)
        pool.submit(lambda: asyncio.run(run())).result()


def test_the_phone_marks_meter_signed_and_bureau_attested_bills_apart(stack, page):
    from playwright.sync_api import expect

    url = stack.nodes[0].url
    page.goto(f"{url}/phone")
    expect(page.locator("#setup")).to_be_visible(timeout=30_000)
    keep = page.evaluate("JSON.parse(localStorage.getItem('chargeledger.phone.v1') || '{}')")
    digest = password.make_digest(SECRET)
    stack.operator([("enroll_ocpp_charger", {"charger_id": "CP-M", "ocpp_version": "1.6", "password_digest": digest,
                                             "ocmf_key": METER.public_key_hex}),
                    ("enroll_ocpp_charger", {"charger_id": "CP-B", "ocpp_version": "2.0.1",
                                             "password_digest": digest}),
                    ("open_wallet", {"wallet_id": WALLET, "public_key": keep["public_key"], "cards": [CARD]})])
    stack.operator([("top_up", {"wallet_id": WALLET, "amount_fen": 10_000, "reference": "bank:ocpp-phone"})])
    _sessions(stack)
    head = httpx.get(url + "/v1/chain/head", verify=stack.verify).json()
    page.evaluate("k => localStorage.setItem('chargeledger.phone.v1', JSON.stringify(k))",
                  {**keep, "wallet_id": WALLET, "node_id": "bureau-1", "genesis_hash": head["genesis_hash"]})
    page.reload()
    signed, attested = page.locator('.bill.ocpp[data-charger="CP-M"]'), page.locator('.bill.ocpp[data-charger="CP-B"]')
    expect(signed).to_have_attribute("data-verified", "true", timeout=60_000)
    expect(attested).to_have_attribute("data-verified", "true", timeout=60_000)
    assert (signed.get_attribute("data-level"), attested.get_attribute("data-level")) == ("ocmf", "bureau")
    assert (signed.get_attribute("data-energy-wh"), attested.get_attribute("data-energy-wh")) == ("3000", "2500")
    expect(signed.locator(".mark")).to_contain_text("meter-signed readings (OCMF)")
    expect(attested.locator(".mark")).to_contain_text("readings attested by bureau bureau-1, not signed by the meter")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "phone-ocpp-marks-en.png"), full_page=True)
    page.click("#lang")
    expect(signed.locator(".mark")).to_contain_text("电表签名读数（OCMF）", timeout=60_000)
    expect(page.locator('.bill.ocpp[data-charger="CP-B"] .mark')).to_contain_text("读数由节点 bureau-1 证明，非电表签名")
    page.screenshot(path=str(ARTIFACTS / "phone-ocpp-marks-zh.png"), full_page=True)
    # a proof naming another meter key than the one enrolled: the phone's ECDSA check fails
    page.route("**/v1/ocpp/bills/*/proof", lambda route: route.fulfill(response=(resp := route.fetch()), json={
        **(body := resp.json()), "ocmf_key": OcmfMeter(12).public_key_hex}))
    page.reload()
    forged = page.locator('.bill.ocpp[data-charger="CP-M"]')
    expect(forged).to_have_attribute("data-verified", "false", timeout=60_000)
    expect(forged.locator(".mark")).to_contain_text("bad_meter_signature")
