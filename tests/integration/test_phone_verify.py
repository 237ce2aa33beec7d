"""The phone's verifiers (backend/bureau/phone/static/verify.js) in headless Chromium, with
WebCrypto's Ed25519 and with @noble/ed25519, against the shared vectors and against the node's
own Python verifiers on the same inputs: a receipt proof the Python check accepts is accepted,
and a tampered receipt, path, header or certificate fails in both, for the same reason."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from bureau.api.schemas import header_out
from bureau.ledger import merkle
from bureau.ledger.block import Header
from bureau.ledger.certificate import Certificate, precommit_bytes
from bureau.ledger.genesis import Genesis
from bureau.ledger.proof import verify_ocpp_bill_proof, verify_receipt_proof
from bureau.ledger.tx import receipt_tx
from bureau.phone import NOBLE_DIR, STATIC
from tests.integration.test_dashboard import CHROMIUM, CHROMIUM_ARGS

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
CHAIN = "ev-phone-test"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


class _Files(SimpleHTTPRequestHandler):
    """The page's modules at the paths a node serves them under, and an empty page."""

    def translate_path(self, path):
        path = path.split("?", 1)[0]
        if path.startswith("/phone/assets/"):
            return str(STATIC / path.rsplit("/", 1)[1])
        if path == "/assets/noble-ed25519/index.js":
            return str(NOBLE_DIR / "index.js")
        return str(STATIC / "icon.svg")

    def guess_type(self, path):
        return "text/javascript" if str(path).endswith(".js") else "image/svg+xml"

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser_page():
    from playwright.sync_api import sync_playwright

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Files))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="phone-verify-chromium-")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                            headless=True)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            yield page
            browser.close()
    finally:
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)


def _keys(n: int) -> list[SigningKey]:
    return [SigningKey(hashlib.sha256(f"phone-validator-{i}".encode()).digest()) for i in range(n)]


def _genesis(keys: list[SigningKey]) -> dict:
    return {"v": 1, "chain_id": CHAIN, "genesis_time_ms": 1_793_400_000_000,
            "validators": [{"id": f"bureau-{i + 1}", "public_key": k.verify_key.encode().hex(), "power": 1}
                           for i, k in enumerate(keys)],
            "operators": [{"id": "operator-1", "public_key": "11" * 32}]}


def _certificate(keys, signers, height, block_hash, round_=0) -> str:
    msg = precommit_bytes(CHAIN, height, round_, block_hash)
    return Certificate(height, round_, block_hash, tuple(
        (f"bureau-{i + 1}", keys[i].sign(msg).signature) for i in signers)).encode().decode()


def _receipt_proof(keys) -> dict:
    """A bill as GET /v1/receipts/.../proof answers it: receipt vector 0 as the third of five
    transactions of block 7, certified by three of four validators."""
    vector = json.loads((VECTORS / "receipts.json").read_text())[0]
    envelope = bytes.fromhex(vector["envelope"])
    txs = [b"\x02other-%d" % i for i in range(5)]
    txs[2] = receipt_tx(envelope)
    leaves = [merkle.leaf_hash(t) for t in txs]
    header = Header(CHAIN, 7, hashlib.sha256(b"block 6").digest(), 1_793_494_860_000,
                    merkle.root_from_leaf_hashes(leaves), hashlib.sha256(b"state").digest(), "bureau-2", len(txs))
    return {"receipt": {"envelope": vector["envelope"], "amount_fen": vector["fields"]["amount_fen"],
                        "wallet_id": vector["fields"]["wallet_id"]},
            "charger_public_key": vector["public_key"], "leaf_index": 2, "tree_size": len(txs),
            "audit_path": [p.hex() for p in merkle.audit_path(leaves, 2)],
            "header": msgspec_dict(header_out(header)), "certificate": _certificate(keys, (0, 1, 3), 7, header.hash)}


def msgspec_dict(struct) -> dict:
    import msgspec
    return msgspec.to_builtins(struct)


