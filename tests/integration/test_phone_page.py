"""The phone page as a browser fetches it from a node: the page and its modules with their types
and a Content-Security-Policy that lets nothing in from elsewhere, Ed25519 from the pinned npm
package and nothing else of it, and other validators' heads readable from the page's origin."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from bureau.phone import ASSETS, NOBLE_DIR, STATIC, content_security_policy

ROOT = Path(__file__).resolve().parents[2]


class _Loads(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and "src" in a:
            self.loads.append(a["src"])
        if tag == "link" and "href" in a:
            self.loads.append(a["href"])


def test_the_page_and_its_modules_come_from_the_node_with_their_types(bureau):
    resp = bureau.client.get("/phone")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe" not in csp and "http" not in csp  # one validator: nobody else to ask
    assert resp.headers["x-content-type-options"] == "nosniff"
    page = _Loads()
    page.feed(resp.text)
    assert "/phone/assets/app.js" in page.loads and "/phone/assets/phone.css" in page.loads
    assert "http" not in resp.text  # no asset and no link elsewhere
    for name, media_type in ASSETS.items():
        asset = bureau.client.get(f"/phone/assets/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media_type), name
        assert asset.content == (STATIC / name).read_bytes()
    # every module the page imports is one the node serves
    imported = set()
    for name in (n for n in ASSETS if n.endswith(".js")):
        imported |= set(re.findall(r'from "\./([\w.]+)"', (STATIC / name).read_text()))
        imported |= set(re.findall(r'import\("(/[^"]+)"\)', (STATIC / name).read_text()))
    assert imported - set(ASSETS) == {"/assets/noble-ed25519/index.js"}, imported
    noble = bureau.client.get("/assets/noble-ed25519/index.js")
    assert noble.status_code == 200 and noble.headers["content-type"].startswith("text/javascript")
    assert noble.content == (NOBLE_DIR / "index.js").read_bytes()
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["@noble/ed25519"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned)
    assert json.loads((NOBLE_DIR / "package.json").read_text())["version"] == pinned


def test_nothing_else_is_served_and_the_head_is_readable_from_other_origins(bureau):
    for path in ("/phone/assets/phone.html", "/phone/assets/..%2F__init__.py", "/assets/noble-ed25519/index.ts",
                 "/assets/noble-ed25519/package.json"):
        resp = bureau.client.get(path)
        assert resp.status_code == 404 and resp.json()["error"] == "not_found", path
    head = bureau.client.get("/v1/chain/head")
    assert head.headers["access-control-allow-origin"] == "*"


def test_the_policy_lets_the_page_ask_the_other_validators_only():
    csp = content_security_policy(["http://127.0.0.1:8002", "http://127.0.0.1:8003"])
    assert "connect-src 'self' http://127.0.0.1:8002 http://127.0.0.1:8003;" in csp
