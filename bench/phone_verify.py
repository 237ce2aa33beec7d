"""The phone's side of a balance proof, measured in the page's own code in headless Chromium
(Debian's chromium): the size of a `GET /v1/state/proof` answer for a wallet, and the time the
page's `verifyStateAnswer` (backend/bureau/phone/static/verify.js) takes to check it, with
WebCrypto's Ed25519 and with @noble/ed25519, on state maps of 10k and 100k wallets; and a
bill's receipt proof beside it.

The answers are built here the way a node builds them (the state map, a header, a certificate
of three of four validators), so the figures do not depend on a running stack. Prints a
summary and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec
from nacl.signing import SigningKey

from bureau.api.schemas import header_out
from bureau.ledger import merkle, records
from bureau.ledger.block import Header
from bureau.ledger.certificate import Certificate, precommit_bytes
from bureau.ledger.statemap import StateMap
from bureau.ledger.tx import receipt_tx
from bureau.phone import NOBLE_DIR, STATIC

CHROMIUM = "/usr/bin/chromium"
CHAIN = "ev-bench"
VALIDATORS = [SigningKey(hashlib.sha256(f"bench-validator-{i}".encode()).digest()) for i in range(4)]
VECTORS = Path(__file__).resolve().parents[1] / "tests" / "vectors"


class _Files(SimpleHTTPRequestHandler):
    """The page's modules at the paths a node serves them under."""

    def translate_path(self, path):
        path = path.split("?", 1)[0]
        if path == "/assets/noble-ed25519/index.js":
            return str(NOBLE_DIR / "index.js")
        return str(STATIC / (path.rsplit("/", 1)[1] or "icon.svg"))

    def guess_type(self, path):
        return "text/javascript" if str(path).endswith(".js") else "image/svg+xml"

    def log_message(self, *args):
        pass


def genesis() -> dict:
    return {"v": 1, "chain_id": CHAIN, "genesis_time_ms": 1_793_400_000_000,
            "validators": [{"id": f"bureau-{i + 1}", "public_key": k.verify_key.encode().hex(), "power": 1}
                           for i, k in enumerate(VALIDATORS)],
            "operators": [{"id": "operator-1", "public_key": "11" * 32}]}


def certified(header: Header) -> dict:
    msg = precommit_bytes(CHAIN, header.height, 0, header.hash)
    cert = Certificate(header.height, 0, header.hash,
                       tuple((f"bureau-{i + 1}", VALIDATORS[i].sign(msg).signature) for i in (0, 1, 3)))
    return {"header": msgspec.to_builtins(header_out(header)), "certificate": cert.encode().decode()}


def balance_answer(wallets: int) -> dict:
    state = StateMap().update({f"w/W-{i:07d}": records.wallet(10_000 + i, bytes(32)) for i in range(wallets)})
    key = f"w/W-{wallets // 2:07d}"
    header = Header(CHAIN, 42, bytes(32), 1_793_494_860_000, bytes(32), state.root, "bureau-2", 0)
    proof = state.prove(key)
    return {"key": key, "value": proof["value"], "height": 42, "proof": proof, **certified(header)}


def receipt_answer() -> dict:
    vector = json.loads((VECTORS / "receipts.json").read_text())[0]
    envelope = bytes.fromhex(vector["envelope"])
    txs = [b"\x02other-%d" % i for i in range(499)] + [receipt_tx(envelope)]  # a full block
    leaves = [merkle.leaf_hash(t) for t in txs]
    header = Header(CHAIN, 42, bytes(32), 1_793_494_860_000, merkle.root_from_leaf_hashes(leaves), bytes(32),
                    "bureau-2", len(txs))
    return {"receipt": {"envelope": vector["envelope"]}, "charger_public_key": vector["public_key"],
            "leaf_index": 499, "tree_size": len(txs), "audit_path": [p.hex() for p in merkle.audit_path(leaves, 499)],
            **certified(header)}


TIMING = """async ([answers, genesis, backend, rounds]) => {
  const v = await import("/phone/assets/verify.js");
  v.useEd25519Backend(backend);
  const out = {};
  for (const [name, kind, answer, key] of answers) {
    const check = () => kind === "state" ? v.verifyStateAnswer(answer, genesis, key) : v.verifyReceiptProof(answer, genesis);
    const first = await check();
    if (!first.ok) return {error: `${name}: ${first.reason} ${first.detail}`};
    const t0 = performance.now();
    for (let i = 0; i < rounds; i++) await check();
    out[name] = (performance.now() - t0) / rounds;
  }
  return out;
}"""


def run(rounds: int) -> dict:
    from playwright.sync_api import sync_playwright

    answers = [(f"balance_{n // 1000}k", "state", balance_answer(n), f"w/W-{n // 2:07d}") for n in (10_000, 100_000)]
    answers.append(("receipt_500_tx_block", "receipt", receipt_answer(), None))
    sizes = {name: len(json.dumps(a, separators=(",", ":"))) for name, _, a, _ in answers}
    hashes = {name: len(a["proof"]["siblings"]) for name, kind, a, _ in answers if kind == "state"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Files))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="bench-phone-chromium-")
    timings = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            for backend in ("webcrypto", "noble"):
                got = page.evaluate(TIMING, [answers, genesis(), backend, rounds])
                if "error" in got:
                    raise SystemExit(f"the page refused a valid answer: {got['error']}")
                timings[backend] = {k: round(ms, 2) for k, ms in got.items()}
            browser.close()
    finally:
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    return {"bench": "phone_verify", "rounds": rounds, "answer_bytes": sizes, "proof_hashes": hashes,
            "verify_ms": timings}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=50, help="verifications timed per answer and backend")
    args = p.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"phone verify bench: {CHROMIUM} is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    r = run(args.rounds)
    for backend, t in r["verify_ms"].items():
        print(f"phone, {backend}: balance proof at 10k wallets {t['balance_10k']} ms "
              f"({r['answer_bytes']['balance_10k']} B, {r['proof_hashes']['balance_10k']} hashes), at 100k "
              f"{t['balance_100k']} ms ({r['answer_bytes']['balance_100k']} B, {r['proof_hashes']['balance_100k']} "
              f"hashes); a bill in a 500-transaction block {t['receipt_500_tx_block']} ms "
              f"({r['answer_bytes']['receipt_500_tx_block']} B); each includes the certificate's 3 signatures")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