def _tampered(proof: dict, keys) -> list[tuple[str, dict, str]]:
    def edit(fn):
        p = copy.deepcopy(proof)
        fn(p)
        return p

    def flip(text: str, i: int) -> str:
        raw = bytearray(bytes.fromhex(text))
        raw[i] ^= 1
        return raw.hex()

    header = Header.decode(bytes.fromhex(proof["header"]["encoded"]))
    other_time = Header(header.chain_id, header.height, header.prev_hash, header.time_ms + 1, header.tx_root,
                        header.state_root, header.proposer, header.tx_count)
    return [
        ("a receipt byte changed", edit(lambda p: p["receipt"].update(envelope=flip(p["receipt"]["envelope"], 40))),
         "bad_signature"),
        ("the receipt of another charger key", edit(lambda p: p.update(charger_public_key="f3" + "00" * 31)),
         "bad_signature"),
        ("a sibling of the path changed", edit(lambda p: p["audit_path"].__setitem__(0, flip(p["audit_path"][0], 0))),
         "bad_path"),
        ("another leaf index", edit(lambda p: p.update(leaf_index=3)), "bad_path"),
        ("a path one sibling short", edit(lambda p: p.update(audit_path=p["audit_path"][:-1])), "bad_path"),
        ("a header byte changed", edit(lambda p: p["header"].update(encoded=other_time.encode().hex())),
         "wrong_block"),
        ("a header of another chain", edit(lambda p: p["header"].update(encoded=Header(
            "ev-other", 7, header.prev_hash, header.time_ms, header.tx_root, header.state_root, "bureau-2",
            header.tx_count).encode().hex())), "wrong_chain"),
        ("a header with a trailing byte", edit(lambda p: p["header"].update(encoded=p["header"]["encoded"] + "00")),
         "bad_header"),
        ("a certificate of two of four", edit(lambda p: p.update(certificate=_certificate(keys, (0, 1), 7, header.hash))),
         "insufficient_power"),
        ("a certificate with a forged signature", edit(lambda p: p.update(certificate=p["certificate"].replace(
            json.loads(p["certificate"])["signatures"][1]["signature"], "00" * 64))), "bad_signature"),
        ("a certificate signed by a stranger", edit(lambda p: p.update(certificate=Certificate(
            7, 0, header.hash, tuple(sorted([(f"bureau-{i + 1}", keys[i].sign(precommit_bytes(
                CHAIN, 7, 0, header.hash)).signature) for i in (0, 1)] + [("bureau-9", SigningKey(bytes(32)).sign(
                    precommit_bytes(CHAIN, 7, 0, header.hash)).signature)]))).encode().decode())),
         "unknown_validator"),
        ("a certificate of another round's signatures", edit(lambda p: p.update(certificate=p["certificate"].replace(
            '"round":0', '"round":1'))), "bad_signature"),
        ("a certificate not in canonical form", edit(lambda p: p.update(certificate=p["certificate"].replace(
            '{"block_hash"', '{ "block_hash"'))), "bad_certificate"),
    ]


def _run(page, backend: str, script: str, data):
    return page.evaluate(f"""async ([backend, data]) => {{
        const v = await import("/phone/assets/verify.js");
        v.useEd25519Backend(backend);
        {script}
    }}""", [backend, data])


@pytest.mark.parametrize("backend", ["webcrypto", "noble"])
def test_receipt_vectors_decode_and_verify_as_the_node_does(browser_page, backend):
    good = json.loads((VECTORS / "receipts.json").read_text())
    bad = json.loads((VECTORS / "receipts-bad.json").read_text())
    tariff = json.loads((VECTORS / "tariff.json").read_text())
    out = _run(browser_page, backend, """
        const fields = (r) => JSON.parse(JSON.stringify(r, (k, x) => typeof x === "bigint" ? Number(x) : x));
        const check = async (envelope, key) => {
            try {
                const r = await v.verifyReceiptSignature(v.fromHex(envelope), v.fromHex(key));
                return v.amountFen(data.tariff, r.periods) === r.amount_fen ? fields(r) : "wrong_amount";
            } catch (e) { return e.reason; }
        };
        return {
            good: await Promise.all(data.good.map((x) => check(x.envelope, x.public_key))),
            bad: await Promise.all(data.bad.map((x) => check(x.envelope, x.public_key))),
            backend: await v.ed25519Backend(),
        };""", {"good": good, "bad": bad, "tariff": tariff["tariff"]})
    assert out["backend"] == backend
    for vector, decoded in zip(good, out["good"]):
        assert isinstance(decoded, dict), (vector["label"], decoded)
        expected = {**vector["fields"], "session_id": vector["fields"]["session_id"]}
        assert {k: decoded[k] for k in expected} == expected, vector["label"]
    assert out["bad"] == [b["reason"] for b in bad]


