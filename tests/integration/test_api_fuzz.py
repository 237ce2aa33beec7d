"""Bureaus of a four-node stack, fuzzed through their own OpenAPI document with schemathesis: no
request, valid or not, signed by the wallet's driver or not, gets a server error. And a driver's
signed request is accepted once in the whole network, not once per bureau."""

from __future__ import annotations

import time

import httpx
import requests
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from nacl.signing import SigningKey

from bureau.api.auth import authorization_header
from bureau.tools.httpclient import shared_client
from bureau.tools.stack import Stack

WALLET = "W-FUZZ"
EXAMPLES = 3  # per operation, generation mode and node: the module stays about a minute on a loaded machine
DRIVER = SigningKey(b"\x11" * 32)
CHARGER = SigningKey(b"\x12" * 32)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("fuzz"), nodes_count=4).start()
    try:
        s.operator([("enroll_charger", {"charger_id": "CH-FUZZ", "public_key": CHARGER.verify_key.encode().hex()}),
                    ("open_wallet", {"wallet_id": WALLET, "public_key": DRIVER.verify_key.encode().hex()}),
                    ("top_up", {"wallet_id": WALLET, "amount_fen": 10_000, "reference": "bank:fuzz"})])
        yield s
    finally:
        s.stop()


def _wait_wallet(stack: Stack, timeout: float = 60.0) -> None:
    """Until every bureau has committed the wallet (the others catch up with the first)."""
    deadline = time.monotonic() + timeout
    for node in stack.nodes:
        path = f"/v1/wallets/{WALLET}"
        while True:
            hdr = authorization_header(DRIVER, WALLET, "GET", path, node_id=node.node_id)
            if shared_client().get(node.url + path, headers={"Authorization": hdr}, timeout=5).status_code == 200:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.node_id} never had {WALLET}")
            time.sleep(0.1)


def test_a_signed_request_is_accepted_once_in_the_whole_network(stack):
    _wait_wallet(stack)
    path = f"/v1/wallets/{WALLET}"
    first = stack.nodes[0]
    hdr = {"Authorization": authorization_header(DRIVER, WALLET, "GET", path, node_id=first.node_id)}
    assert httpx.get(first.url + path, headers=hdr, timeout=5).status_code == 200
    r = httpx.get(first.url + path, headers=hdr, timeout=5)
    assert r.status_code == 401 and r.json()["error"] == "replayed"
    for node in stack.nodes[1:]:  # captured on its way to the first bureau, sent to the others
        r = shared_client().get(node.url + path, headers=hdr, timeout=5)
        assert r.status_code == 401 and r.json()["error"] == "wrong_node", (node.node_id, r.text)


def _fuzz(node, operation, mode, signed: bool, session: requests.Session) -> int:
    """Runs one operation's examples against `node`; returns how many requests it sent."""
    pinned = {"wallet_id": WALLET} if signed and "{wallet_id}" in operation.path else None
    sent = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=pinned))
    def run(case):
        kwargs = case.as_transport_kwargs(base_url=node.url)
        prepared = session.prepare_request(requests.Request(**{k: v for k, v in kwargs.items()
                                                              if k in ("method", "url", "params", "headers",
                                                                       "json", "data", "cookies")}))
        if signed:
            prepared.headers["Authorization"] = authorization_header(DRIVER, WALLET, prepared.method,
                                                                     prepared.path_url, node_id=node.node_id)
        response = session.send(prepared, timeout=10)
        sent.append(1)
        assert response.status_code < 500, (f"{prepared.method} {prepared.path_url} -> {response.status_code} "
                                            f"{response.text[:300]}")

    try:
        run()
    except Unsatisfiable:
        if mode is not schemathesis.GenerationMode.NEGATIVE:
            raise  # an operation with no input at all has no invalid form to send
    return len(sent)


def test_no_request_to_any_bureau_gets_a_server_error(stack):
    """Fuzzes every bureau through the document it serves: the first also answers phone
    authorizations, the others are plain validators."""
    _wait_wallet(stack)
    documents = [httpx.get(n.url + "/schema/openapi.json", timeout=10).json() for n in stack.nodes]
    assert all(d == documents[0] for d in documents)
    total = 0
    with requests.Session() as session:
        for node in stack.nodes:
            schema = schemathesis.openapi.from_url(node.url + "/schema/openapi.json")
            operations = [result.ok() for result in schema.get_all_operations()]
            assert len(operations) >= 10
            for operation in operations:
                driver_route = "{wallet_id}" in operation.path or operation.path.startswith("/v1/receipts")
                for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                    total += _fuzz(node, operation, mode, False, session)
                    if driver_route:
                        total += _fuzz(node, operation, mode, True, session)
    assert total > len(stack.nodes) * 10 * EXAMPLES
