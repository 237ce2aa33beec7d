"""Driver request signatures: bound to one bureau, accepted once in the whole network."""

import pytest
from nacl.signing import SigningKey

from bureau.api.auth import ReplayGuard, authorization_header, check
from bureau.api.errors import ApiError, Unauthorized

DRIVER = SigningKey(b"\x05" * 32)
NOW = 1_760_000_000
PATH = "/v1/wallets/W-1"


def _key_of(wallet_id):
    return DRIVER.verify_key.encode() if wallet_id == "W-1" else None


def _reason(header, node_id, guard, now=NOW):
    with pytest.raises(Unauthorized) as e:
        check(header, "GET", PATH, _key_of, guard, node_id, now=now)
    return e.value.reason


def test_a_request_is_accepted_once_and_only_by_the_bureau_it_names():
    guards = {n: ReplayGuard(120) for n in ("bureau-1", "bureau-2", "bureau-3", "bureau-4")}
    hdr = authorization_header(DRIVER, "W-1", "GET", PATH, node_id="bureau-1", ts=NOW)
    assert check(hdr, "GET", PATH, _key_of, guards["bureau-1"], "bureau-1", now=NOW) == "W-1"
    assert _reason(hdr, "bureau-1", guards["bureau-1"]) == "replayed"
    for other in ("bureau-2", "bureau-3", "bureau-4"):  # each with its own memory of nonces
        assert _reason(hdr, other, guards[other]) == "wrong_node"


def test_the_bureau_named_is_covered_by_the_signature():
    hdr = authorization_header(DRIVER, "W-1", "GET", PATH, node_id="bureau-1", ts=NOW)
    moved = hdr.replace("node=bureau-1", "node=bureau-2")
    assert _reason(moved, "bureau-2", ReplayGuard(120)) == "bad_signature"


def test_headers_without_a_bureau_or_of_the_old_form_are_refused():
    guard = ReplayGuard(120)
    hdr = authorization_header(DRIVER, "W-1", "GET", PATH, node_id="bureau-1", ts=NOW)
    assert _reason(hdr.replace("node=bureau-1,", ""), "bureau-1", guard) == "bad_auth"
    assert _reason(None, "bureau-1", guard) == "missing_auth"
    stale = authorization_header(DRIVER, "W-1", "GET", PATH, node_id="bureau-1", ts=NOW - 121)
    assert _reason(stale, "bureau-1", guard) == "stale_request"


def test_the_replay_guard_forgets_a_nonce_only_once_it_expired():
    guard = ReplayGuard(120)
    assert guard.first_use("wallet:W-1", "aa" * 8, NOW, NOW)
    assert guard.first_use("wallet:W-1", "bb" * 8, NOW + 1, NOW)
    for now in (NOW, NOW + 120):  # swept in this second already, then in a later one
        assert not guard.first_use("wallet:W-1", "aa" * 8, NOW, now)
    assert guard.first_use("wallet:W-1", "aa" * 8, NOW + 1, NOW + 121)  # expired and forgotten: a new request
    assert not guard.first_use("wallet:W-1", "bb" * 8, NOW + 1, NOW + 121)


def test_the_replay_guard_refuses_past_its_limit_and_forgets_no_nonce_that_could_be_replayed():
    guard = ReplayGuard(120, limit=3)
    long_lived = authorization_header(DRIVER, "W-1", "GET", PATH, node_id="bureau-1", ts=NOW + 120)
    assert check(long_lived, "GET", PATH, _key_of, guard, "bureau-1", now=NOW) == "W-1"
    for i in range(2):
        assert guard.first_use("wallet:W-2", f"{i:016x}", NOW, NOW)
    with pytest.raises(ApiError) as e:  # full: refused, not taken by forgetting one
        guard.first_use("wallet:W-2", "ff" * 8, NOW, NOW + 1)
    assert e.value.reason == "busy"
    for now in (NOW + 1, NOW + 120):
        assert _reason(long_lived, "bureau-1", guard, now=now) == "replayed"
    assert guard.first_use("wallet:W-2", "ff" * 8, NOW, NOW + 121)  # the two of ts NOW expired: room again
    assert _reason(long_lived, "bureau-1", guard, now=NOW + 240) == "replayed"  # its ts + 120 s not passed yet
    assert len(guard._seen) == 1  # by then only it is kept


def test_one_wallet_cannot_fill_the_replay_guard_for_everyone():
    guard = ReplayGuard(120, limit=10, per_principal=3)
    for i in range(3):
        assert guard.first_use("wallet:W-NOISY", f"{i:016x}", NOW + 120, NOW)  # signed ahead, kept longest
    with pytest.raises(ApiError) as e:
        guard.first_use("wallet:W-NOISY", "ff" * 8, NOW, NOW)
    assert e.value.reason == "too_many_requests"
    for i in range(7):  # the others still have the rest of the guard
        assert guard.first_use(f"wallet:W-{i}", "aa" * 8, NOW, NOW)
    with pytest.raises(ApiError) as full:
        guard.first_use("wallet:W-LATE", "aa" * 8, NOW, NOW)
    assert full.value.reason == "busy"
    assert guard.first_use("wallet:W-NOISY", "ff" * 8, NOW, NOW + 241)  # its nonces expired: its share is back
    assert guard._held == {"wallet:W-NOISY": 1}


def test_a_wallet_whose_key_changed_is_verified_with_its_new_key():
    phone = SigningKey(b"\x06" * 32)
    keys = {"W-1": DRIVER.verify_key.encode()}
    guard = ReplayGuard(120)
    old = authorization_header(DRIVER, "W-1", "GET", PATH, node_id="bureau-1", ts=NOW)
    assert check(old, "GET", PATH, keys.get, guard, "bureau-1", now=NOW) == "W-1"  # the old key, verified once
    keys["W-1"] = phone.verify_key.encode()  # a phone bound: the wallet answers to its key only
    again = authorization_header(DRIVER, "W-1", "GET", PATH, node_id="bureau-1", ts=NOW)
    with pytest.raises(Unauthorized) as e:
        check(again, "GET", PATH, keys.get, guard, "bureau-1", now=NOW)
    assert e.value.reason == "bad_signature"
    new = authorization_header(phone, "W-1", "GET", PATH, node_id="bureau-1", ts=NOW)
    assert check(new, "GET", PATH, keys.get, guard, "bureau-1", now=NOW) == "W-1"