def test_tariff_amounts_and_periods_match_the_vectors(browser_page):
    tariff = json.loads((VECTORS / "tariff.json").read_text())
    out = _run(browser_page, "webcrypto", """
        return {amounts: data.amounts.map((a) => Number(v.amountFen(data.tariff, a.periods))),
                kinds: data.kinds.map((k) => v.kindAt(data.tariff, k.unix_s))};""", tariff)
    assert out["amounts"] == [a["amount_fen"] for a in tariff["amounts"]]
    assert out["kinds"] == [k["kind"] for k in tariff["kinds"]]


def test_inclusion_paths_of_every_leaf_of_small_trees(browser_page):
    cases = []
    for size in range(1, 12):
        leaves = [hashlib.sha256(b"%d" % i).digest() for i in range(size)]
        root = merkle.root_from_leaf_hashes(leaves)
        for i in range(size):
            path = merkle.audit_path(leaves, i)
            cases.append({"leaf": leaves[i].hex(), "index": i, "size": size, "path": [p.hex() for p in path],
                          "root": root.hex(), "ok": True})
            if path:  # the same path for the neighbour leaf, or with a sibling changed, must not verify
                cases.append({**cases[-1], "leaf": leaves[(i + 1) % size].hex(), "ok": False})
                cases.append({**cases[-2], "path": [path[0][::-1].hex()] + [p.hex() for p in path[1:]], "ok": False})
    out = _run(browser_page, "webcrypto", """
        const h = v.fromHex;
        return Promise.all(data.map((c) => v.verifyInclusion(h(c.leaf), c.index, c.size, c.path.map((x) => h(x)), h(c.root))));
    """, cases)
    assert out == [c["ok"] for c in cases]
    # RFC 6962's leaf and node hashes
    out = _run(browser_page, "webcrypto", """
        return [v.toHex(await v.leafHash(v.fromHex("00ff"))), v.toHex(await v.nodeHash(new Uint8Array(32), new Uint8Array(32)))];
    """, None)
    assert out == [merkle.leaf_hash(b"\x00\xff").hex(), merkle.node_hash(bytes(32), bytes(32)).hex()]


@pytest.mark.parametrize("backend", ["webcrypto", "noble"])
def test_a_receipt_proof_verifies_and_every_tampered_part_fails_as_in_python(browser_page, backend):
    keys = _keys(4)
    genesis_doc = _genesis(keys)
    genesis = Genesis.from_doc(genesis_doc)
    proof = _receipt_proof(keys)
    cases = [("as the node answers it", proof, "ok")] + _tampered(proof, keys)
    # a summary field changed: the phone reads the envelope only, so the bill still verifies
    summary = copy.deepcopy(proof)
    summary["receipt"]["amount_fen"] = 1
    cases.append(("a summary field changed", summary, "ok"))
    out = _run(browser_page, backend, """
        const results = [];
        for (const p of data.proofs) {
            const r = await v.verifyReceiptProof(p, data.genesis);
            results.push(r.ok ? ["ok", Number(r.receipt.amount_fen), r.header.height] : [r.reason, r.detail]);
        }
        return results;""", {"proofs": [c[1] for c in cases], "genesis": genesis_doc})
    for (label, p, reason), got in zip(cases, out):
        python_ok, python_why = verify_receipt_proof(p, genesis)
        assert got[0] == reason, (label, got)
        assert python_ok == (reason == "ok"), (label, python_why)  # the node's verifier agrees
    assert out[0][1:] == [910, 7]


