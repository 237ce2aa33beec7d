"""The credentials module's core (bureau/ocpi/credentials.py) and the tokens file it changes
(bureau/ocpi/tokens.py): a partner's credentials object checked field by field, the step each
method takes with each kind of token, the partner's versions read; the tokens file read in both
formats, changed under its lock by rename, a registration token exchanged once."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from bureau.ocpi import credentials as cr
from bureau.ocpi import model
from bureau.ocpi.tokens import CREDENTIALS, HEADER, REGISTRATION, Entry, TokenBook, TokenFileError, digest, parse

PARTNER = {"token": "partner-token-B", "url": "https://emsp.example.com/ocpi/versions",
           "roles": [{"role": "EMSP", "party_id": "ABC", "country_code": "CN",
                      "business_details": {"name": "Example eMSP", "website": "https://emsp.example.com"}}]}


def _with(**changes) -> dict:
    return {**PARTNER, **changes}


def _role(**changes) -> dict:
    return _with(roles=[{**PARTNER["roles"][0], **changes}])


def test_a_good_credentials_object():
    got = cr.parse_credentials(PARTNER)
    assert (got.token, got.url) == ("partner-token-B", "https://emsp.example.com/ocpi/versions")
    assert got.roles == ({"role": "EMSP", "party_id": "ABC", "country_code": "CN"},)
    logo = {"url": "https://emsp.example.com/logo.png", "category": "OPERATOR", "type": "png", "width": 64}
    cr.parse_credentials(_role(business_details={"name": "E", "logo": logo}))


@pytest.mark.parametrize("body, field", [
    ([], "the body"),
    (_with(token=""), "token"),
    (_with(token="has space"), "token"),
    (_with(token="x" * 65), "token"),
    (_with(url="ftp://emsp.example.com/versions"), "url"),
    (_with(url="https:///nohost"), "url"),
    (_with(url="https://emsp.example.com:99999/"), "url"),
    (_with(url="https://e.example.com/" + "a" * 250), "url"),
    (_with(roles=[]), "roles"),
    (_with(roles="EMSP"), "roles"),
    (_role(role="DRIVER"), "roles[0].role"),
    (_role(party_id="ABCD"), "roles[0].party_id"),
    (_role(country_code="CHN"), "roles[0].country_code"),
    (_role(business_details=None), "roles[0].business_details"),
    (_role(business_details={"name": ""}), "roles[0].business_details.name"),
    (_role(business_details={"name": "E", "website": "javascript:alert(1)"}), "roles[0].business_details.website"),
    (_role(business_details={"name": "E", "logo": {"url": "https://x.example/l.png", "category": "CAT",
                                                   "type": "png"}}), "roles[0].business_details.logo.category"),
])
def test_a_bad_credentials_object_is_refused_with_2001_naming_the_field(body, field):
    with pytest.raises(cr.CredentialsRefusal) as e:
        cr.parse_credentials(body)
    assert (e.value.http_status, e.value.status_code, e.value.reason) == (400, model.INVALID_PARAMETERS,
                                                                         "bad_credentials")
    assert e.value.detail.startswith(field)


@pytest.mark.parametrize("method, kind, outcome", [
    ("POST", REGISTRATION, "register"), ("PUT", CREDENTIALS, "update"), ("DELETE", CREDENTIALS, "unregister"),
    ("GET", CREDENTIALS, "show"),
    ("POST", CREDENTIALS, 405), ("PUT", REGISTRATION, 405), ("DELETE", REGISTRATION, 405), ("GET", REGISTRATION, 405),
    ("POST", None, 401), ("GET", None, 401),
])
def test_the_step_of_each_method_and_token(method, kind, outcome):
    if isinstance(outcome, str):
        assert cr.step(method, kind) == outcome
    else:
        with pytest.raises(cr.CredentialsRefusal) as e:
            cr.step(method, kind)
        assert e.value.http_status == outcome and e.value.status_code == model.CLIENT_ERROR


def _ok(data) -> dict:
    return {"data": data, "status_code": 1000, "timestamp": "2026-12-01T10:00:00Z"}


def test_the_partners_versions_and_details():
    versions = _ok([{"version": "2.1.1", "url": "https://e.example/2.1.1"},
                    {"version": "2.2.1", "url": "https://e.example/2.2.1"}])
    assert cr.details_url(versions) == "https://e.example/2.2.1"
    endpoints = [{"identifier": "credentials", "role": "RECEIVER", "url": "https://e.example/2.2.1/credentials"}]
    assert cr.check_details(_ok({"version": "2.2.1", "endpoints": endpoints})) == endpoints


@pytest.mark.parametrize("answer, code", [
    ("not an object", 3001), ({"status_code": 1000}, 3001), ({**_ok([]), "status_code": 2000}, 3001),
    (_ok({"version": "2.2.1"}), 3001), (_ok([{"version": "2.1.1", "url": "https://e.example/2.1.1"}]), 3002),
    (_ok([{"version": "2.2.1", "url": "file:///etc/passwd"}]), 3001),
])
def test_unusable_versions_answers(answer, code):
    with pytest.raises(cr.CredentialsRefusal) as e:
        cr.details_url(answer)
    assert e.value.status_code == code


@pytest.mark.parametrize("answer", [_ok([]), _ok({"version": "2.1.1", "endpoints": []}),
                                    _ok({"version": "2.2.1", "endpoints": [{"identifier": "cdrs"}]})])
def test_unusable_version_details(answer):
    with pytest.raises(cr.CredentialsRefusal) as e:
        cr.check_details(answer)
    assert e.value.status_code == model.UNABLE_TO_USE_CLIENT_API


def test_our_credentials_object():
    ours = cr.our_credentials("C", "https://node.example/ocpi/versions", country_code="CN", party_id="CLG",
                              business_name="Example CPO")
    assert ours == {"token": "C", "url": "https://node.example/ocpi/versions",
                    "roles": [{"role": "CPO", "party_id": "CLG", "country_code": "CN",
                               "business_details": {"name": "Example CPO"}}]}


def _header(token: str) -> str:
    return f"Token {token}"


def test_the_first_format_still_reads_and_is_kept_when_rewritten(tmp_path):
    path = tmp_path / "tokens"
    old = "legacy-token"
    path.write_text(f"{digest(old)} CN*OLD\n# the operator's note\n")
    book = TokenBook(path)
    assert book.party(_header(old)) == "CN*OLD"
    new = book.issue("CN*NEW", REGISTRATION)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER and "# the operator's note" in lines
    assert book.party(_header(old)) == "CN*OLD"
    assert book.party(_header(new)) is None  # a registration token opens no data
    assert book.entry(_header(new))[1].kind == REGISTRATION
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and new not in path.read_text()


def test_a_newer_format_is_refused(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# bureau ocpi tokens v3\n{digest('t')} CN*ABC\n")
    with pytest.raises(TokenFileError):
        TokenBook(path).issue("CN*ABC")
    assert TokenBook(path).entry(_header("t")) is None  # the node takes no token from it


def test_a_registration_token_is_exchanged_once(tmp_path):
    path = tmp_path / "tokens"
    book = TokenBook(path)
    a = book.issue("CN*ABC", REGISTRATION)
    c = book.exchange(a, REGISTRATION, "partner-B", "https://e.example/versions")
    assert c is not None and book.entry(_header(a)) is None
    assert book.entry(_header(c))[1] == Entry(digest(c), "CN*ABC", CREDENTIALS, "https://e.example/versions",
                                              "partner-B")
    assert book.exchange(a, REGISTRATION, "partner-B2", "https://e.example/versions") is None
    assert [e for e in parse(path.read_text()) if isinstance(e, Entry)] == [book.entry(_header(c))[1]]
    assert book.revoke(c, CREDENTIALS) and book.entry(_header(c)) is None and not book.revoke(c, CREDENTIALS)


def test_concurrent_changes_lose_nothing(tmp_path):
    """Two books on one file (the node and the command line) issue at once: every token is kept."""
    path = tmp_path / "tokens"
    books = [TokenBook(path), TokenBook(path)]
    issued: list[str] = []

    def work(book):
        for _ in range(20):
            issued.append(book.issue("CN*ABC"))
    threads = [threading.Thread(target=work, args=(b,)) for b in books]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = TokenBook(path)
    assert all(reader.party(_header(t)) == "CN*ABC" for t in issued) and len(issued) == 40
