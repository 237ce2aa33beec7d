"""Which addresses the node fetches a roaming partner's API from (bureau/ocpi/addresses.py, the
I/O in bureau/ocpi/partner.py): only globally routable ones unless BUREAU_OCPI_PARTNER_NETWORKS
adds networks; the host resolved once and the connection made to the address checked, the name
kept for the Host header and TLS. The fake partner is on 127.0.0.1; names are resolved by a
stand-in for getaddrinfo, so nothing leaves loopback (a public address is only ever judged)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bureau.ocpi import model
from bureau.ocpi.addresses import parse_networks, refusal
from bureau.ocpi.credentials import CredentialsRefusal
from bureau.ocpi.partner import get_json
from bureau.tools.pki import issue_server_cert, make_ca

LAB = parse_networks("127.0.0.0/8")


@pytest.mark.parametrize("address, allowed, kind", [
    ("8.8.8.8", (), None),
    ("2001:4860:4860::8888", (), None),
    ("127.0.0.1", (), "loopback"),
    ("127.3.4.5", (), "loopback"),
    ("::1", (), "loopback"),
    ("::ffff:127.0.0.1", (), "loopback"),
    ("0.0.0.0", (), "unspecified"),
    ("::", (), "unspecified"),
    ("169.254.169.254", (), "link-local"),
    ("fe80::1", (), "link-local"),
    ("10.1.2.3", (), "private"),
    ("172.16.0.1", (), "private"),
    ("192.168.1.1", (), "private"),
    ("::ffff:10.0.0.1", (), "private"),
    ("fd00::1", (), "private"),
    ("100.64.1.1", (), "shared (carrier-grade NAT)"),
    ("224.0.0.1", (), "multicast"),
    ("ff02::1", (), "multicast"),
    ("240.0.0.1", (), "private"),  # reserved for future use: Python counts it private too
    ("fec0::1", (), "site-local"),
    ("::7f00:1", (), "reserved"),  # IPv4-compatible ::127.0.0.1
    ("2002:7f00:1::", (), "loopback"),  # 6to4 of 127.0.0.1
    ("2002:808:808::", (), None),  # 6to4 of 8.8.8.8
    ("127.0.0.1", LAB, None),
    ("::ffff:127.0.0.1", LAB, None),
    ("::1", LAB, "loopback"),  # an IPv4 network allows no IPv6 address
    ("10.20.1.1", parse_networks("10.20.0.0/16"), None),
    ("10.21.1.1", parse_networks("10.20.0.0/16"), "private"),
    ("169.254.169.254", parse_networks("127.0.0.0/8, 10.20.0.0/16"), "link-local"),
])
def test_the_address_policy(address, allowed, kind):
    assert refusal(address, allowed) == kind


def test_partner_networks_parse_or_name_the_bad_item():
    assert parse_networks("") == () and [str(n) for n in parse_networks(" 127.0.0.0/8,,::1 ")] == ["127.0.0.0/8",
                                                                                                 "::1/128"]
    for bad, says in (("10.20.0.1/16", "host bits set"), ("127.0.0.0/8,lab", "'lab' does not appear")):
        with pytest.raises(ValueError, match=says):
            parse_networks(bad)


class Partner:
    """A versions endpoint on 127.0.0.1 (HTTPS with `cert` = (cert file, key file)); keeps the
    path and Host header of every request and the TLS server name of every handshake."""

    def __init__(self, cert=None) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.server_names: list[str | None] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                seen.append((self.path, self.headers.get("Host")))
                body = json.dumps({"data": [], "status_code": 1000, "timestamp": "2026-12-01T10:00:00Z"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        if cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*cert)
            ctx.sni_callback = lambda sock, name, _ctx: self.server_names.append(name)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def partner():
    p = Partner()
    yield p
    p.close()


@pytest.fixture()
def names(monkeypatch):
    """A stand-in DNS for names under .test: `names[host]` is the list of answers, one per
    lookup (the last one repeats); every lookup of such a name is counted in `names.looked_up`."""
    real = socket.getaddrinfo

    class Names(dict):
        looked_up: list[str]

    table = Names()
    table.looked_up = []

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".test"):
            table.looked_up.append(host)
            answers = table[host]
            addresses = answers.pop(0) if len(answers) > 1 else answers[0]
            if not addresses:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (a, port or 0)) for a in addresses]
        return real(host, port, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def _refused(url: str, **kwargs) -> str:
    with pytest.raises(CredentialsRefusal) as e:
        get_json(url, "token-B", **kwargs)
    assert (e.value.status_code, e.value.reason) == (model.UNABLE_TO_USE_CLIENT_API, "partner_unusable")
    return e.value.detail


def test_a_name_is_resolved_once_and_the_checked_address_dialled(partner, names):
    # a rebinding name: checked as 127.0.0.1, then it would say 127.0.0.2, where nothing listens
    names["partner.test"] = [["127.0.0.1"], ["127.0.0.2"]]
    url = f"http://partner.test:{partner.port}/ocpi/versions"
    assert get_json(url, "token-B", allowed=LAB)["status_code"] == 1000
    assert names.looked_up == ["partner.test"]
    assert partner.seen == [("/ocpi/versions", f"partner.test:{partner.port}")]  # the Host header is the name


def test_an_address_that_refuses_the_connection_gives_way_to_the_next(partner, names):
    names["partner.test"] = [["127.0.0.2", "127.0.0.1"]]  # nothing listens on 127.0.0.2
    assert get_json(f"http://partner.test:{partner.port}/ocpi/versions", "token-B", allowed=LAB)["data"] == []
    assert names.looked_up == ["partner.test"] and len(partner.seen) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "0.0.0.0", "2130706433", "localhost"])
def test_a_loopback_url_is_refused_without_the_setting(partner, host):
    detail = _refused(f"http://{host}:{partner.port}/ocpi/versions")
    assert "loopback" in detail or "unspecified" in detail, detail
    assert "BUREAU_OCPI_PARTNER_NETWORKS" in detail and partner.seen == []


def test_ipv6_loopback_is_refused():
    assert "::1 is a loopback address" in _refused("http://[::1]:9/ocpi/versions")


def test_a_name_with_any_internal_address_is_refused_naming_it(partner, names):
    names["partner.test"] = [["8.8.8.8", "169.254.169.254"]]  # judged only: refused before any connection
    detail = _refused(f"http://partner.test:{partner.port}/ocpi/versions")
    assert detail.startswith("the partner's host partner.test resolves to 169.254.169.254, which is a link-local "
                             "address"), detail
    names["metadata.test"] = [["127.0.0.1"]]
    assert "loopback" in _refused(f"http://metadata.test:{partner.port}/", allowed=parse_networks("10.0.0.0/8"))
    assert partner.seen == []


def test_a_name_that_does_not_resolve_is_3001(names):
    names["nowhere.test"] = [[]]
    assert _refused("http://nowhere.test/ocpi/versions").startswith("the partner's host nowhere.test does not resolve")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("partner-pki")
    make_ca(d / "ca.crt", d / "ca.key", "partner test CA")
    for name in ("partner.test", "other.test"):
        issue_server_cert(d / "ca.crt", d / "ca.key", d / f"{name}.crt", d / f"{name}.key", name, [name])
    return d


def test_tls_verifies_the_certificate_against_the_name_not_the_address(pki, names):
    names["partner.test"] = [["127.0.0.1"]]
    trusted = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    good = Partner((pki / "partner.test.crt", pki / "partner.test.key"))
    wrong = Partner((pki / "other.test.crt", pki / "other.test.key"))
    try:
        url = f"https://partner.test:{good.port}/ocpi/versions"
        assert get_json(url, "token-B", allowed=LAB, verify=trusted)["status_code"] == 1000
        assert good.server_names == ["partner.test"] and good.seen == [("/ocpi/versions", f"partner.test:{good.port}")]
        detail = _refused(f"https://partner.test:{wrong.port}/ocpi/versions", allowed=LAB, verify=trusted)
        assert "CERTIFICATE_VERIFY_FAILED" in detail and "partner.test" in detail, detail
        assert wrong.seen == []
    finally:
        good.close()
        wrong.close()
