"""OCPI 2.2.1's credentials module on a real node (docs/ocpi.md, "Registration"), with a fake
roaming partner: a real HTTP server on loopback serving its versions and version details. A
registration token (`bureau ocpi issue-token --registration`) is exchanged once for a credentials
token; the partner's API is read with its own token first, and when it cannot be used (unreachable,
oversized, not JSON, no 2.2.1) the registration token keeps working and the tokens file does not
change; PUT rotates the credentials token, DELETE ends it, GET shows ours. The node fetches the
partner on loopback because BUREAU_OCPI_PARTNER_NETWORKS allows 127.0.0.0/8; a node without it
refuses to (docs/ocpi.md, "Which addresses the node fetches")."""

from __future__ import annotations

import base64
import json
import os
import ssl
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bureau.tools.mosquitto import free_port
from bureau.tools.pki import issue_server_cert, make_ca
from bureau.tools.stack import Stack
from tests.integration.test_commands import bureau
from tests.unit.test_ocpi_schema import ENVELOPE, check

PARTNER_TOKEN = "emsp-token-B-0123456789"


class Partner:
    """A roaming partner's OCPI API on 127.0.0.1: `mode` chooses what its versions endpoint
    answers; every Authorization header it got is kept."""

    def __init__(self, tls_dir=None) -> None:
        self.mode = "good"
        self.seen: list[tuple[str, str | None]] = []
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                partner.seen.append((self.path, self.headers.get("Authorization")))
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                if partner.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.end_headers()
                    return
                if self.path == "/ocpi/versions":
                    body = partner.versions(base)
                elif self.path == "/ocpi/2.2.1":
                    body = json.dumps({"data": {"version": "2.2.1", "endpoints": [
                        {"identifier": "credentials", "role": "RECEIVER", "url": base + "/ocpi/2.2.1/credentials"}]},
                        "status_code": 1000, "timestamp": "2026-12-01T10:00:00Z"}).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()  # no Content-Length: the node must bound what it reads itself
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls_dir is not None:  # a certificate of a CA nobody trusts
            make_ca(tls_dir / "ca.crt", tls_dir / "ca.key", "not a trusted CA")
            issue_server_cert(tls_dir / "ca.crt", tls_dir / "ca.key", tls_dir / "p.crt", tls_dir / "p.key",
                              "partner", ["127.0.0.1"])
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls_dir / "p.crt", tls_dir / "p.key")
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/ocpi/versions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def versions(self, base: str) -> bytes:
        if self.mode == "garbage":
            return b"<html>a captive portal</html>"
        if self.mode == "oversized":
            return json.dumps({"data": [{"version": "2.2.1", "url": base + "/ocpi/2.2.1"}], "status_code": 1000,
                               "pad": "x" * 200_000}).encode()
        versions = [{"version": "2.1.1", "url": base + "/ocpi/2.1.1"}]
        if self.mode == "good":
            versions.append({"version": "2.2.1", "url": base + "/ocpi/2.2.1"})
        return json.dumps({"data": versions, "status_code": 1000, "timestamp": "2026-12-01T10:00:00Z"}).encode()


@pytest.fixture(scope="module")
def partner():
    p = Partner()
    yield p
    p.server.shutdown()
    p.server.server_close()


@pytest.fixture(scope="module")
def untrusted_partner(tmp_path_factory):
    p = Partner(tmp_path_factory.mktemp("partner-tls"))
    yield p
    p.server.shutdown()
    p.server.server_close()


def _stack(root, **env: str) -> Stack:
    s = Stack(root / "stack", nodes_count=1).prepare()
    s.tokens_file = root / "ocpi-tokens"
    s.launch(node_env={"bureau-1": {"BUREAU_OCPI_TOKENS_FILE": str(s.tokens_file), "BUREAU_OCPI_PARTY_ID": "CLG",
                                    "BUREAU_OCPI_BUSINESS_NAME": "Chargeledger Shenzhen", **env}})
    return s


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = _stack(tmp_path_factory.mktemp("ocpi-credentials"), BUREAU_OCPI_PARTNER_NETWORKS="127.0.0.0/8")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def closed_stack(tmp_path_factory):
    """A node as deployed by default: it fetches only globally routable addresses."""
    s = _stack(tmp_path_factory.mktemp("ocpi-credentials-closed"))
    yield s
    s.stop()


@pytest.fixture()
def fresh(partner):
    partner.mode = "good"
    partner.seen.clear()
    return partner


