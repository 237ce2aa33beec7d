"""Operator requests: signed with an operator key of the genesis in the drivers' scheme, and the
dashboard's session cookie made from the node's operator token."""

import pytest
from nacl.signing import SigningKey

from bureau.api.auth import ReplayGuard, authorization_header, check
from bureau.api.errors import Unauthorized
from bureau.api.operator_auth import SESSION_S, load_token, session_cookie, session_valid, token_matches

OPERATOR = SigningKey(b"\x07" * 32)
NOW = 1_760_000_000
PATH = "/metrics"
OPERATORS = {"operator-1": OPERATOR.verify_key.encode()}
TOKEN = "t" * 40


def _check(header, guard=None):
    return check(header, "GET", PATH, OPERATORS.get, guard or ReplayGuard(120), "bureau-1", now=NOW,
                 principal="operator")


def test_an_operator_request_is_accepted_once_for_its_bureau():
    guard = ReplayGuard(120)
    hdr = authorization_header(OPERATOR, "operator-1", "GET", PATH, node_id="bureau-1", ts=NOW, principal="operator")
    assert _check(hdr, guard) == "operator-1"
    with pytest.raises(Unauthorized) as e:
        _check(hdr, guard)
    assert e.value.reason == "replayed"


@pytest.mark.parametrize("header,reason", [
    # a driver's header is no operator's, even signed with the operator's key
    (authorization_header(OPERATOR, "operator-1", "GET", PATH, node_id="bureau-1", ts=NOW), "bad_auth"),
    (authorization_header(SigningKey.generate(), "operator-1", "GET", PATH, node_id="bureau-1", ts=NOW,
                          principal="operator"), "bad_signature"),
    (authorization_header(OPERATOR, "operator-2", "GET", PATH, node_id="bureau-1", ts=NOW,
                          principal="operator"), "bad_signature"),
    (authorization_header(OPERATOR, "operator-1", "GET", "/other", node_id="bureau-1", ts=NOW,
                          principal="operator"), "bad_signature"),
    (authorization_header(OPERATOR, "operator-1", "GET", PATH, node_id="bureau-2", ts=NOW,
                          principal="operator"), "wrong_node"),
    (None, "missing_auth"),
])
def test_operator_requests_that_do_not_hold_are_refused_with_the_reason(header, reason):
    with pytest.raises(Unauthorized) as e:
        _check(header)
    assert e.value.reason == reason


def test_the_session_cookie_holds_for_its_node_and_token_until_it_expires():
    cookie = session_cookie(TOKEN, "bureau-1", now=NOW)
    assert session_valid(cookie, TOKEN, "bureau-1", now=NOW + SESSION_S)
    assert not session_valid(cookie, TOKEN, "bureau-1", now=NOW + SESSION_S + 1)
    assert not session_valid(cookie, TOKEN, "bureau-2", now=NOW)
    assert not session_valid(cookie, "u" * 40, "bureau-1", now=NOW)  # the token changed: sessions end
    expires, mac = cookie.split(".")
    assert not session_valid(f"{int(expires) + 3600}.{mac}", TOKEN, "bureau-1", now=NOW)
    assert not session_valid(cookie, None, "bureau-1", now=NOW)
    for junk in ("", ".", "x.y", "1.", TOKEN):
        assert not session_valid(junk, TOKEN, "bureau-1", now=NOW)


def test_the_token_file_holds_one_long_word(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert load_token(path) == TOKEN and token_matches(TOKEN, TOKEN) and not token_matches(TOKEN[:-1], TOKEN)
    assert load_token(None) is None and not token_matches(TOKEN, None)
    for bad in ("short", "two words " + "x" * 40):
        path.write_text(bad)
        with pytest.raises(RuntimeError):
            load_token(path)