def test_the_genesis_hash_and_canonical_json_match_the_node(browser_page):
    keys = _keys(4)
    doc = _genesis(keys)
    doc["tariffs"] = [json.loads((VECTORS / "tariff.json").read_text())["tariff"]]
    doc["chain_id"] = 'ev "quoted" \\ ü 中 😀\x7f\n'
    out = _run(browser_page, "webcrypto", "return [await v.genesisHash(data), v.canonicalJson(data)];", doc)
    from bureau.ledger.canonical import dumps
    assert out == [hashlib.sha256(dumps(doc)).hexdigest(), dumps(doc).decode()]


def test_ed25519_keys_and_signatures_agree_with_libsodium(browser_page):
    seed = hashlib.sha256(b"a phone").digest()
    key = SigningKey(seed)
    message = b"EV-QUERY/v2\nbureau-1\nGET\n/v1/wallets/W-1\n1793491200\n00112233445566778899aabbccddeeff"
    for backend in ("webcrypto", "noble"):
        out = _run(browser_page, backend, """
            const seed = v.fromHex(data.seed), msg = v.fromHex(data.message);
            return [v.toHex(await v.ed25519PublicKey(seed)), v.toHex(await v.ed25519Sign(seed, msg))];""",
                   {"seed": seed.hex(), "message": message.hex()})
        assert out == [key.verify_key.encode().hex(), key.sign(message).signature.hex()], backend


STATEMAP = VECTORS / "statemap.json"  # the state map's shared vectors (docs/state.md)


@pytest.mark.skipif(not STATEMAP.exists(), reason="tests/vectors/statemap.json is not in this checkout")
@pytest.mark.parametrize("backend", ["webcrypto", "noble"])
def test_state_proofs_of_the_shared_vectors_verify_and_the_tampered_ones_fail(browser_page, backend):
    vectors = json.loads(STATEMAP.read_text())
    good = [{"root": m["root"], "proof": p} for m in vectors["maps"] for p in m["proofs"]]
    out = _run(browser_page, backend, """
        const check = (c) => v.verifyStateProof(v.fromHex(c.root), c.proof).then((r) => r.ok ? "ok" : r.reason);
        return [await Promise.all(data.good.map(check)), await Promise.all(data.bad.map(check))];""",
               {"good": good, "bad": vectors["bad"]})
    assert out[0] == ["ok"] * len(good)
    from bureau.ledger.stateproof import verify_state_proof  # the node's verifier agrees on each
    assert all(verify_state_proof(bytes.fromhex(c["root"]), c["proof"])[0] for c in good)
    assert not any(verify_state_proof(bytes.fromhex(b["root"]), b["proof"])[0] for b in vectors["bad"])
    assert len(vectors["bad"]) >= 5 and "ok" not in out[1], list(zip([b["label"] for b in vectors["bad"]], out[1]))


@pytest.mark.parametrize("backend", ["webcrypto", "noble"])
def test_binding_codes_keys_and_the_bind_tx_match_the_shared_vectors(browser_page, backend):
    """The code as typed, normalised; the binding seed and key the phone derives from it; the
    kind-3 bind_phone transaction it signs: byte for byte those of tests/vectors/binding.json
    (made by ledger/binding.py, which the operator's tool and the node use)."""
    vectors = json.loads((VECTORS / "binding.json").read_text())
    out = _run(browser_page, backend, """
        const c = await import("/phone/assets/client.js");
        const codes = [];
        for (const x of data.codes) {
            const code = c.normaliseCode(x.typed);
            const seed = code && await c.bindingSeed(x.wallet_id, code);
            codes.push([code, seed && v.toHex(seed), seed && v.toHex(await v.ed25519PublicKey(seed))]);
        }
        const b = data.bind_phone;
        const tx = await c.bindTx(b.wallet_id, c.normaliseCode(b.code), b.phone_public_key, b.genesis_hash, b.time, b.nonce);
        return {codes, not_codes: data.not_codes.map((x) => c.normaliseCode(x)), tx: v.toHex(tx),
                backend: await v.ed25519Backend()};""", vectors)
    assert out["backend"] == backend
    assert out["codes"] == [[x["normalised"], x["seed"], x["binding_key"]] for x in vectors["codes"]]
    assert out["not_codes"] == [None] * len(vectors["not_codes"])
    assert out["tx"] == vectors["bind_phone"]["tx"]


