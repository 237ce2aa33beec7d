"""Calls to a roaming partner's OCPI API, which is a stranger on a hostile network: http(s) only,
TLS verified, no redirects, a short timeout, the whole answer within a deadline and a size bound,
and only to addresses the node may reach (ocpi/addresses.py; docs/ocpi.md, "Registration")."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time

import httpx

from .addresses import Network, is_literal, refusal
from .credentials import check_details, check_url, details_url, partner_unusable

TIMEOUT_S = 5.0  # to connect, and between two reads
DEADLINE_S = 10.0  # the whole answer
MAX_BYTES = 64 * 1024  # far above a versions list or a version's endpoints


def resolve(host: str, allowed: tuple[Network, ...] = ()) -> list[str]:
    """Every address `host` (a name or an IP literal) resolves to, each one the node may reach; a
    3001 refusal naming the host and the address when any is not (ocpi/addresses.py)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise OSError("no address")
    except (OSError, UnicodeError) as e:
        raise partner_unusable(f"the partner's host {host} does not resolve: {e}") from None
    for address in addresses:
        kind = refusal(address, allowed)
        if kind is not None:
            named = host if host == address else f"{host} resolves to {address}, which"
            raise partner_unusable(f"the partner's host {named} is a {kind} address: the node fetches only "
                                   "globally routable ones and those of BUREAU_OCPI_PARTNER_NETWORKS")
    return addresses


def get_json(url: str, token: str, *, allowed: tuple[Network, ...] = (), timeout_s: float = TIMEOUT_S,
             deadline_s: float = DEADLINE_S, max_bytes: int = MAX_BYTES, verify: ssl.SSLContext | bool = True):
    """The JSON of a GET of `url` with `Authorization: Token <base64 of token>`; a 3001
    CredentialsRefusal when the partner cannot be reached or answers anything but 200 with at
    most `max_bytes` of JSON in time. The host is resolved once and the connection made to the
    address checked, so a name that resolves elsewhere meanwhile (DNS rebinding) changes nothing:
    the URL's host stays in the Host header, the TLS server name and the certificate's check."""
    try:
        check_url(url, "the partner's URL")
        target = httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as e:
        raise partner_unusable(str(e)) from None
    addresses = resolve(target.host, allowed)
    headers = {"Authorization": "Token " + base64.b64encode(token.encode()).decode(), "Accept": "application/json",
               "Accept-Encoding": "identity",  # raw bytes: the size bound is of what we parse, no inflation
               "Host": target.netloc.decode("ascii")}
    # an IP literal is its own TLS server name (checked against the certificate's IP addresses)
    extensions = {} if is_literal(target.host) else {"sni_hostname": target.host}
    end = time.monotonic() + deadline_s
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, verify=verify, trust_env=False) as client:
            for i, address in enumerate(addresses):
                try:
                    body = _read(client, target.copy_with(host=address), url, headers, extensions, end,
                                 deadline_s, max_bytes)
                    break
                except httpx.ConnectError:  # nothing sent yet: the host's next address
                    if i == len(addresses) - 1 or time.monotonic() > end:
                        raise
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise partner_unusable(f"GET {url} failed: {type(e).__name__}: {e}") from None
    try:
        return json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError):
        raise partner_unusable(f"GET {url} did not answer JSON") from None


def _read(client: httpx.Client, pinned: httpx.URL, url: str, headers: dict, extensions: dict, end: float,
          deadline_s: float, max_bytes: int) -> bytearray:
    """The body of a GET of `pinned` (`url` with its host replaced by the address to dial)."""
    with client.stream("GET", pinned, headers=headers, extensions=extensions) as resp:
        if resp.status_code != 200:
            raise partner_unusable(f"GET {url} answered HTTP {resp.status_code}")
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise partner_unusable(f"GET {url} answered more than {max_bytes} bytes")
        body = bytearray()
        for chunk in resp.iter_raw():
            body += chunk
            if len(body) > max_bytes:
                raise partner_unusable(f"GET {url} answered more than {max_bytes} bytes")
            if time.monotonic() > end:
                raise partner_unusable(f"GET {url} took longer than {deadline_s:g} s")
    return body


def check_partner(versions_url: str, token: str, allowed: tuple[Network, ...] = ()) -> list[dict]:
    """The partner's 2.2.1 endpoints, read as the credentials exchange asks: its versions, then the
    details of 2.2.1, both with its token; a CredentialsRefusal (3001, 3002) when that fails.
    `allowed`: networks the node may reach besides the globally routable ones."""
    return check_details(get_json(details_url(get_json(versions_url, token, allowed=allowed)), token,
                                  allowed=allowed))
