"""A node's operator-only endpoints (metrics, action status, dashboard) and what it shows there:
metrics with HELP and TYPE, chargers online from their retained status and last will through a
real mosquitto and its ACL, and log lines that say what was refused, in text and in JSON."""

import json
import logging

import paho.mqtt.client as paho
import pytest
from nacl.signing import SigningKey
from prometheus_client.parser import text_string_to_metric_families

import status as firmware_status
from bureau.api.auth import authorization_header
from bureau.logfmt import JsonFormatter
from bureau.receipts.codec import seal
from tests.integration.test_bureau_node import _receipt, _setup
from tests.support.waiting import wait_for

OPERATOR_ONLY = ("/metrics", "/v1/operator/actions/" + "ab" * 32, "/dashboard/data")


def _wait(condition, timeout=20.0, what="condition"):
    wait_for(condition, f"{what} not reached within {timeout} s", timeout, poll=0.05)


def _samples(bureau) -> dict:
    text = bureau.client.get("/metrics", headers={"Authorization": f"Bearer {bureau.operator_token}"}).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_operator_only_endpoints_refuse_everyone_else_with_401(bureau):
    driver = SigningKey.generate()
    for path in OPERATOR_ONLY:
        r = bureau.client.get(path)
        assert r.status_code == 401 and r.json()["error"] == "operator_auth_required", (path, r.text)
        r = bureau.client.get(path, headers={"Authorization": "Bearer " + "x" * 43})
        assert r.status_code == 401 and r.json()["error"] == "bad_token", (path, r.text)
        # a driver's signed request is no operator's
        hdr = authorization_header(driver, "W-1", "GET", path, node_id="bureau-1")
        r = bureau.client.get(path, headers={"Authorization": hdr})
        assert r.status_code == 401 and r.json()["error"] == "bad_auth", (path, r.text)
        # signed with a key that is not the genesis operator's
        hdr = authorization_header(driver, "operator-1", "GET", path, node_id="bureau-1", principal="operator")
        r = bureau.client.get(path, headers={"Authorization": hdr})
        assert r.status_code == 401 and r.json()["error"] == "bad_signature", (path, r.text)
    r = bureau.client.get("/dashboard")
    assert r.status_code == 401 and 'action="/dashboard/login"' in r.text and "operator token" in r.text
    assert r.headers["content-type"].startswith("text/html")
    # the operator, signed or with the token
    assert bureau.operator_get("/v1/operator/actions/" + "ab" * 32).json()["error"] == "unknown_tx"
    r = bureau.operator_get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    r = bureau.client.get("/dashboard/data", headers={"Authorization": f"Bearer {bureau.operator_token}"})
    assert r.status_code == 200 and r.json()["nodes"][0]["node_id"] == "bureau-1"


def test_the_dashboard_login_sets_a_strict_http_only_session(bureau):
    r = bureau.client.post("/dashboard/login", data={"token": "wrong" * 10}, follow_redirects=False)
    assert r.status_code == 401 and "not this node's operator token" in r.text
    assert "set-cookie" not in r.headers
    r = bureau.client.post("/dashboard/login", data={"token": bureau.operator_token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and bureau.operator_token not in cookie
    r = bureau.client.get("/dashboard")
    assert r.status_code == 200 and 'id="rate-chart"' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert bureau.client.get("/dashboard/data").status_code == 200
    bureau.client.post("/dashboard/logout", follow_redirects=False)
    assert bureau.client.get("/dashboard/data").status_code == 401


def test_metrics_follow_receipts_commits_and_chargers_coming_and_going(bureau, replies, mosquitto):
    charger, driver = SigningKey.generate(), SigningKey.generate()
    _setup(bureau, charger, driver)
    replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(1), charger))
    assert replies.next()[1]["type"] == "ack"
    replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(2), SigningKey.generate()))
    assert replies.next()[1]["reason"] == "bad_signature"

    # a charger online (its retained status), with its last will, then dropped without goodbye
    user, password = mosquitto.login("CH-ONLINE")
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=user)
    c.username_pw_set(user, password)
    c.will_set("ev/v1/charger/CH-ONLINE/status", firmware_status.offline_message("CH-ONLINE", "1.0"), 1, True)
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    c.publish("ev/v1/charger/CH-ONLINE/status",
              firmware_status.status_message("CH-ONLINE", "available", 100, "1.0"), 1, True).wait_for_publish(5)
    online = ("bureau_chargers_online", ())
    _wait(lambda: _samples(bureau)[online] == 1, what="one charger online")

    s = _samples(bureau)
    assert s[("bureau_committed_total", ())] == 1
    assert s[("bureau_rejected_total", (("reason", "bad_signature"),))] == 1
    assert s[("bureau_height", ())] == bureau.node.chain.height >= 4
    assert s[("bureau_mempool_size", ())] == 0 and s[("bureau_round", ())] == 0
    assert s[("bureau_peers_connected", ())] == 0
    assert s[("bureau_receipt_publish_to_commit_seconds_count", ())] == 1
    assert s[("bureau_commit_latency_seconds_count", ())] >= 4

    c.loop_stop()
    c.socket().close()  # the connection is lost: the broker publishes the will
    _wait(lambda: _samples(bureau)[online] == 0, what="the last will to count the charger offline")
    data = bureau.client.get("/dashboard/data", headers={"Authorization": f"Bearer {bureau.operator_token}"}).json()
    assert (data["chargers_online"], data["chargers_known"], data["receipts_committed"]) == (0, 1, 1)
    assert data["rejects"] == {"bad_signature": 1}


def _json_lines(caplog) -> list[dict]:
    fmt = JsonFormatter()
    return [json.loads(fmt.format(r)) for r in caplog.records]


def test_refusals_are_logged_with_what_who_and_why(bureau, replies, caplog):
    from bureau.ledger.tx import operator_action
    charger, driver = SigningKey.generate(), SigningKey.generate()
    _setup(bureau, charger, driver)
    with caplog.at_level(logging.INFO, logger="bureau"):
        tx = operator_action(bureau.operator_key, "operator-1", "top_up",
                             {"wallet_id": "W-NONE", "amount_fen": 5_000, "reference": "bank:none"})
        r = bureau.client.post("/v1/operator/actions", json={"tx": tx.hex()})
        assert r.status_code == 202, r.text
        _wait(lambda: bureau.operator_get(f"/v1/operator/actions/{r.json()['tx_hash']}").json()["status"] == "refused")
        replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(7), SigningKey.generate()))
        assert replies.next()[1]["reason"] == "bad_signature"
    texts = [r.getMessage() for r in caplog.records]
    assert any("operator action top_up by operator-1 refused: unknown_wallet" in t for t in texts), texts
    assert any("rejected receipt of charger GZ-TH-0001 seq 7: bad_signature" in t for t in texts), texts
    lines = _json_lines(caplog)
    op = next(d for d in lines if d.get("event") == "operator_action_refused")
    assert (op["action"], op["operator"], op["reason"], op["level"]) == ("top_up", "operator-1", "unknown_wallet",
                                                                         "WARNING")
    assert op["tx_hash"] == r.json()["tx_hash"] and op["logger"] == "bureau.node"
    rej = next(d for d in lines if d.get("event") == "receipt_rejected")
    assert (rej["charger_id"], rej["seq"], rej["reason"]) == ("GZ-TH-0001", 7, "bad_signature")
    assert rej["time"].endswith("Z") and rej["message"].startswith("rejected receipt of charger GZ-TH-0001 seq 7")
