"""The operator dashboard in headless Chromium against a real four-bureau stack with a simulated
charger (the firmware code): after the operator signs in with the node's token, the page shows
every bureau's height, the charger online, and a receipts-per-second chart that moved while the
charger's receipts were committed; a panel says when inputs are kept in quarantine. Screenshots
at 1280 and 360 px wide are kept under tests/artifacts/."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import time
from pathlib import Path

import pytest

from bureau.tools.network import DEFAULT_TARIFF
from bureau.tools.stack import Stack
from bureau.tools.sessiontime import recent

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START = recent(1_793_491_200 - 3 * 3600)  # 05:00 local, valley

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path / "stack", nodes_count=4).start(node_env={"bureau-1": {"BUREAU_LOG_FORMAT": "json"}})
    yield s
    s.stop()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _charge_one_session(c, n: int) -> None:
    c.plug_in_and_start("W-DASH", 20_000, id_token="04DA5D0A5D0A5D", auth_ref=f"dash:{n}")
    for _ in range(15):
        c.step()
        c.pump()
    c.stop("L")


def test_the_dashboard_shows_every_bureau_the_charger_and_the_receipt_rate(stack, tmp_path):
    from chargerhost.simcharger import SimulatedCharger
    from nacl.signing import SigningKey
    from playwright.sync_api import expect, sync_playwright

    user, password = stack.broker_login("CH-DASH")
    charger = SimulatedCharger("CH-DASH", tmp_path / "flash", stack.broker.port, start_time=START, power_w=7400,
                               tariff=DEFAULT_TARIFF, step_s=60, resend_ms=1000, mqtt_username=user,
                               mqtt_password=password, genesis=stack.genesis)  # acks checked with its keys
    driver = SigningKey.generate()
    stack.operator([("enroll_charger", {"charger_id": "CH-DASH", "public_key": charger.core.public_key().hex()}),
                    ("open_wallet", {"wallet_id": "W-DASH", "public_key": driver.verify_key.encode().hex(),
                                     "cards": ["04DA5D0A5D0A5D"]}),
                    ("top_up", {"wallet_id": "W-DASH", "amount_fen": 500_000, "reference": "bank:dash"})])
    charger.connect()
    deadline = time.monotonic() + 60
    while stack.operator_get("/dashboard/data").json()["chargers_online"] < 1:  # its retained status is out
        assert time.monotonic() < deadline, "the charger's status never reached the bureau"
        charger.pump(wait_ms=50)

    ARTIFACTS.mkdir(exist_ok=True)
    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    url = stack.nodes[0].url
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                            headless=True, viewport={"width": 1280, "height": 900})
            page = browser.new_page()
            resp = page.goto(url + "/dashboard")
            assert resp.status == 401  # the login form
            page.fill("#token", stack.operator_token)
            page.click("button[type=submit]")
            page.wait_for_url(url + "/dashboard")
            expect(page.locator("#node-id")).to_have_text("bureau-1", timeout=30_000)
            nodes = page.locator("#nodes")
            expect(nodes).to_have_attribute("data-reachable", "4", timeout=60_000)
            expect(page.locator("#chargers-online")).not_to_have_text("0", timeout=60_000)
            assert int(page.locator("#chargers-online").inner_text()) >= 1

            for n in range(3):  # receipts committed while the page watches
                _charge_one_session(charger, n)
                assert charger.deliver(60), "the charger's receipt was not acknowledged"
            page.wait_for_function("Number(document.getElementById('rate-chart').dataset.max) > 0", timeout=60_000)
            expect(page.locator("#committed")).to_have_text("3", timeout=30_000)

            rows = nodes.locator("tbody tr")
            assert rows.count() == 4
            heights = [int(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(4)]
            names = [rows.nth(i).locator("td").nth(0).inner_text() for i in range(4)]
            assert names == ["bureau-1", "bureau-2", "bureau-3", "bureau-4"] and min(heights) >= 3, heights
            assert int(page.locator("#rate-chart").get_attribute("data-samples")) >= 2

            wide = page.screenshot(path=str(ARTIFACTS / "dashboard-1280.png"), full_page=True)
            page.set_viewport_size({"width": 360, "height": 780})
            page.wait_for_function("document.getElementById('rate-chart').clientWidth < 360")
            narrow = page.screenshot(path=str(ARTIFACTS / "dashboard-360.png"), full_page=True)
            # nothing wider than the phone's screen: no sideways scrolling
            assert page.evaluate("document.documentElement.scrollWidth") <= 360
            # the quarantine panel: hidden while the node holds nothing, shown with the count when it does
            # (the node's own answer, its count changed on the way: nothing real makes admission raise)
            expect(page.locator("#quarantine")).to_be_hidden()

            def with_quarantined(route):
                real = route.fetch()
                route.fulfill(response=real, json={**real.json(), "quarantined": 2})
            page.route("**/dashboard/data", with_quarantined)
            expect(page.locator("#quarantine")).to_be_visible(timeout=10_000)
            expect(page.locator("#quarantined")).to_have_text("2")
            page.screenshot(path=str(ARTIFACTS / "dashboard-quarantine-360.png"), full_page=True)
            browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        charger.close()
    for shot, width in ((wide, 1280), (narrow, 360)):
        w, h = _png_size(shot)
        assert w == width and h >= 600 and len(shot) > 20_000, (width, w, h, len(shot))

    # the node run with BUREAU_LOG_FORMAT=json wrote JSON lines with UTC time, level, logger, message
    lines = [json.loads(line) for line in (stack.root / "bureau-1.log").read_text().splitlines()
             if line.startswith("{")]
    up = next(d for d in lines if d["message"].startswith("node bureau-1 up"))
    assert up["time"].endswith("Z") and up["level"] == "INFO" and up["logger"] == "bureau.node"
