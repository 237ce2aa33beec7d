"""The chargers' broker logins, made from the committed charger registry.

A charger's broker password is derived, never stored on chain: base64url of the first 24 bytes
of HMAC-SHA256(charger secret, "EV-BROKER-PASSWORD/v1\\n" ‖ charger id), 32 characters. The
secret (`broker/charger-secret` of bureau.tools.network, 32 bytes in hex) is held by the
operator's tooling, which writes the password into the charger's config when it flashes it, and
by whatever writes the broker's password file. The broker's file holds a login for exactly the
chargers enrolled and not retired at the head of the chain: a charger's login works once its
enrollment commits and stops once its retirement commits (docs/broker.md, "Charger logins").

`chargers_logins` is the pure part; `RegistryFollower` follows a node's API and rewrites the
broker's files (BrokerAccess.set_chargers) when the registry changes, then reloads the broker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from typing import Callable

import httpx

from .actions import Verify
from .httpclient import shared_client
from .mosquitto import BrokerAccess

log = logging.getLogger(__name__)
PASSWORD_TAG = b"EV-BROKER-PASSWORD/v1\n"


def charger_password(secret: bytes, charger_id: str) -> str:
    digest = hmac.new(secret, PASSWORD_TAG + charger_id.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode("ascii")


def charger_logins(secret: bytes, chargers: list[str]) -> dict[str, str]:
    """charger id -> broker password of each charger in the registry."""
    return {cid: charger_password(secret, cid) for cid in chargers}


class RegistryFollower:
    """Polls a node for its head; when the height moves, reads the registry (GET /v1/chargers)
    and, when the chargers changed, rewrites the broker's logins and calls `on_change` (SIGHUP
    to mosquitto). A node that cannot be reached leaves the logins as they are."""

    def __init__(self, node_url: str, access: BrokerAccess, secret: bytes, *, on_change: Callable[[], None],
                 verify: Verify = True, interval_s: float = 0.2) -> None:
        self.node_url = node_url.rstrip("/")
        self.access, self.secret, self.on_change = access, secret, on_change
        self.verify, self.interval_s = verify, interval_s
        self.height = -1  # of the registry the broker's files hold
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-registry", daemon=True)

    def sync(self) -> bool:
        """One look at the node; True when the broker's logins changed."""
        http = shared_client(self.verify)
        head = http.get(self.node_url + "/v1/chain/head", timeout=5).raise_for_status().json()["height"]
        if head == self.height:
            return False
        registry = http.get(self.node_url + "/v1/chargers", timeout=5).raise_for_status().json()
        changed = self.access.set_chargers(charger_logins(self.secret, registry["chargers"]))
        self.height = registry["height"]
        if changed:
            log.info("broker logins: %d chargers at height %d", len(registry["chargers"]), self.height)
            self.on_change()
        return changed

    def start(self) -> "RegistryFollower":
        self.sync()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except (httpx.HTTPError, ValueError, KeyError) as e:
                log.warning("broker logins not refreshed: %s", e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
