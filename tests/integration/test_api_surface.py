"""The API as a client sees it: every operation documents a typed answer and its refusals, every
answer is exactly the shape its document names, the docs page and the home page need nothing
from outside the node, and a slow storage read does not stall the node's other answers."""

from __future__ import annotations

import threading
from html.parser import HTMLParser

import msgspec
from nacl.signing import SigningKey

from bureau.api.app import Health, Readiness
from bureau.api.chain import BlockOut, ChainHead, ChargerKey, ChargerRegistry, GenesisDoc, TariffDoc
from bureau.api.docs import SWAGGER_UI_DIR
from bureau.api.errors import Refusal
from bureau.api.observe import NodeStatus
from bureau.api.operator import ActionStatus
from bureau.dashboard import DashboardData
from bureau.api.receipts import ReceiptProof
from bureau.api.state import StateProofOut
from bureau.api.wallets import WalletBalance, WalletHistory
from bureau.authz.api import StartOut, WalletAuthorizations
from bureau.receipts.codec import seal
from tests.integration.test_bureau_node import _receipt, _setup


def _component(doc: dict, schema: dict) -> tuple[str, dict]:
    ref = schema["$ref"]
    assert ref.startswith("#/components/schemas/"), ref
    name = ref.rsplit("/", 1)[1]
    return name, doc["components"]["schemas"][name]


def test_every_operation_documents_a_typed_answer_and_its_refusals(bureau):
    doc = bureau.client.get("/schema/openapi.json").json()
    operations = [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]
    assert len(operations) >= 14
    for method, path, op in operations:
        where = f"{method} {path}"
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert len(ok) == 1, where
        name, schema = _component(doc, op["responses"][ok[0]]["content"]["application/json"]["schema"])
        assert schema["type"] == "object" and schema["properties"], (where, name)
        errors = {int(s): r for s, r in op["responses"].items() if int(s) >= 400}
        assert 500 in errors, where
        if op.get("parameters") or op.get("requestBody"):
            assert 400 in errors, where
        for status, response in errors.items():
            refusal, _ = _component(doc, response["content"]["application/json"]["schema"])
            probe = {"/healthz": "Health", "/readyz": "Readiness"}.get(path) if status == 503 else None
            assert refusal == (probe or "Refusal"), (where, status)
        if "{wallet_id}" in path or path.startswith("/v1/receipts"):
            assert "replayed" in errors[401]["description"] and "bad_signature" in errors[401]["description"], where
        if path.startswith("/v1/operator/actions/") or path == "/dashboard/data":  # operator only
            assert "operator_auth_required" in errors[401]["description"], where
    assert set(doc["components"]["schemas"]["Refusal"]["required"]) == {"error", "detail"}


def _exactly(resp, struct: type, status: int = 200):
    """The answer decodes into `struct` and encodes back to the very same JSON: no field more,
    none missing, none of another type."""
    assert resp.status_code == status, resp.text
    value = msgspec.json.decode(resp.content, type=struct, strict=True)
    assert msgspec.json.decode(msgspec.json.encode(value)) == resp.json(), struct.__name__
    return value


