"""Balance reads answered in front of Litestar (api/balance_reads.py) answer as the Litestar route
does: the same status, body and content type for a good request and for every refusal."""

from __future__ import annotations

from litestar.testing import TestClient
from nacl.signing import SigningKey

from bureau.api.app import create_app
from bureau.api.auth import authorization_header
from bureau.api.balance_reads import balance_wallet_id

PATH = "/v1/wallets/W-1001"


def _open(bureau, driver, other) -> None:
    for wallet_id, key in (("W-1001", driver), ("W-2002", other)):
        assert bureau.operator("open_wallet", {"wallet_id": wallet_id,
                                               "public_key": key.verify_key.encode().hex()})["status"] == "committed"
    assert bureau.operator("top_up", {"wallet_id": "W-1001", "amount_fen": 4321, "reference": "bank:1"})["status"] \
        == "committed"


def signed(key, wallet_id, path, **kw) -> dict:
    return {"Authorization": authorization_header(key, wallet_id, "GET", path, node_id="bureau-1", **kw)}


def _cases(driver, other) -> list[tuple[str, str, dict]]:
    """(name, path, headers) of one good read and each refusal; a fresh signature each call."""
    return [("own", PATH, signed(driver, "W-1001", PATH)),
            ("own with a query", PATH + "?x=1", signed(driver, "W-1001", PATH + "?x=1")),
            ("signed for another query", PATH + "?x=2", signed(driver, "W-1001", PATH + "?x=1")),
            ("missing_auth", PATH, {}),
            ("bad_auth", PATH, {"Authorization": "EV-Sig wallet=W-1001"}),
            ("other wallet", PATH, signed(other, "W-2002", PATH)),
            ("wrong key", PATH, signed(other, "W-1001", PATH)),
            ("unknown wallet", "/v1/wallets/W-9", signed(other, "W-9", "/v1/wallets/W-9")),
            ("stale", PATH, signed(driver, "W-1001", PATH, ts=1_000_000)),
            ("wrong node", PATH, {"Authorization": authorization_header(driver, "W-1001", "GET", PATH,
                                                                        node_id="bureau-2")})]


def _answer(client, path, headers):
    r = client.get(path, headers=headers)
    return r.status_code, r.headers["content-type"], r.json()


def test_balance_reads_answer_as_the_litestar_route(bureau):
    driver, other = SigningKey.generate(), SigningKey.generate()
    _open(bureau, driver, other)
    wrapped = create_app(bureau.node)
    plain = wrapped.app  # the Litestar app, as a client that reaches it directly sees it
    reached_litestar = []

    async def litestar(scope, receive, send):
        if scope["type"] == "http":
            reached_litestar.append(scope["path"])
        await plain(scope, receive, send)
    wrapped.app = litestar
    with TestClient(wrapped) as front, TestClient(plain) as route:
        for (name, path, headers), (_, _, twin) in zip(_cases(driver, other), _cases(driver, other)):
            assert _answer(front, path, headers) == _answer(route, path, twin), name
        assert reached_litestar == []  # every one of them answered in front
        status, _, body = _answer(front, PATH, signed(driver, "W-1001", PATH))
        assert (status, body["balance_fen"], body["height"]) == (200, 4321, bureau.node.chain.height)
        hdr = signed(driver, "W-1001", PATH)
        assert front.get(PATH, headers=hdr).status_code == 200
        assert front.get(PATH, headers=hdr).json()["error"] == "replayed"
        assert route.get(PATH, headers=hdr).json()["error"] == "replayed"  # one guard for both
        # what it does not answer goes on to Litestar: its history, other routes, other methods
        hist = PATH + "/history"
        assert front.get(hist, headers=signed(driver, "W-1001", hist)).status_code == 200
        assert front.post(PATH).status_code == 405
        slash = PATH + "/"  # Litestar's route, which reads the path without its trailing slash
        assert front.get(slash, headers=signed(driver, "W-1001", PATH)).json()["balance_fen"] == 4321
        assert reached_litestar == [hist, PATH, slash]


def test_only_a_balance_read_is_taken():
    def scope(path, method="GET", **kw):
        return {"type": "http", "method": method, "path": path, **kw}
    assert balance_wallet_id(scope("/v1/wallets/W-1")) == "W-1"
    for s in (scope("/v1/wallets/W-1", "POST"), scope("/v1/wallets/"), scope("/v1/wallets/W-1/"),
              scope("/v1/wallets/W-1/history"), scope("/v1/wallets"), scope("/v1/walletsW-1"),
              scope("/v1/wallets/W-1", root_path="/api"), {"type": "websocket", "path": "/v1/wallets/W-1"}):
        assert balance_wallet_id(s) is None, s
