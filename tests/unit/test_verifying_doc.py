"""docs/verifying.md is enough to write a verifier: the verifier of bills here is written from that
page alone (struct-level parsing of the header, the receipt body, the certificate and the operator
action; the Merkle inclusion check as the page gives it; only hashlib and Ed25519 from outside),
and it must agree with the node's own code on a real proof: accept it, and refuse every tampered
one that the project's `verify_receipt_proof` refuses too; and a balance checked from the page
and docs/state.md agrees with the node's state proof."""

from __future__ import annotations

import copy
import hashlib
import json
import struct
import time

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from bureau.api import auth
from bureau.ledger.genesis import Genesis
from bureau.ledger.proof import verify_receipt_proof, verify_state_answer
from tests.support.fleet import WALLET
from tests.support.proofchain import DRIVER, RECEIPTS, proof_chain, receipt_proof, state_answer


# ---- the verifier, from docs/verifying.md -------------------------------------------------------

def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def canonical(doc) -> bytes:
    """Keys sorted, no whitespace, ASCII with \\uXXXX escapes (docs/verifying.md, Canonical JSON)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def tag(name: str) -> bytes:
    return name.encode().ljust(16, b"\x00")


def ed25519_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
        return True
    except (BadSignatureError, ValueError):
        return False


class Bad(Exception):
    pass


class Reader:
    def __init__(self, raw: bytes) -> None:
        self.raw, self.i = raw, 0

    def take(self, n: int) -> bytes:
        if self.i + n > len(self.raw):
            raise Bad("ends early")
        out = self.raw[self.i:self.i + n]
        self.i += n
        return out

    def u(self, fmt: str) -> int:
        return struct.unpack(">" + fmt, self.take(struct.calcsize(fmt)))[0]

    def str(self) -> str:
        return self.take(self.u("B")).decode("ascii")

    def end(self) -> None:
        if self.i != len(self.raw):
            raise Bad("bytes after the last field")


def parse_header(raw: bytes) -> dict:
    r = Reader(raw)
    h = {"version": r.u("B"), "chain_id": r.str(), "height": r.u("Q"), "prev_hash": r.take(32), "time_ms": r.u("Q"),
         "tx_root": r.take(32), "state_root": r.take(32), "proposer": r.str(), "tx_count": r.u("I")}
    r.end()
    if h["version"] != 1 or len(raw) != 119 + len(h["chain_id"]) + len(h["proposer"]):
        raise Bad("not a header v1")
    return h


def parse_receipt_body(body: bytes) -> dict:
    r = Reader(body)
    f = {"version": r.u("B"), "charger_id": r.str(), "seq": r.u("I"), "session_id": r.take(16),
         "auth_method": r.u("B"), "id_token": r.str(), "wallet_id": r.str(), "authorized_fen": r.u("Q"),
         "auth_ref": r.str(), "start_time": r.u("Q"), "end_time": r.u("Q"), "time_flags": r.u("B"),
         "meter_serial": r.str(), "meter_start_wh": r.u("Q"), "meter_end_wh": r.u("Q"), "meter_status": r.u("B"),
         "stop_reason": chr(r.u("B")), "tariff_id": r.str(), "tariff_version": r.u("I")}
    f["periods"] = [(r.u("B"), r.u("Q")) for _ in range(r.u("B"))]
    f["amount_fen"], f["firmware_version"] = r.u("Q"), r.str()
    r.end()
    if f["version"] != 1 or sum(wh for _, wh in f["periods"]) != f["meter_end_wh"] - f["meter_start_wh"]:
        raise Bad("receipt fails the stateless checks")
    return f


def check_certificate(text: str, genesis: dict, height: int, block_hash: bytes) -> None:
    raw = text.encode()
    cert = json.loads(raw)
    if canonical(cert) != raw or set(cert) != {"v", "height", "round", "block_hash", "signatures"} or cert["v"] != 1:
        raise Bad("certificate is not canonical v1")
    if cert["height"] != height or bytes.fromhex(cert["block_hash"]) != block_hash or block_hash == bytes(32):
        raise Bad("certificate of another block")
    names = [s["validator"] for s in cert["signatures"]]
    if names != sorted(set(names)) or not 1 <= len(names) <= 1000:
        raise Bad("signers not strictly ascending")
    chain_id = genesis["chain_id"].encode()
    message = (tag("EV-PRECOMMIT/v1") + bytes([len(chain_id)]) + chain_id + struct.pack(">QI", height, cert["round"])
               + block_hash)
    validators = {v["id"]: v for v in genesis["validators"]}
    total = sum(v.get("power", 1) for v in validators.values())
    signed = 0
    for s in cert["signatures"]:
        v = validators.get(s["validator"])
        if v is None or not ed25519_ok(bytes.fromhex(v["public_key"]), message, bytes.fromhex(s["signature"])):
            raise Bad(f"signature of {s['validator']} does not verify")
        signed += v.get("power", 1)
    if not 3 * signed > 2 * total:
        raise Bad("not more than 2/3 of the power")


def included(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = H(b"\x01" + p + r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = H(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_bill(proof: dict, genesis: dict) -> dict:
    """The receipt's fields if every check of docs/verifying.md passes; Bad otherwise."""
    envelope = bytes.fromhex(proof["receipt"]["envelope"])
    if not 64 < len(envelope) <= 1024:
        raise Bad("envelope size")
    body, sig = envelope[:-64], envelope[-64:]
    fields = parse_receipt_body(body)
    if not ed25519_ok(bytes.fromhex(proof["charger_public_key"]), tag("EV-RECEIPT/v1") + body, sig):
        raise Bad("receipt signature")
    header_bytes = bytes.fromhex(proof["header"]["encoded"])
    header = parse_header(header_bytes)
    if header["chain_id"] != genesis["chain_id"]:
        raise Bad("another chain")
    check_certificate(proof["certificate"], genesis, header["height"], H(header_bytes))
    if proof["tree_size"] != header["tx_count"]:
        raise Bad("tree size")
    path = [bytes.fromhex(p) for p in proof["audit_path"]]
    if not included(H(b"\x00" + b"\x01" + envelope), proof["leaf_index"], header["tx_count"], path, header["tx_root"]):
        raise Bad("not in the block")
    return fields


