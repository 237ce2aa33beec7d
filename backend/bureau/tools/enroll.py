"""Enrolling a charger from what it announced: its retained enrollment message on the broker
(ev/v1/charger/<id>/enroll, firmware/core/status.py) is read and its key enrolled on chain by a
signed operator action (`enroll_charger`) through a bureau node's API. Used by the technician's
`just flash` (scripts/flash.py) and by `just up` for its simulated chargers."""

from __future__ import annotations

import json
import queue
import re
from pathlib import Path

import httpx
import paho.mqtt.client as paho
from nacl.signing import SigningKey

from ..crypto import KeyFileError, load_key
from ..ledger.tx import operator_action
from .actions import ActionRefused, Verify, submit_action, wait_committed

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class EnrollError(Exception):
    """Why a charger could not be enrolled: a short machine reason and a human detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def enroll_topic(charger_id: str) -> str:
    return f"ev/v1/charger/{charger_id}/enroll"


def load_operator_key(path: Path) -> SigningKey:
    """The operator's signing key (32-byte seed in hex). A missing file is an error: a new key
    would be one the chain does not know."""
    try:
        return load_key(path)
    except KeyFileError as e:
        raise EnrollError("no_operator_key" if e.reason == "missing" else "bad_operator_key", e.detail) from None


def parse_enrollment(payload: bytes, charger_id: str) -> dict:
    """The enrollment message of `charger_id`, checked: {"v": 1, "charger_id", "public_key",
    "meter_serial", "firmware"}."""
    try:
        msg = json.loads(payload)
    except ValueError:
        raise EnrollError("malformed", "the enrollment message is not JSON") from None
    if not isinstance(msg, dict) or msg.get("v") != 1:
        raise EnrollError("unsupported_version", "the enrollment message must have \"v\": 1")
    if msg.get("charger_id") != charger_id:
        raise EnrollError("wrong_charger", f"the message names charger {msg.get('charger_id')!r}, not {charger_id!r}")
    if not isinstance(msg.get("public_key"), str) or not _HEX64.match(msg["public_key"]):
        raise EnrollError("malformed", "public_key must be 64 lowercase hex digits")
    return msg


def read_enrollment(host: str, port: int, charger_id: str, *, timeout: float = 60.0, username: str | None = None,
                    password: str | None = None, ca_file: Path | None = None) -> dict:
    """Wait up to `timeout` seconds for the charger's retained enrollment message; over TLS
    verified against `ca_file` when given."""
    got: queue.Queue = queue.Queue()
    failed: list[str] = []
    # the broker forces the client id to the user name (use_username_as_clientid)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=username or f"enroll-{charger_id}")
    if username is not None:
        client.username_pw_set(username, password)
    if ca_file is not None:
        client.tls_set(ca_certs=str(ca_file))

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            failed.append(str(reason_code))
            got.put(None)
        else:
            c.subscribe(enroll_topic(charger_id), qos=1)

    client.on_connect = on_connect
    client.on_message = lambda c, u, m: got.put(m.payload)
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise EnrollError("broker_unreachable", f"cannot reach the broker at {host}:{port}: {e}") from None
    client.loop_start()
    try:
        try:
            payload = got.get(timeout=timeout)
        except queue.Empty:
            raise EnrollError("no_enrollment", f"no enrollment message from {charger_id} on {enroll_topic(charger_id)} "
                                               f"within {timeout:.0f} s (is it powered and on the network?)") from None
        if payload is None:
            raise EnrollError("broker_refused", f"the broker at {host}:{port} refused the login: {failed[0]}")
        return parse_enrollment(payload, charger_id)
    finally:
        client.loop_stop()
        client.disconnect()


def operator_id_of(genesis: dict, key: SigningKey) -> str:
    """The genesis operator whose key this is."""
    public = key.verify_key.encode().hex()
    for op in genesis.get("operators", []):
        if op.get("public_key") == public:
            return op["id"]
    raise EnrollError("unknown_operator", "the operator key is not one of the genesis operators")


def enrolled_key(node_url: str, charger_id: str, verify: Verify = True) -> str | None:
    """The public key (hex) the chain has for `charger_id`, None when it is not enrolled."""
    r = httpx.get(f"{node_url}/v1/chargers/{charger_id}", timeout=10, verify=verify)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()["public_key"]


def enroll_charger(node_url: str, key: SigningKey, charger_id: str, public_key: str, *,
                   timeout: float = 30.0, verify: Verify = True) -> str:
    """Enroll `public_key` for `charger_id` and wait until it is committed; "enrolled", or
    "already_enrolled" when the chain has this very key. Another key for the charger is an
    error (the old key must be retired first)."""
    node_url = node_url.rstrip("/")
    have = enrolled_key(node_url, charger_id, verify)
    if have == public_key:
        return "already_enrolled"
    if have is not None:
        raise EnrollError("charger_exists", f"{charger_id} is enrolled with another key ({have[:16]}…)")
    genesis = httpx.get(f"{node_url}/v1/genesis", timeout=10, verify=verify).json()
    tx = operator_action(key, operator_id_of(genesis, key), "enroll_charger",
                         {"charger_id": charger_id, "public_key": public_key})
    try:
        wait_committed(node_url, [submit_action(node_url, tx, verify)], timeout, verify)
    except ActionRefused as e:
        raise EnrollError("refused", f"enroll_charger refused: {e}") from None
    except TimeoutError:
        raise EnrollError("not_committed", f"enroll_charger not committed within {timeout:.0f} s") from None
    if enrolled_key(node_url, charger_id, verify) != public_key:
        raise EnrollError("not_enrolled", f"the node does not show {charger_id} with the enrolled key")
    return "enrolled"