def test_a_bill_is_priced_by_the_tariff_version_in_force_at_its_start(browser_page):
    """verifyAmount, as ledger/proof.py verify_bill_amount: the version began at or before the
    session's start and the next one (absent, or) after it; the document has the record's digest."""
    vector = json.loads((VECTORS / "receipts.json").read_text())[0]
    doc = json.loads((VECTORS / "tariff.json").read_text())["tariff"]
    from bureau.ledger import canonical
    digest = hashlib.sha256(canonical.dumps(doc)).hexdigest()
    start = vector["fields"]["start_time"]
    cases = [  # (record's effective_from, next version's effective_from or None, the reason or "ok")
        (0, None, "ok"), (start, None, "ok"), (start + 1, None, "tariff_not_in_force"),
        (0, start + 1, "ok"), (0, start, "tariff_not_in_force"), (0, start - 3600, "tariff_not_in_force")]
    out = _run(browser_page, "webcrypto", """
        const r = await v.verifyReceiptSignature(v.fromHex(data.envelope), v.fromHex(data.key));
        const results = [];
        for (const [from, next] of data.cases) {
            const got = await v.verifyAmount(r, data.doc, {digest: data.digest, effective_from: from},
                                             next === null ? null : {digest: "00", effective_from: next});
            results.push(got.ok ? "ok" : got.reason);
        }
        const other = await v.verifyAmount(r, data.doc, {digest: "ab".repeat(32), effective_from: 0}, null);
        results.push(other.ok ? "ok" : other.reason);
        return results;""", {"envelope": vector["envelope"], "key": vector["public_key"], "doc": doc,
                             "digest": digest, "cases": [[a, b] for a, b, _ in cases]})
    assert out == [c for _, _, c in cases] + ["wrong_tariff"]


def _chain_past_a_change(folder: Path, ocpp_bill: bool = False) -> tuple[dict, dict]:
    """(genesis document, the proof of a receipt committed after a change added bureau-5): block
    1 decides the change, certified by the genesis set; block 3, in force from there, holds the
    receipt, certified by bureau-1, 2, 3 and 5 (4 of the 5). With `ocpp_bill`, block 3 holds an
    OCPP bill signed by bureau-5 instead, and the proof is that bill's."""
    import time

    from bureau.chain import Chain
    from bureau.ledger import valset
    from bureau.ledger.tx import operator_action
    from bureau.storage import Repository
    from tests.support.proofchain import OPERATOR, VALIDATORS, WALLET, genesis_doc, receipt_proof
    from tests.support.fleet import fleet_receipts
    fifth = SigningKey(b"\x55" * 32)
    doc = genesis_doc("ev-phone-change")
    genesis = Genesis.from_doc(doc)
    chain = Chain(genesis, Repository(f"sqlite:///{folder}/chain.sqlite"))
    keys, receipts, _ = fleet_receipts(1, 1)
    (cid, ckey), = keys.items()
    now = int(time.time())
    change = {"v": 1, "seq": 0, "changes": [{"op": "add", "id": "bureau-5", "power": 1, "address": "", "api": "",
                                            "public_key": fifth.verify_key.encode().hex()}]}
    approvals = [valset.approve(VALIDATORS[i], f"bureau-{i + 1}", doc["chain_id"], change) for i in range(3)]

    def act(action: str, args: dict) -> bytes:
        return operator_action(OPERATOR, "operator-1", action, args, now=now)
    signers = {f"bureau-{i + 1}": k for i, k in enumerate(VALIDATORS)} | {"bureau-5": fifth}
    blocks = [[act("enroll_charger", {"charger_id": cid, "public_key": ckey.verify_key.encode().hex()}),
               act("open_wallet", {"wallet_id": WALLET}),
               act("change_validators", {"change": change, "approvals": approvals})],
              [], [receipt_tx(env) for _, env in receipts]]
    if ocpp_bill:
        from bureau.ledger import ocppbill
        from tests.unit.test_ocpp_bills import CP, DIGEST, _doc
        blocks[0].append(act("enroll_ocpp_charger", {"charger_id": CP, "ocpp_version": "1.6",
                                                     "password_digest": DIGEST}))
        blocks[2] = [ocppbill.bill_tx(fifth, _doc(wallet_id=WALLET, bureau="bureau-5"))]
    for i, txs in enumerate(blocks):
        block, ex = chain.build(txs, "bureau-1", now * 1000 + i)
        ids = ["bureau-1", "bureau-2", "bureau-3"] + (["bureau-5"] if block.height >= 3 else [])
        sigs = tuple(sorted((vid, signers[vid].sign(precommit_bytes(doc["chain_id"], block.height, 0,
                                                                       block.hash)).signature) for vid in ids))
        chain.commit(block, Certificate(block.height, 0, block.hash, sigs).encode(), ex)
    if ocpp_bill:
        from types import SimpleNamespace

        import msgspec

        from bureau.ledger.tx import tx_hash
        from bureau.ocpp.api import OcppDesk
        proof = json.loads(msgspec.json.encode(OcppDesk(SimpleNamespace(chain=chain)).proof(
            WALLET, tx_hash(blocks[2][0]))))
    else:
        proof = receipt_proof(chain, cid, 1)
    chain.repo.close()
    return doc, proof