def verify_balance(answer: dict, genesis: dict, wallet_id: str) -> int:
    """The proven balance of `wallet_id` (docs/verifying.md, State proof; the fold of docs/state.md)."""
    header_bytes = bytes.fromhex(answer["header"]["encoded"])
    header = parse_header(header_bytes)
    if header["chain_id"] != genesis["chain_id"] or answer["height"] != header["height"]:
        raise Bad("another chain or height")
    check_certificate(answer["certificate"], genesis, header["height"], H(header_bytes))
    proof = answer["proof"]
    key = f"w/{wallet_id}"
    if answer["key"] != key or proof["key"] != key or proof["value"] != answer["value"] or proof["value"] is None:
        raise Bad("not the wallet's record")
    path = H(key.encode())
    node = H(b"\x00" + path + H(proof["value"].encode()))
    for d in range(len(proof["siblings"]) - 1, -1, -1):
        sibling = bytes.fromhex(proof["siblings"][d])
        bit = (path[d // 8] >> (7 - d % 8)) & 1
        node = H(b"\x01" + sibling + node) if bit else H(b"\x01" + node + sibling)
    if node != header["state_root"]:
        raise Bad("state proof does not lead to the state root")
    return json.loads(proof["value"])["balance_fen"]


# ---- a real chain of four validators, built by the project's code ------------------------------

@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    built = proof_chain(tmp_path_factory.mktemp("doc"))
    yield built
    built[0].repo.close()


def _proof(chain, cid, seq) -> dict:
    return receipt_proof(chain, cid, seq)


def test_the_documented_verifier_accepts_the_nodes_proof_and_reads_the_same_receipt(chain):
    chain, doc, cid = chain
    for seq in range(1, RECEIPTS + 1):  # every position of a five-leaf tree
        proof = _proof(chain, cid, seq)
        fields = verify_bill(proof, doc)
        assert verify_receipt_proof(proof, chain.genesis) == (True, "ok")
        summary = proof["receipt"]
        assert (fields["charger_id"], fields["seq"], fields["wallet_id"], fields["amount_fen"]) == \
            (summary["charger_id"], summary["seq"], summary["wallet_id"], summary["amount_fen"])
        assert fields["meter_end_wh"] - fields["meter_start_wh"] == summary["energy_wh"]
        assert [list(p) for p in fields["periods"]] == summary["periods"]
        assert H(bytes.fromhex(summary["envelope"])).hex() == summary["receipt_id"]


def test_the_documented_genesis_hash_is_block_ones_previous_hash(chain):
    chain, doc, _ = chain
    served = json.loads(json.dumps(doc, indent=2))  # as a client gets it: parsed JSON, any spacing
    assert H(canonical(served)) == chain.genesis.hash
    header, _ = chain.repo.header(1)
    assert parse_header(header.encode())["prev_hash"] == H(canonical(served))
    assert parse_header(header.encode())["height"] == 1 and H(header.encode()) == header.hash


def test_the_documented_operator_action_bytes_verify_with_the_genesis_key(chain):
    chain, doc, _ = chain
    block, _ = chain.repo.block(1)
    operators = {o["id"]: bytes.fromhex(o["public_key"]) for o in doc["operators"]}
    for tx in block.txs:
        assert tx[0] == 2
        (n,) = struct.unpack(">H", tx[1:3])
        assert len(tx) == 3 + n + 64
        raw, sig = tx[3:3 + n], tx[3 + n:]
        action = json.loads(raw)
        assert canonical(action) == raw and action["v"] == 1
        assert ed25519_ok(operators[action["operator"]], tag("EV-OPERATOR/v1") + raw, sig)


def test_the_documented_query_signature_is_what_a_node_accepts():
    now = int(time.time())
    path_qs = "/v1/wallets/W-1001/history?limit=10"
    message = f"EV-QUERY/v2\nbureau-2\nGET\n{path_qs}\n{now}\n{'ab' * 16}".encode()
    header = (f"EV-Sig wallet=W-1001,node=bureau-2,ts={now},nonce={'ab' * 16},"
              f"sig={DRIVER.sign(message).signature.hex()}")
    keys = {"W-1001": DRIVER.verify_key.encode()}
    assert auth.check(header, "GET", path_qs, keys.get, auth.ReplayGuard(120), "bureau-2", now=now) == "W-1001"


def _tampered(proof: dict) -> dict[str, dict]:
    out = {}

    def case(name, change):
        p = copy.deepcopy(proof)
        change(p)
        out[name] = p

    def flip(hex_text: str, at: int) -> str:
        raw = bytearray(bytes.fromhex(hex_text))
        raw[at] ^= 0x01
        return raw.hex()

    def set_cert(p, f):
        c = json.loads(p["certificate"])
        f(c)
        p["certificate"] = canonical(c).decode()

    env_len = len(proof["receipt"]["envelope"]) // 2
    case("amount in the envelope", lambda p: p["receipt"].update(envelope=flip(p["receipt"]["envelope"], env_len - 64 - 10)))
    case("receipt signature", lambda p: p["receipt"].update(envelope=flip(p["receipt"]["envelope"], env_len - 1)))
    case("another charger key", lambda p: p.update(charger_public_key=SigningKey.generate().verify_key.encode().hex()))
    case("header state root", lambda p: p["header"].update(encoded=flip(p["header"]["encoded"], 100)))
    case("header trailing byte", lambda p: p["header"].update(encoded=p["header"]["encoded"] + "00"))
    case("leaf index", lambda p: p.update(leaf_index=(p["leaf_index"] + 1) % p["tree_size"]))
    case("tree size", lambda p: p.update(tree_size=p["tree_size"] + 1))
    case("audit path", lambda p: p.update(audit_path=[flip(p["audit_path"][0], 0)] + p["audit_path"][1:]))
    case("audit path cut", lambda p: p.update(audit_path=p["audit_path"][:-1]))
    case("a signature fewer", lambda p: set_cert(p, lambda c: c["signatures"].pop()))
    case("a forged signature", lambda p: set_cert(p, lambda c: c["signatures"][0].update(
        signature=SigningKey.generate().sign(b"x").signature.hex())))
    case("signers out of order", lambda p: set_cert(p, lambda c: c["signatures"].reverse()))
    case("certificate of another height", lambda p: set_cert(p, lambda c: c.update(height=c["height"] + 1)))
    case("certificate not canonical", lambda p: p.update(certificate=p["certificate"].replace(",", ", ", 1)))
    return out


def test_every_tampered_proof_fails_in_both_verifiers(chain):
    chain, doc, cid = chain
    proof = _proof(chain, cid, 3)
    for name, bad in _tampered(proof).items():
        with pytest.raises((Bad, ValueError, KeyError, IndexError, struct.error, UnicodeDecodeError)):
            verify_bill(bad, doc)
            pytest.fail(f"documented verifier accepted: {name}")
        ok, why = verify_receipt_proof(bad, chain.genesis)
        assert not ok, name


def test_a_proof_of_another_chain_fails(chain):
    chain, doc, cid = chain
    other = dict(doc, chain_id="ev-other")
    with pytest.raises(Bad, match="another chain"):
        verify_bill(_proof(chain, cid, 1), other)
    assert not verify_receipt_proof(_proof(chain, cid, 1), Genesis.from_doc(other))[0]


def test_the_documented_balance_check_agrees_with_the_nodes_state_proof(chain):
    chain, doc, _ = chain
    answer = state_answer(chain, f"w/{WALLET}")
    assert verify_balance(answer, doc, WALLET) == chain.state.wallets[WALLET].balance
    assert verify_state_answer(answer, chain.genesis) == (True, "ok")
    richer = json.loads(answer["value"])
    richer["balance_fen"] += 1
    forged = copy.deepcopy(answer)
    forged["value"] = forged["proof"]["value"] = canonical(richer).decode()
    with pytest.raises(Bad, match="state root"):
        verify_balance(forged, doc, WALLET)
    assert not verify_state_answer(forged, chain.genesis)[0]


def test_the_documented_driver_transaction_is_signed_by_the_codes_binding_key():
    from bureau.ledger.binding import new_code
    from bureau.ledger.tx import bind_phone_tx, decode_driver
    code, genesis_hash = new_code(), H(b"a genesis")
    seed = H(f"EV-BIND/v1\nW-1001\n{code}".encode())  # the code as the operator shows it, normalised
    binding_key = SigningKey(seed)
    tx = bind_phone_tx(binding_key, "W-1001", DRIVER.verify_key.encode(), genesis_hash)
    assert tx[0] == 3
    (n,) = struct.unpack(">H", tx[1:3])
    raw, sig = tx[3:3 + n], tx[3 + n:]
    doc = json.loads(raw)
    assert canonical(doc) == raw and len(tx) == 3 + n + 64
    assert doc == {"v": 1, "action": "bind_phone", "wallet_id": "W-1001", "public_key": DRIVER.verify_key.encode().hex(),
                   "genesis": genesis_hash.hex(), "time": doc["time"], "nonce": doc["nonce"]}
    assert ed25519_ok(binding_key.verify_key.encode(), tag("EV-DRIVER/v1") + raw, sig)
    assert decode_driver(tx).doc == doc


def test_a_bills_amount_is_checked_against_the_proven_tariff_version(chain):
    from dataclasses import replace

    from bureau.ledger.proof import verify_bill_amount
    from bureau.receipts.codec import decode
    from bureau.tools.network import DEFAULT_TARIFF
    chain, _, cid = chain
    receipt = decode(bytes.fromhex(_proof(chain, cid, 2)["receipt"]["envelope"]))[0]
    version, following = (state_answer(chain, f"t/{receipt.tariff_id}/{v}") for v in (1, 2))
    assert following["value"] is None
    genesis = chain.genesis
    assert verify_bill_amount(receipt, version, following, DEFAULT_TARIFF, genesis) == (True, "ok")
    dearer = copy.deepcopy(DEFAULT_TARIFF)
    dearer["prices"][2][1] += 1
    forged = copy.deepcopy(version)
    forged["value"] = forged["proof"]["value"] = version["value"].replace('"effective_from":0', '"effective_from":1')
    for args, says in [((replace(receipt, amount_fen=receipt.amount_fen + 1), version, following, DEFAULT_TARIFF),
                        "the tariff prices the periods at"),
                       ((receipt, version, following, dearer), "not the one whose digest"),
                       ((receipt, following, version, DEFAULT_TARIFF), "not a proof of t/GD-2026-A/1"),
                       ((receipt, forged, following, DEFAULT_TARIFF), "does not lead to the root"),
                       ((replace(receipt, tariff_version=2), following, state_answer(chain, "t/GD-2026-A/3"),
                         DEFAULT_TARIFF), "the tariff version is not published")]:
        ok, why = verify_bill_amount(*args, genesis)
        assert not ok and says in why, (says, why)
