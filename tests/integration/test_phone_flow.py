"""The driver's phone page in headless Chromium at 360x740 against a real two-bureau stack: the
first run makes the phone's key and offers the binding; the language follows the browser and the
switch, and is kept; a charger's deep link waits for the binding; a node gone is said to be
offline. Then the whole flow: the operator opens a wallet and issues a binding code, the page
binds with it, the wallet is topped up, the driver starts a charge from the charger's link, a
simulated charger (the firmware code) redeems the start and charges, and the page shows the
bill and the balance verified, agreeing with every node. Screenshots in tests/artifacts/."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from bureau.api.auth import authorization_header
from bureau.tools.httpclient import shared_client
from bureau.tools.network import DEFAULT_TARIFF
from bureau.tools.stack import Stack
from tests.integration.test_commands import bureau
from tests.integration.test_dashboard import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.support.waiting import wait_for

VIEWPORT = {"width": 360, "height": 740}
CHARGER = "CH-PHONE"
WALLET = "W-PHONE"
CAP_FEN = 3_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path / "stack", nodes_count=2).start()
    yield s
    s.stop()


@pytest.fixture
def phone():
    """A phone's browser: its own profile (so its localStorage), 360x740, English, in China's time."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="phone-chromium-")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                            headless=True, viewport=VIEWPORT, locale="en-US",
                                                            timezone_id="Asia/Shanghai")
            yield browser.new_page()
            browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _keep(page) -> dict:
    return page.evaluate("JSON.parse(localStorage.getItem('chargeledger.phone.v1') || '{}')")


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"phone-{name}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"], name  # no sideways scrolling


def test_first_run_languages_deep_link_and_offline(stack, phone):
    from playwright.sync_api import expect

    page = phone
    url = stack.nodes[0].url
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    resp = page.goto(f"{url}/phone#start={CHARGER}")
    assert resp.status == 200 and "default-src 'none'" in resp.headers["content-security-policy"]
    # the other validator's API is the one other place the page may ask (for its head)
    assert f"http://127.0.0.1:{stack.nodes[1].http_port}" in resp.headers["content-security-policy"]
    expect(page.locator("#setup")).to_be_visible(timeout=30_000)
    keep = _keep(page)
    assert re.fullmatch(r"[0-9a-f]{64}", keep["seed"]) and re.fullmatch(r"[0-9a-f]{64}", keep["public_key"])
    assert page.locator("body").get_attribute("data-ed25519") in ("webcrypto", "noble")
    expect(page.locator("#node")).to_contain_text("bureau-1")
    expect(page.locator("#start-status")).to_contain_text(f"Bind this phone first; then the charge at {CHARGER}")
    page.fill("#wallet-id", WALLET)
    page.fill("#binding-code", "ABCD-EFGH")
    page.click("#bind")
    expect(page.locator("#bind-status")).to_contain_text("16 letters and digits")
    _shot(page, "setup-en")

    page.click("#lang")  # the switch overrides the browser's language, and is kept
    expect(page.locator("h1")).to_have_text("充电钱包")
    page.reload()
    expect(page.locator("#setup h2")).to_have_text("将本手机绑定到钱包", timeout=30_000)
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert _keep(page)["seed"] == keep["seed"]  # the key is made once
    _shot(page, "setup-zh")

    assert not errors, errors  # no script error, no refused load (the CSP lets in all the page needs)
    page.click("#lang")
    stack.nodes[0].stop()  # the node goes away while the page is open
    page.fill("#wallet-id", WALLET)
    page.fill("#binding-code", "abcd-efgh-jkmn-pqrs")
    page.click("#bind")
    expect(page.locator('#notices [data-kind="offline"]')).to_contain_text("Offline", timeout=30_000)
    _shot(page, "offline-en")
    assert all("ERR_CONNECTION_REFUSED" in e for e in errors), errors  # only the failed request