def _auth(token: str | None) -> dict:
    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()} if token else {}


def _call(stack, method: str, path: str, token: str | None, body=None) -> httpx.Response:
    content = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    return httpx.request(method, stack.nodes[0].url + path, headers=_auth(token), content=content,
                         verify=stack.verify, timeout=60)


def _issue(stack, *flags: str) -> tuple[str, str]:
    p = bureau("ocpi", "issue-token", "--tokens-file", str(stack.tokens_file), "--party", "CN*ABC", *flags)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip(), p.stderr


def _ours(partner, token: str = PARTNER_TOKEN) -> dict:
    return {"token": token, "url": partner.url,
            "roles": [{"role": "EMSP", "party_id": "ABC", "country_code": "CN",
                       "business_details": {"name": "Example eMSP"}}]}


def _register(stack, partner) -> str:
    a, _ = _issue(stack, "--registration")
    resp = _call(stack, "POST", "/ocpi/2.2.1/credentials", a, _ours(partner))
    assert resp.status_code == 200 and resp.json()["status_code"] == 1000, resp.text
    return resp.json()["data"]["token"]


def test_registration_exchanges_token_a_for_token_c(stack, fresh):
    a, said = _issue(stack, "--registration")
    assert "registration token" in said
    assert _call(stack, "GET", "/ocpi/versions", a).status_code == 200  # A reads our versions first
    assert _call(stack, "GET", "/ocpi/2.2.1/tariffs", a).status_code == 401  # and nothing else
    resp = _call(stack, "POST", "/ocpi/2.2.1/credentials", a, _ours(fresh))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    check(body, ENVELOPE)
    ours = body["data"]
    c = ours["token"]
    assert c != a and 0 < len(c) <= 64
    assert ours["url"] == stack.nodes[0].url + "/ocpi/versions"
    assert ours["roles"] == [{"role": "CPO", "party_id": "CLG", "country_code": "CN",
                              "business_details": {"name": "Chargeledger Shenzhen"}}]
    # the node read the partner's versions, then its 2.2.1 details, with the partner's token B
    assert fresh.seen == [("/ocpi/versions", "Token " + base64.b64encode(PARTNER_TOKEN.encode()).decode()),
                          ("/ocpi/2.2.1", "Token " + base64.b64encode(PARTNER_TOKEN.encode()).decode())]
    assert _call(stack, "GET", "/ocpi/2.2.1/tariffs", c).status_code == 200
    assert _call(stack, "GET", "/ocpi/versions", a).status_code == 401
    again = _call(stack, "POST", "/ocpi/2.2.1/credentials", a, _ours(fresh))
    assert again.status_code == 401 and again.json()["status_code"] == 2000
    text = stack.tokens_file.read_text()
    assert a not in text and c not in text and PARTNER_TOKEN in text and fresh.url in text
    assert stat.S_IMODE(os.stat(stack.tokens_file).st_mode) == 0o600