def test_answers_are_the_shapes_their_document_names(bureau, replies):
    charger, driver = SigningKey.generate(), SigningKey.generate()
    _setup(bureau, charger, driver)
    replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(1), charger))
    assert replies.next()[1]["type"] == "ack"
    c = bureau.client
    head = _exactly(c.get("/v1/chain/head"), ChainHead)
    assert head.header.height == head.height >= 1
    _exactly(c.get("/v1/blocks/1"), BlockOut)
    genesis = _exactly(c.get("/v1/genesis"), GenesisDoc)
    assert c.get("/v1/genesis").json() == bureau.genesis  # as loaded, so its hash is the head's genesis_hash
    assert not _exactly(c.get("/v1/chargers/GZ-TH-0001"), ChargerKey).retired
    assert _exactly(c.get("/v1/chargers"), ChargerRegistry).chargers == ["GZ-TH-0001"]
    _exactly(c.get(f"/v1/tariffs/{genesis.tariffs[0].tariff_id}"), TariffDoc)
    _exactly(c.get("/healthz"), Health)
    _exactly(c.get("/readyz"), Readiness)
    _exactly(bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001"), WalletBalance)
    history = _exactly(bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001/history"), WalletHistory)
    assert history.entries[-1].charger_id is None and history.entries[0].charger_id == "GZ-TH-0001"
    _exactly(bureau.driver_get(driver, "W-1001", "/v1/receipts/GZ-TH-0001/1/proof"), ReceiptProof)
    assert _exactly(bureau.driver_get(driver, "W-1001", "/v1/state/proof?key=w/W-1001"), StateProofOut).value
    committed = _exactly(bureau.operator_get(f"/v1/operator/actions/{history.entries[-1].tx_hash}"), ActionStatus)
    assert committed.status == "committed" and "reason" not in bureau.operator_get(
        f"/v1/operator/actions/{history.entries[-1].tx_hash}").json()
    _exactly(c.get("/v1/node/status"), NodeStatus)
    bearer = {"Authorization": f"Bearer {bureau.operator_token}"}
    assert _exactly(c.get("/dashboard/data", headers=bearer), DashboardData).nodes[0].ok
    _exactly(bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001/authorizations"), WalletAuthorizations)
    path = "/v1/wallets/W-1001/start?charger_id=GZ-TH-0001&cap_fen=3000"
    from bureau.api.auth import authorization_header
    signed = {"Authorization": authorization_header(driver, "W-1001", "POST", path, node_id="bureau-1")}
    start = _exactly(c.post(path, headers=signed), StartOut, 202)
    assert start.token.startswith("app:") and start.wallet_id == "W-1001"
    views = _exactly(bureau.driver_get(driver, "W-1001", "/v1/wallets/W-1001/authorizations"), WalletAuthorizations)
    assert [s.token for s in views.pending_starts] == [start.token]
    # refusals have the one shape, with the status of their reason
    assert _exactly(c.get("/v1/blocks/999999"), Refusal, 404).error == "no_block"
    assert _exactly(c.get("/v1/wallets/W-1001"), Refusal, 401).error == "missing_auth"
    other = SigningKey.generate()
    assert _exactly(bureau.driver_get(other, "W-1001", "/v1/wallets/W-1002"), Refusal, 401).error == "bad_signature"
    assert _exactly(c.get("/v1/blocks/0"), Refusal, 400).error == "invalid_request"


class _Assets(HTMLParser):
    """The URLs a page makes a browser load: scripts, stylesheets, icons, images; and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "img") and a.get("src"):
            self.loads.append(a["src"])
        elif tag == "link" and a.get("href"):
            self.loads.append(a["href"])
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])


def _parse(html: str) -> _Assets:
    page = _Assets()
    page.feed(html)
    return page


def test_the_docs_page_loads_everything_from_the_node(bureau):
    resp = bureau.client.get("/schema")
    assert resp.status_code == 200 and "SwaggerUIBundle(" in resp.text
    page = _parse(resp.text)
    assert len(page.loads) >= 3  # the bundle, the preset, the stylesheet
    for url in page.loads:
        assert url.startswith("/") and not url.startswith("//"), url  # nothing from another host
        asset = bureau.client.get(url)
        assert asset.status_code == 200, url
        assert asset.content == (SWAGGER_UI_DIR / url.rsplit("/", 1)[1]).read_bytes(), url
    assert "http://" not in resp.text.split("<body>")[0] and "https://" not in resp.text.split("<body>")[0]
    # only the page's own files are served, not the rest of the package
    missing = bureau.client.get("/assets/swagger-ui/index.html")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_the_home_page_leads_to_docs_health_head_and_dashboard(bureau):
    resp = bureau.client.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = _parse(resp.text)
    assert page.loads == [] and "http" not in resp.text  # no asset, no link elsewhere
    assert {"/schema", "/healthz", "/v1/chain/head", "/dashboard"} <= set(page.links)
    assert "bureau-1" in resp.text
    for link in page.links:
        if link != "/dashboard":  # the operator dashboard is mounted by its own module
            assert bureau.client.get(link).status_code == 200, link


def test_a_slow_storage_read_does_not_stall_the_other_answers(bureau):
    """A status read that waits on storage runs on a worker thread: while it waits, the node
    still answers. On the event loop, /healthz would wait for it to end."""
    entered, release = threading.Event(), threading.Event()
    repo = bureau.node.chain.repo
    real = repo.operator_outcome

    def slow_outcome(tx_hash):
        entered.set()
        release.wait(60)
        return real(tx_hash)

    repo.operator_outcome = slow_outcome
    answers = []
    slow = threading.Thread(target=lambda: answers.append(bureau.operator_get("/v1/operator/actions/" + "ab" * 32)))
    try:
        slow.start()
        assert entered.wait(30)
        assert bureau.client.get("/healthz").status_code == 200
        assert slow.is_alive() and not answers  # answered while the slow read still waits
    finally:
        release.set()
        slow.join(30)
        repo.operator_outcome = real
    assert answers[0].status_code == 404 and answers[0].json()["error"] == "unknown_tx"