def _driver_get(stack, key, node: int, path: str) -> dict:
    n = stack.nodes[node]
    hdr = authorization_header(key, WALLET, "GET", path, node_id=n.node_id)
    resp = shared_client().get(n.url + path, headers={"Authorization": hdr}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _wait(condition, what: str, timeout: float = 90.0, step=None):
    return wait_for(condition, what, timeout, step=step, poll=0.2)


def _operator_cli(stack, *args: str) -> str:
    """`bureau operator` as the operator runs it: its stdout, or the test fails with its stderr."""
    p = bureau("operator", "--node", stack.nodes[0].url, "--key", str(stack.root / "net" / "operator.key"),
               "--operator", "operator-1", *args)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _connect_charger(stack, charger) -> None:
    """The charger on the broker with its subscriptions in place (its retained status reached the
    bureau), so the start command the phone asks for reaches it."""
    charger.connect()
    _wait(lambda: stack.operator_get("/dashboard/data").json()["chargers_online"] >= 1,
          "the charger's status never reached the bureau", 60, step=lambda: charger.pump(wait_ms=50))


def _charge_from_the_start(charger) -> None:
    """The firmware's flow redeems the phone start's token online (the bureau answers in real
    time, so simulated time runs about as fast), then the car plugs in, charges, and the driver
    stops at the charger; the receipt is acknowledged."""
    sim = charger.sim
    decided = sim.flow.decisions

    def live():  # simulated time at the pace of real time: the flow's timeouts mean what they say
        sim.step()
        charger.pump(wait_ms=100)
    _wait(lambda: sim.flow.decisions != decided, "the charger never redeemed the phone start", 30, step=live)
    assert sim.flow.last["decision"] == "accept" and sim.flow.last["authorized_fen"] == CAP_FEN, sim.flow.last
    sim.plug_in()
    _wait(lambda: sim.ctl.state == "charging", "the session did not start", 30, step=sim.step)
    for _ in range(20):  # 20 simulated minutes at 7.4 kW
        charger.step()
        charger.pump()
    charger.stop("L")
    assert charger.deliver(90), "the charger's receipt was not acknowledged"


def _replays_are_refused(stack, sent) -> None:
    """The page's bind transaction, sent again to every node, is a duplicate; its signed balance
    request is refused as replayed by the node it was for and as for another node by the rest."""
    [bind] = [json.loads(body) for method, u, _, body in sent if u.endswith("/v1/driver/bind")]
    [(u, auth)] = [(u, a) for method, u, a, _ in sent if "/v1/state/proof" in u][:1]
    path = u.split(stack.nodes[0].url, 1)[1]
    for i, n in enumerate(stack.nodes):
        r = shared_client().post(n.url + "/v1/driver/bind", json=bind, timeout=30)
        assert (r.status_code, r.json()["error"]) == (409, "duplicate"), n.node_id
        r = shared_client().get(n.url + path, headers={"Authorization": auth}, timeout=30)
        assert (r.status_code, r.json()["error"]) == (401, "replayed" if i == 0 else "wrong_node"), n.node_id


def _before_a_period_change() -> int:
    """Ten minutes before the last 10:00 in China (UTC+8) at least an hour ago: there the default
    tariff goes from flat (2) to peak (1), so a 20-minute session is billed in two periods."""
    t = int(time.time()) - 3600
    return t - (t - 2 * 3600) % 86400 - 600


def _page_bill(bill) -> dict:
    rows = bill.locator("table.periods tbody tr")
    tariff = bill.locator(".tariff")
    return {"amount_fen": int(bill.get_attribute("data-amount-fen")), "energy_wh": int(bill.get_attribute("data-energy-wh")),
            "height": int(bill.get_attribute("data-height")), "seq": int(bill.get_attribute("data-seq")),
            "periods": [[int(rows.nth(i).get_attribute("data-kind")), int(rows.nth(i).get_attribute("data-wh"))]
                        for i in range(rows.count())],
            "tariff": tariff.get_attribute("data-tariff"), "effective_from": int(tariff.get_attribute("data-effective-from")),
            "amount_text": bill.locator(".amount").inner_text(), "meta": bill.locator(".meta").first.inner_text(),
            "rows_text": [rows.nth(i).inner_text() for i in range(rows.count())]}


def _yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def _agrees_with_every_node(stack, phone_key, bill: dict, balance_fen: int, balance_height: int) -> None:
    """Each bureau's own answers, checked here with the node's Python verifiers, give the
    figures the page shows: the receipt (from its signed envelope, never the summary fields) in
    the block the page names, its tariff version the one in force at its start, and the
    balance proven at the height the page says it is as of."""
    from bureau.ledger.genesis import Genesis
    from bureau.ledger.block import Header
    from bureau.ledger.proof import verify_receipt_proof
    from bureau.ledger.stateproof import verify_state_proof
    from bureau.receipts.codec import decode

    genesis = Genesis.from_doc(stack.genesis)
    for i, n in enumerate(stack.nodes):
        proof = _driver_get(stack, phone_key, i, f"/v1/receipts/{CHARGER}/{bill['seq']}/proof")
        ok, why = verify_receipt_proof(proof, genesis)
        assert ok, (n.node_id, why)
        receipt, _, _ = decode(bytes.fromhex(proof["receipt"]["envelope"]))
        assert proof["header"]["height"] == bill["height"], n.node_id
        assert (receipt.amount_fen, receipt.energy_wh, [list(p) for p in receipt.periods]) == \
            (bill["amount_fen"], bill["energy_wh"], bill["periods"]), n.node_id
        assert bill["tariff"] == f"{receipt.tariff_id}/{receipt.tariff_version}"
        versions = httpx.get(f"{n.url}/v1/tariffs/{receipt.tariff_id}/versions", timeout=30).json()["versions"]
        in_force = max((v for v in versions if v["effective_from"] <= receipt.start_time),
                       key=lambda v: v["effective_from"])
        assert (in_force["version"], in_force["effective_from"]) == (receipt.tariff_version, bill["effective_from"])
        # the balance: this node's head is the page's block (no block since), its record the page's
        answer = _wait(lambda: (a := _driver_get(stack, phone_key, i, f"/v1/state/proof?key=w/{WALLET}"))["height"]
                       >= balance_height and a, f"{n.node_id} never reached block {balance_height}")
        assert answer["height"] == balance_height, f"{n.node_id} is past the page's block"
        root = Header.decode(bytes.fromhex(answer["header"]["encoded"])).state_root
        ok, why = verify_state_proof(root, answer["proof"])
        assert ok, (n.node_id, why)
        assert json.loads(answer["value"])["balance_fen"] == balance_fen, n.node_id
        assert _driver_get(stack, phone_key, i, f"/v1/wallets/{WALLET}")["balance_fen"] == balance_fen, n.node_id


def test_bind_top_up_start_from_the_link_charge_and_see_the_verified_bill(stack, phone, tmp_path):
    """The whole flow as a new driver meets it, every operator step through `bureau operator`."""
    from chargerhost.simcharger import SimulatedCharger
    from nacl.signing import SigningKey
    from playwright.sync_api import expect

    page = phone
    url = stack.nodes[0].url  # the bureau that serves the chargers' authorizations
    user, password = stack.broker_login(CHARGER)
    charger = SimulatedCharger(CHARGER, tmp_path / "flash", stack.broker.port, start_time=_before_a_period_change(),
                               power_w=7400, tariff=DEFAULT_TARIFF, step_s=60, resend_ms=1000, mqtt_username=user,
                               mqtt_password=password, genesis=stack.genesis)
    stack.operator([("enroll_charger", {"charger_id": CHARGER, "public_key": charger.core.public_key().hex()})])
    _operator_cli(stack, "open_wallet", f"wallet_id={WALLET}")  # no key: the phone binds later
    shown = _operator_cli(stack, "issue-binding-code", "--wallet", WALLET)
    code = re.search(rf"binding code for wallet {WALLET}: (\S+)", shown).group(1)
    link = bureau("charger", "qr", CHARGER, "--node", url).stdout.strip()
    assert link == f"{url}/phone#start={CHARGER}"
    try:
        _connect_charger(stack, charger)
        sent = []  # what the page sends, to send again as one who captured it would
        page.on("request", lambda r: sent.append((r.method, r.url, r.headers.get("authorization"), r.post_data)))
        page.goto(f"{url}/phone")
        expect(page.locator("#setup")).to_be_visible(timeout=30_000)
        page.fill("#wallet-id", WALLET)
        page.fill("#binding-code", code.lower().replace("-", " "))  # typed as it comes: the page normalises it
        page.click("#bind")
        expect(page.locator("#wallet")).to_be_visible(timeout=90_000)
        keep = _keep(page)
        assert keep["wallet_id"] == WALLET and keep["node_id"] == "bureau-1"
        assert keep["genesis_hash"] == httpx.get(url + "/v1/chain/head").json()["genesis_hash"]
        phone_key = SigningKey(bytes.fromhex(keep["seed"]))
        card = page.locator("#balance-card")
        expect(card).to_have_attribute("data-verified", "true", timeout=60_000)
        assert card.get_attribute("data-fen") == "0"
        _replays_are_refused(stack, sent)

        _operator_cli(stack, "top_up", f"wallet_id={WALLET}", "amount_fen=20000", "reference=bank:phone-1")
        page.goto(link)  # the charger's QR code
        expect(page.locator("#start-title")).to_contain_text(CHARGER, timeout=30_000)
        page.fill("#cap", f"{CAP_FEN // 100}.00")
        page.click("#start-confirm")
        expect(page.locator("#start-status")).to_have_attribute("data-started", CHARGER, timeout=30_000)
        assert page.evaluate("location.hash") == ""  # a reload does not start again
        _charge_from_the_start(charger)

        page.click("#refresh")
        bill_card = page.locator(f'.bill[data-charger="{CHARGER}"]')
        expect(bill_card).to_have_attribute("data-verified", "true", timeout=90_000)
        bill = _page_bill(bill_card)
        assert 0 < bill["amount_fen"] <= CAP_FEN and bill["energy_wh"] > 0
        assert [k for k, _ in bill["periods"]] == [1, 2] and sum(wh for _, wh in bill["periods"]) == bill["energy_wh"]
        balance_fen = 20_000 - bill["amount_fen"]
        expect(card).to_have_attribute("data-fen", str(balance_fen), timeout=60_000)
        assert card.get_attribute("data-verified") == "true"
        height = int(card.get_attribute("data-height"))
        assert height >= bill["height"]
        # what is written on the page, not only its data
        expect(page.locator("#balance")).to_have_text(_yuan(balance_fen))
        expect(page.locator("#balance-mark")).to_have_text(f"✓ verified · at block {height}")
        assert bill["amount_text"] == _yuan(bill["amount_fen"])
        assert f"{bill['energy_wh'] / 1000:.3f} kWh" in bill["meta"] and f"block {bill['height']}" in bill["meta"]
        assert [r.split("\t")[1] for r in bill["rows_text"]] == [f"{wh / 1000:.3f} kWh" for _, wh in bill["periods"]]
        assert [r.split("\t")[0] for r in bill["rows_text"]] == ["Peak", "Flat"]
        expect(bill_card.locator(".tariff")).to_have_text(f"Tariff {bill['tariff'].replace('/', ' v')}, in force since the chain began")
        _agrees_with_every_node(stack, phone_key, bill, balance_fen, height)
        _shot(page, "wallet-en")
        page.click("#lang")
        expect(page.locator("#balance-mark")).to_contain_text("已验证")
        expect(page.locator(".bill .mark").first).to_contain_text("已验证")
        _shot(page, "wallet-zh")
    finally:
        charger.close()


def test_a_wallet_opened_with_the_phones_key_shows_a_balance_verified_by_a_state_proof(stack, phone):
    """A wallet opened with the phone's key (open_wallet with public_key, as before binding
    codes): the page, told its wallet, shows the balance proven against a certified header, the
    same as every node's, and a tampered proof fails."""
    from nacl.signing import SigningKey
    from playwright.sync_api import expect

    page = phone
    url = stack.nodes[0].url
    page.goto(f"{url}/phone")
    expect(page.locator("#setup")).to_be_visible(timeout=30_000)
    keep = _keep(page)
    stack.operator([("open_wallet", {"wallet_id": WALLET, "public_key": keep["public_key"]}),
                    ("top_up", {"wallet_id": WALLET, "amount_fen": 12_345, "reference": "bank:phone-2"})])
    head = httpx.get(url + "/v1/chain/head").json()
    page.evaluate("k => localStorage.setItem('chargeledger.phone.v1', JSON.stringify(k))",
                  {**keep, "wallet_id": WALLET, "node_id": "bureau-1", "genesis_hash": head["genesis_hash"]})
    page.reload()
    card = page.locator("#balance-card")
    expect(card).to_have_attribute("data-verified", "true", timeout=60_000)
    assert card.get_attribute("data-fen") == "12345"
    expect(page.locator("#balance")).to_have_text("¥123.45")
    phone_key = SigningKey(bytes.fromhex(keep["seed"]))
    for i in range(len(stack.nodes)):
        _wait(lambda: _driver_get(stack, phone_key, i, f"/v1/wallets/{WALLET}")["balance_fen"] == 12_345,
              f"bureau-{i + 1} disagrees with the page's balance")
    _shot(page, "balance-en")
    # the same answer with the balance changed fails at the proof
    page.route("**/v1/state/proof*", lambda route: route.fulfill(response=(resp := route.fetch()), json={
        **(body := resp.json()), "value": body["value"].replace("12345", "99999"),
        "proof": {**body["proof"], "value": body["value"].replace("12345", "99999")}}))
    page.click("#refresh")
    expect(card).to_have_attribute("data-verified", "false", timeout=60_000)
    expect(page.locator("#balance-mark")).to_contain_text("wrong_root")
    expect(page.locator("#balance")).to_have_text("–")


def _isolate(node, others) -> None:
    """Restarts a node cut off from its peers (it listens for them elsewhere and dials ports where
    nobody listens), so its head stays where it was while the others commit."""
    from bureau.tools.mosquitto import free_port

    node.stop()
    node.env = {**node.env, "BUREAU_PEER_LISTEN": f"127.0.0.1:{free_port()}",
                "BUREAU_PEER_ADDRESSES": ",".join(f"{o.node_id}=127.0.0.1:{free_port()}" for o in others)}
    node.start()
    node.wait_healthy()


def test_a_node_behind_the_others_is_said_to_be_behind_and_its_figures_are_still_verified(tmp_path, phone):
    """One of four validators, cut off from its peers, stays at its head while the other three
    commit two more blocks: the page against it verifies the balance it has and says the node is
    behind by how much; once it is back among its peers and caught up, the notice goes."""
    from playwright.sync_api import expect

    stack = Stack(tmp_path / "stack", nodes_count=4).start()
    try:
        lagging, others = stack.nodes[3], stack.nodes[:3]
        page = phone
        url = lagging.url
        page.goto(f"{url}/phone")
        expect(page.locator("#setup")).to_be_visible(timeout=30_000)
        keep = _keep(page)
        stack.operator([("open_wallet", {"wallet_id": WALLET, "public_key": keep["public_key"]}),
                        ("top_up", {"wallet_id": WALLET, "amount_fen": 1_000, "reference": "bank:behind-0"})])
        _wait(lambda: len(set(stack.heights())) == 1, "the four nodes never agreed on a head")
        head = httpx.get(url + "/v1/chain/head", timeout=30).json()
        _isolate(lagging, others)
        for n in (1, 2):  # two more blocks among the three
            stack.operator([("top_up", {"wallet_id": WALLET, "amount_fen": 100, "reference": f"bank:behind-{n}"})])
        theirs = stack.heights()[0]
        assert stack.heights() == [theirs] * 3 + [head["height"]] and theirs >= head["height"] + 2

        page.evaluate("k => localStorage.setItem('chargeledger.phone.v1', JSON.stringify(k))",
                      {**keep, "wallet_id": WALLET, "node_id": lagging.node_id, "genesis_hash": head["genesis_hash"]})
        page.reload()
        card = page.locator("#balance-card")
        expect(card).to_have_attribute("data-verified", "true", timeout=60_000)
        assert (card.get_attribute("data-fen"), card.get_attribute("data-height")) == ("1000", str(head["height"]))
        behind = page.locator('#notices [data-kind="behind"]')
        expect(behind).to_have_text(f"This node is {theirs - head['height']} blocks behind the others (its head "
                                    f"{head['height']}, theirs {theirs}): new figures may be missing.", timeout=60_000)
        # open charges are kept by the node that serves chargers: the page says so, once asked
        expect(page.locator('#holds [data-reason="not_served_here"]')).to_contain_text(
            "This node does not keep open charges: chargers are authorized by bureau-1")
        _shot(page, "behind-en")

        lagging.stop()  # back among its peers: it catches up, and the page says nothing more
        lagging.env = {k: v for k, v in lagging.env.items() if k not in ("BUREAU_PEER_LISTEN", "BUREAU_PEER_ADDRESSES")}
        lagging.start()
        lagging.wait_healthy()
        _wait(lambda: stack.heights()[3] == theirs, "the node never caught up")
        page.click("#refresh")
        expect(card).to_have_attribute("data-fen", "1200", timeout=60_000)
        expect(behind).to_have_count(0, timeout=60_000)
    finally:
        stack.stop()
