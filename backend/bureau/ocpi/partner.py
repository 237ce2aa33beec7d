"""Calls to a roaming partner's OCPI API, which is a stranger on a hostile network: http(s) only,
TLS verified, no redirects, a short timeout, the whole answer within a deadline and a size bound
(docs/ocpi.md, "Registration")."""

from __future__ import annotations

import base64
import json
import time

import httpx

from .credentials import check_details, check_url, details_url, partner_unusable

TIMEOUT_S = 5.0  # to connect, and between two reads
DEADLINE_S = 10.0  # the whole answer
MAX_BYTES = 64 * 1024  # far above a versions list or a version's endpoints


def get_json(url: str, token: str, *, timeout_s: float = TIMEOUT_S, deadline_s: float = DEADLINE_S,
             max_bytes: int = MAX_BYTES):
    """The JSON of a GET of `url` with `Authorization: Token <base64 of token>`; a 3001
    CredentialsRefusal when the partner cannot be reached or answers anything but 200 with at
    most `max_bytes` of JSON in time."""
    try:
        check_url(url, "the partner's URL")
    except ValueError as e:
        raise partner_unusable(str(e)) from None
    headers = {"Authorization": "Token " + base64.b64encode(token.encode()).decode(), "Accept": "application/json",
               "Accept-Encoding": "identity"}  # raw bytes: the size bound is of what we parse, no inflation
    end = time.monotonic() + deadline_s
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, verify=True, trust_env=False) as client, \
                client.stream("GET", url, headers=headers) as resp:
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
    except httpx.HTTPError as e:
        raise partner_unusable(f"GET {url} failed: {type(e).__name__}: {e}") from None
    try:
        return json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError):
        raise partner_unusable(f"GET {url} did not answer JSON") from None


def check_partner(versions_url: str, token: str) -> list[dict]:
    """The partner's 2.2.1 endpoints, read as the credentials exchange asks: its versions, then the
    details of 2.2.1, both with its token; a CredentialsRefusal (3001, 3002) when that fails."""
    return check_details(get_json(details_url(get_json(versions_url, token)), token))