@pytest.mark.parametrize("body", [
    b"{not json",
    {"token": PARTNER_TOKEN, "url": "http://127.0.0.1:9/ocpi/versions"},  # no roles
    {"token": "a token with spaces", "url": "http://127.0.0.1:9/ocpi/versions", "roles": []},
    "ROLES",
])
def test_a_bad_credentials_object_gets_2001_and_changes_nothing(stack, fresh, body):
    a, _ = _issue(stack, "--registration")
    before = stack.tokens_file.read_bytes()
    resp = _call(stack, "POST", "/ocpi/2.2.1/credentials", a, body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["status_code"] == 2001 and resp.json()["status_message"].startswith("bad_credentials")
    assert stack.tokens_file.read_bytes() == before and fresh.seen == []
    assert _call(stack, "GET", "/ocpi/versions", a).status_code == 200


@pytest.mark.parametrize("mode, code", [("unreachable", 3001), ("oversized", 3001), ("garbage", 3001),
                                        ("redirect", 3001), ("no-2.2.1", 3002)])
def test_a_partner_whose_api_cannot_be_used_keeps_token_a(stack, fresh, mode, code):
    a, _ = _issue(stack, "--registration")
    before = stack.tokens_file.read_bytes()
    fresh.mode = mode
    body = _ours(fresh)
    if mode == "unreachable":
        body["url"] = f"http://127.0.0.1:{free_port()}/ocpi/versions"
    resp = _call(stack, "POST", "/ocpi/2.2.1/credentials", a, body)
    assert resp.json()["status_code"] == code and resp.json()["data"] is None, resp.text
    assert stack.tokens_file.read_bytes() == before
    fresh.mode = "good"
    assert _call(stack, "GET", "/ocpi/versions", a).status_code == 200
    assert _call(stack, "POST", "/ocpi/2.2.1/credentials", a, _ours(fresh)).json()["status_code"] == 1000


def test_a_partner_whose_certificate_does_not_verify_gets_3001(stack, untrusted_partner):
    a, _ = _issue(stack, "--registration")
    before = stack.tokens_file.read_bytes()
    resp = _call(stack, "POST", "/ocpi/2.2.1/credentials", a, _ours(untrusted_partner))
    assert resp.json()["status_code"] == 3001 and "CERTIFICATE_VERIFY_FAILED" in resp.json()["status_message"]
    assert untrusted_partner.seen == [] and stack.tokens_file.read_bytes() == before
    assert _call(stack, "GET", "/ocpi/versions", a).status_code == 200


def test_a_second_post_is_405(stack, fresh):
    c = _register(stack, fresh)
    resp = _call(stack, "POST", "/ocpi/2.2.1/credentials", c, _ours(fresh))
    assert resp.status_code == 405 and resp.json()["status_code"] == 2000
    old, _ = _issue(stack)  # a credentials token handed over out of band counts as registered too
    assert _call(stack, "POST", "/ocpi/2.2.1/credentials", old, _ours(fresh)).status_code == 405


def test_put_rotates_the_credentials_token(stack, fresh):
    c = _register(stack, fresh)
    fresh.seen.clear()
    resp = _call(stack, "PUT", "/ocpi/2.2.1/credentials", c, _ours(fresh, "emsp-token-B-rotated"))
    assert resp.status_code == 200, resp.text
    c2 = resp.json()["data"]["token"]
    assert c2 != c and [path for path, _ in fresh.seen] == ["/ocpi/versions", "/ocpi/2.2.1"]
    assert _call(stack, "GET", "/ocpi/2.2.1/tariffs", c).status_code == 401
    assert _call(stack, "GET", "/ocpi/2.2.1/tariffs", c2).status_code == 200
    assert "emsp-token-B-rotated" in stack.tokens_file.read_text()
    a, _ = _issue(stack, "--registration")
    assert _call(stack, "PUT", "/ocpi/2.2.1/credentials", a, _ours(fresh)).status_code == 405


def test_delete_unregisters(stack, fresh):
    c = _register(stack, fresh)
    resp = _call(stack, "DELETE", "/ocpi/2.2.1/credentials", c)
    assert resp.status_code == 200 and resp.json()["status_code"] == 1000, resp.text
    assert _call(stack, "GET", "/ocpi/2.2.1/tariffs", c).status_code == 401
    assert _call(stack, "DELETE", "/ocpi/2.2.1/credentials", c).status_code == 401


def test_get_shows_ours(stack, fresh):
    c = _register(stack, fresh)
    resp = _call(stack, "GET", "/ocpi/2.2.1/credentials", c)
    assert resp.status_code == 200, resp.text
    ours = resp.json()["data"]
    assert ours["token"] == c and ours["url"] == stack.nodes[0].url + "/ocpi/versions"
    assert ours["roles"][0]["role"] == "CPO"
    assert _call(stack, "GET", "/ocpi/2.2.1/credentials", None).status_code == 401
    details = _call(stack, "GET", "/ocpi/2.2.1", c).json()["data"]["endpoints"]
    assert {"identifier": "credentials", "role": "SENDER",
            "url": stack.nodes[0].url + "/ocpi/2.2.1/credentials"} in details


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_node_without_partner_networks_does_not_fetch_loopback(closed_stack, fresh, host):
    a, _ = _issue(closed_stack, "--registration")
    before = closed_stack.tokens_file.read_bytes()
    body = _ours(fresh)
    body["url"] = fresh.url.replace("127.0.0.1", host)
    resp = _call(closed_stack, "POST", "/ocpi/2.2.1/credentials", a, body)
    assert resp.status_code == 200 and resp.json()["status_code"] == 3001, resp.text
    message = resp.json()["status_message"]
    assert message.startswith("partner_unusable: the partner's host") and "127.0.0.1" in message \
        and "loopback" in message, message
    assert fresh.seen == [] and closed_stack.tokens_file.read_bytes() == before
    assert _call(closed_stack, "GET", "/ocpi/versions", a).status_code == 200  # A still works