@pytest.mark.parametrize("backend", ["webcrypto", "noble"])
def test_a_proof_after_a_validator_change_verifies_by_following_the_change(browser_page, backend, tmp_path):
    doc, proof = _chain_past_a_change(tmp_path)
    assert len(proof["validator_changes"]) == 1 and proof["header"]["height"] == 3
    stripped = {**proof, "validator_changes": []}
    tampered = copy.deepcopy(proof)
    record = json.loads(tampered["validator_changes"][0]["proof"]["value"])
    record["validators"][-1]["power"] = 10  # bureau-5 given all the power
    tampered["validator_changes"][0]["proof"]["value"] = json.dumps(record, separators=(",", ":"), sort_keys=True)
    uncertified = copy.deepcopy(proof)
    uncertified["validator_changes"][0]["certificate"] = proof["certificate"]  # another block's certificate
    cases = [(proof, "ok"), (stripped, "unknown_validator"), (tampered, "bad_change"),
             (uncertified, "wrong_block")]
    out = _run(browser_page, backend, """
        const results = [];
        for (const p of data.proofs) {
            const r = await v.verifyReceiptProof(p, data.genesis);
            results.push(r.ok ? ["ok"] : [r.reason, r.detail]);
        }
        return results;""", {"proofs": [p for p, _ in cases], "genesis": doc})
    assert [o[0] for o in out] == [reason for _, reason in cases], out
    assert "bureau-5" in out[1][1] and "height 3" in out[1][1], out[1]
    genesis = Genesis.from_doc(doc)
    assert [verify_receipt_proof(p, genesis)[0] for p, _ in cases] == [True, False, False, False]


@pytest.mark.parametrize("backend", ["webcrypto", "noble"])
def test_an_ocpp_bill_signed_by_a_bureau_added_later_verifies_by_following_the_change(browser_page, backend,
                                                                                      tmp_path):
    doc, proof = _chain_past_a_change(tmp_path, ocpp_bill=True)
    assert proof["bill"]["bureau"] == "bureau-5" and proof["header"]["height"] == 3
    cases = [(proof, "ok"), ({**proof, "validator_changes": []}, "unknown_validator")]
    out = _run(browser_page, backend, """
        const results = [];
        for (const p of data.proofs) {
            const r = await v.verifyOcppBillProof(p, data.genesis);
            results.push(r.ok ? ["ok", r.level] : [r.reason, r.detail]);
        }
        return results;""", {"proofs": [p for p, _ in cases], "genesis": doc})
    assert [o[0] for o in out] == [reason for _, reason in cases], out
    assert out[0][1] == "bureau", out[0]
    genesis = Genesis.from_doc(doc)
    assert [verify_ocpp_bill_proof(p, genesis)[0] for p, _ in cases] == [True, False]
