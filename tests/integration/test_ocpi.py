"""OCPI 2.2.1 out of a real node (docs/ocpi.md): a partner with a credentials token issued by
`bureau ocpi issue-token` reads the tariffs and the CDRs of committed OCPP bills, in OCPI's
envelope, paged by offset/limit with X-Total-Count and the Link to the next page, filtered by
date_from/date_to; the meter's OCMF record is the CDR's signed_data; a missing or unknown token
and bad parameters get OCPI's status codes. The chain with the OCPP bills re-verifies from genesis."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import time

import httpx
import pytest
from ocpp.v16 import call as call16

from bureau.ocpp import password
from bureau.tools.mosquitto import free_port
from bureau.tools.pki import client_tls_context
from bureau.tools.stack import Stack
from tests.integration.test_commands import bureau
from tests.integration.test_ocpp_csms import SECRET, _energy_v16
from tests.support.ocmf_meter import OcmfMeter
from tests.support.ocpp_station import iso, station
from tests.unit.test_ocpi_schema import CDR, ENVELOPE, LOCATION, TARIFF, check

METER = OcmfMeter(21)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("ocpi")
    port = free_port()
    s = Stack(root / "stack", nodes_count=1, tls=True).prepare()
    s.tokens_file = root / "ocpi-tokens"
    s.launch(node_env={"bureau-1": {"BUREAU_OCPP_PORT": str(port), "BUREAU_OCPI_TOKENS_FILE": str(s.tokens_file),
                                    "BUREAU_OCPI_PARTY_ID": "CLG", "BUREAU_OCPI_BUSINESS_NAME": "Chargeledger"}})
    s.operator([("enroll_ocpp_charger", {"charger_id": "CP-LOC-1", "ocpp_version": "1.6",
                                         "password_digest": password.make_digest(SECRET),
                                         "ocmf_key": METER.public_key_hex, "location": LOCATION}),
                ("open_wallet", {"wallet_id": "W-OCPI", "cards": ["04E1E1E1E1"]})])
    s.operator([("top_up", {"wallet_id": "W-OCPI", "amount_fen": 50_000, "reference": "bank:ocpi"})])
    t0 = int(time.time()) - 3000

    async def sessions():
        async with station(port, "CP-LOC-1", SECRET, "1.6", client_tls_context(s.ca_file)) as cp:
            for i in range(3):
                begin, end = 10_000 + 3000 * i, 12_000 + 3000 * i
                start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="04E1E1E1E1", meter_start=begin,
                                                              timestamp=iso(t0 + 900 * i)))
                await cp.call(call16.StopTransaction(
                    meter_stop=end, timestamp=iso(t0 + 900 * i + 600), transaction_id=start.transaction_id,
                    transaction_data=_energy_v16(t0 + 900 * i + 600, end, METER.record(begin, end) if i else None)))

    asyncio.run(sessions())
    issued = bureau("ocpi", "issue-token", "--tokens-file", str(s.tokens_file), "--party", "CN*ABC")
    assert issued.returncode == 0, issued.stderr
    s.ocpi_token = issued.stdout.strip()
    yield s
    s.stop()


def _get(stack, path: str, token: str | None = None, **params) -> httpx.Response:
    token = stack.ocpi_token if token is None else token
    headers = {"Authorization": "Token " + base64.b64encode(token.encode()).decode()} if token else {}
    return httpx.get(stack.nodes[0].url + path, params=params, headers=headers, verify=stack.verify, timeout=30)


def test_the_tokens_file_keeps_only_the_tokens_digest(stack):
    assert stack.ocpi_token not in stack.tokens_file.read_text()


def test_the_version_endpoints_name_the_modules_served(stack):
    versions = _get(stack, "/ocpi/versions").json()
    check(versions, ENVELOPE)
    assert versions["data"] == [{"version": "2.2.1", "url": stack.nodes[0].url + "/ocpi/2.2.1"}]
    details = _get(stack, "/ocpi/2.2.1").json()["data"]
    assert {(e["identifier"], e["role"]) for e in details["endpoints"]} == {("cdrs", "SENDER"), ("credentials", "SENDER"),
                                                                            ("tariffs", "SENDER")}
    assert all(e["url"].startswith(stack.nodes[0].url + "/ocpi/2.2.1/") for e in details["endpoints"])
    assert _get(stack, "/ocpi/versions", "").status_code == 401


def test_tariffs_in_ocpis_envelope(stack):
    resp = _get(stack, "/ocpi/2.2.1/tariffs")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    check(body, ENVELOPE)
    assert body["status_code"] == 1000 and resp.headers["X-Total-Count"] == "1"
    (tariff,) = body["data"]
    check(tariff, TARIFF)
    assert (tariff["id"], tariff["party_id"], tariff["currency"]) == ("GD-2026-A.1", "CLG", "CNY")


def test_cdrs_paged_with_the_meters_signed_data(stack):
    first = _get(stack, "/ocpi/2.2.1/cdrs", limit=2)
    assert first.status_code == 200, first.text
    assert (first.headers["X-Total-Count"], first.headers["X-Limit"]) == ("3", "2")
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"') and "offset=2" in link
    rest = httpx.get(link[1:link.index(">")], headers={"Authorization": "Token " + base64.b64encode(
        stack.ocpi_token.encode()).decode()}, verify=stack.verify, timeout=30)
    assert "Link" not in rest.headers
    cdrs = first.json()["data"] + rest.json()["data"]
    for cdr in cdrs:
        check(cdr, CDR)
    assert [c["total_energy"] for c in cdrs] == [2.0, 2.0, 2.0]
    assert [("signed_data" in c) for c in cdrs] == [False, True, True]  # the first session sent no OCMF record
    signed = cdrs[1]["signed_data"]
    assert signed["encoding_method"] == "OCMF" and signed["public_key"] == METER.public_key_hex
    assert signed["signed_values"][0]["signed_data"].startswith("OCMF|")
    assert cdrs[0]["cdr_location"]["coordinates"] == {"latitude": "22.54310", "longitude": "114.05787"}
    assert len({c["id"] for c in cdrs}) == 3


def test_date_filters(stack):
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _get(stack, "/ocpi/2.2.1/cdrs", date_from=later).json()["data"] == []
    assert len(_get(stack, "/ocpi/2.2.1/cdrs", date_to=later).json()["data"]) == 3
    assert _get(stack, "/ocpi/2.2.1/cdrs", date_to="2020-01-01T00:00:00Z").headers["X-Total-Count"] == "0"


@pytest.mark.parametrize("token, params, http, code", [
    ("", {}, 401, 2000),
    ("not-a-token-we-issued", {}, 401, 2000),
    (None, {"limit": "0"}, 400, 2001),
    (None, {"offset": "-1"}, 400, 2001),
    (None, {"date_from": "yesterday"}, 400, 2001),
])
def test_refusals_in_ocpis_status_codes(stack, token, params, http, code):
    for path in ("/ocpi/2.2.1/cdrs", "/ocpi/2.2.1/tariffs"):
        resp = _get(stack, path, token, **params)
        assert resp.status_code == http, resp.text
        body = resp.json()
        check(body, ENVELOPE)
        assert body["status_code"] == code and body["data"] is None and body["status_message"]


def test_the_chain_with_ocpp_bills_verifies_from_genesis(stack):
    db = stack.nodes[0].data_dir / "ledger.db"
    p = bureau("verify-chain", "--genesis", str(stack.genesis_path), "--db", str(db))
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["chain_valid"] is True
