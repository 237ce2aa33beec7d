"""`bureau driver`: a driver's wallet from the command line, with the checks the phone makes.

The key file is the wallet's Ed25519 seed in hex (mode 0600), like an operator's. Beside it,
`<key file>.json` pins the wallet id and the genesis document (docs/verifying.md): every command
that talks to a node first refuses a node whose genesis hash differs from the pinned one, and
every figure shown as verified comes from a proof checked against that genesis, never from the
node's word. `--genesis FILE` gives the genesis instead of the pin."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .cliparse import CommandError, int_range

PIN_VERSION = 1
MAX_PROOF_BYTES = 1024 * 1024  # a receipt proof is a few KiB; a state proof 256 hashes at most
HTTP_TIMEOUT_S = 10.0


def printable(text, limit: int = 300) -> str:
    """`text` from a node or a proof as part of one line: no control characters, bounded."""
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text if len(text) <= limit else text[:limit] + "..."


# ---- the driver's files ------------------------------------------------------------------------

def pin_path(key_file: Path) -> Path:
    return Path(f"{key_file}.json")


@dataclass(frozen=True)
class Pin:
    """What `bind` stores beside the key file: the wallet and the chain it is on."""
    wallet_id: str
    genesis_doc: dict

    @classmethod
    def load(cls, path: Path) -> "Pin | None":
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise CommandError(f"{path} cannot be read as JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("v") != PIN_VERSION or not isinstance(doc.get("wallet_id"), str) \
                or not isinstance(doc.get("genesis"), dict):
            raise CommandError(f"{path} is not a driver pin (v {PIN_VERSION}, wallet_id, genesis)")
        return cls(doc["wallet_id"], doc["genesis"])

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"v": PIN_VERSION, "wallet_id": self.wallet_id, "genesis": self.genesis_doc},
                                   indent=1) + "\n")


def _load_genesis_file(path: str):
    from .ledger.genesis import Genesis
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CommandError(f"genesis file {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise CommandError(f"genesis file {path} cannot be read as JSON: {e}") from None
    return Genesis.from_doc(doc)  # GenesisError is one line too


def chain_of(args):
    """The genesis the command checks against: --genesis, else the pin beside the key file."""
    from .ledger.genesis import Genesis
    pin = Pin.load(pin_path(Path(args.key))) if getattr(args, "key", None) else None
    if args.genesis:
        genesis = _load_genesis_file(args.genesis)
        if pin is not None and Genesis.from_doc(pin.genesis_doc).hash != genesis.hash:
            raise CommandError(f"{args.genesis} is another chain than the one pinned in {pin_path(Path(args.key))}")
        return genesis
    if pin is None:
        raise CommandError("no genesis: give --genesis FILE (bind pins the node's beside the key file)")
    return Genesis.from_doc(pin.genesis_doc)


def wallet_of(args) -> str:
    pin = Pin.load(pin_path(Path(args.key)))
    if args.wallet:
        if pin is not None and pin.wallet_id != args.wallet:
            raise CommandError(f"the key is bound to wallet {pin.wallet_id}, not {args.wallet}")
        return args.wallet
    if pin is None:
        raise CommandError("no wallet: give --wallet W (bind pins it beside the key file)")
    return pin.wallet_id


# ---- the node, over HTTP -----------------------------------------------------------------------

class NodeClient:
    """One node's API: plain reads, driver-signed reads (api/auth.py), refusals as one line."""

    def __init__(self, url: str, ca_file: str | None) -> None:
        from .tools.pki import http_verify
        self.url = url.rstrip("/")
        if ca_file and not Path(ca_file).is_file():
            raise CommandError(f"CA file {ca_file} does not exist")
        self.verify = http_verify(ca_file and Path(ca_file))
        self._node_id: str | None = None

    def get(self, path: str, *, key=None, wallet_id: str | None = None) -> dict:
        return self.answer(*self.send("GET", path, key=key, wallet_id=wallet_id))

    def post(self, path: str, body: dict) -> dict:
        return self.answer(*self.send("POST", path, body=body))

    def send(self, method: str, path: str, *, body: dict | None = None, key=None,
             wallet_id: str | None = None) -> tuple[int, object]:
        """(HTTP status, the JSON answer or None); a request signed as the wallet when `key`."""
        import httpx

        from .api.auth import authorization_header
        from .tools.httpclient import shared_client
        headers = {}
        if key is not None:
            headers["Authorization"] = authorization_header(key, wallet_id, method, path, node_id=self.node_id())
        try:
            resp = shared_client(self.verify).request(method, self.url + path, json=body, headers=headers,
                                                      timeout=HTTP_TIMEOUT_S)
        except (httpx.TransportError, httpx.InvalidURL) as e:
            raise CommandError(f"cannot reach the node at {self.url}: {e or type(e).__name__}") from None
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, None

    def answer(self, status: int, body) -> dict:
        """The JSON object of a successful answer; CommandError with the refusal otherwise."""
        if status >= 300:
            if isinstance(body, dict) and "error" in body:
                raise CommandError(f"refused: {printable(body['error'], 64)}: {printable(body.get('detail', ''))}")
            raise CommandError(f"the node at {self.url} answered HTTP {status}")
        if not isinstance(body, dict):
            raise CommandError(f"the node at {self.url} answered something that is not a JSON object")
        return body

    def node_id(self) -> str:
        if self._node_id is None:
            status = self.get("/v1/node/status")
            if not isinstance(status.get("node_id"), str):
                raise CommandError(f"the node at {self.url} does not say its node id")
            self._node_id = status["node_id"]
        return self._node_id

    def require_chain(self, genesis) -> None:
        """Refuse a node of another chain than the pinned genesis."""
        head = self.get("/v1/chain/head")
        if head.get("genesis_hash") != genesis.hash.hex():
            theirs = printable(head.get("genesis_hash"), 16)
            raise CommandError(f"the node at {self.url} is on another chain (genesis {theirs}, "
                               f"pinned {genesis.hash.hex()[:16]})")


def _client(args) -> NodeClient:
    return NodeClient(args.node, args.ca_file)


# ---- checking proofs (no I/O) ------------------------------------------------------------------

def _when(unix_s: int) -> str:
    return datetime.fromtimestamp(unix_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fen(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{fen} fen ({sign}{yuan}.{cents:02d} CNY)"


SUMMARY_FIELDS = ("charger_id", "seq", "wallet_id", "energy_wh", "amount_fen", "start_time", "end_time", "stop_reason",
                  "tariff_id", "tariff_version")


def check_receipt_proof(proof: dict, genesis) -> str:
    """The verified bill in one line, or CommandError with why it is not one. The checks of
    ledger/proof.py, then the summary must say what the signed envelope says (what is shown is
    read from the envelope)."""
    from .ledger.block import Header
    from .ledger.proof import verify_receipt_proof
    from .receipts.codec import decode
    ok, why = verify_receipt_proof(proof, genesis)
    if not ok:
        raise CommandError(f"invalid: {printable(why)}")
    receipt, _, _ = decode(bytes.fromhex(proof["receipt"]["envelope"]))
    summary = proof["receipt"]
    signed = {"charger_id": receipt.charger_id, "seq": receipt.seq, "wallet_id": receipt.wallet_id,
              "energy_wh": receipt.energy_wh, "amount_fen": receipt.amount_fen, "start_time": receipt.start_time,
              "end_time": receipt.end_time, "stop_reason": receipt.stop_reason, "tariff_id": receipt.tariff_id,
              "tariff_version": receipt.tariff_version}
    differs = [f for f in SUMMARY_FIELDS if f in summary and summary[f] != signed[f]]
    if differs:
        raise CommandError(f"invalid: the proof's {', '.join(differs)} differ from the signed receipt")
    header = Header.decode(bytes.fromhex(proof["header"]["encoded"]))
    return (f"valid: bill {receipt.charger_id}#{receipt.seq} of wallet {receipt.wallet_id}: {receipt.energy_wh} Wh, "
            f"{_fen(receipt.amount_fen)}, {_when(receipt.start_time)} to {_when(receipt.end_time)}, "
            f"tariff {receipt.tariff_id} v{receipt.tariff_version}; in block {header.height} of {genesis.chain_id}, "
            f"signed by the charger and certified by the validators")


def check_state_answer(answer: dict, genesis) -> str:
    """The verified record in one line (a wallet's balance read from its proven record), or
    CommandError with why the answer proves nothing."""
    from .ledger.proof import verify_state_answer
    ok, why = verify_state_answer(answer, genesis)
    if not ok:
        raise CommandError(f"invalid: {printable(why)}")
    key, value, height = answer["key"], answer["value"], answer["height"]
    where = f"after block {height} of {genesis.chain_id}, certified by the validators"
    if value is None:
        return f"valid: {printable(key)} holds nothing {where}"
    if key.startswith("w/"):
        try:
            balance = json.loads(value)["balance_fen"]
        except (ValueError, KeyError, TypeError):
            raise CommandError(f"invalid: the proven record of {key} has no balance_fen") from None
        if type(balance) is not int:
            raise CommandError(f"invalid: the proven balance_fen of {key} is not an integer")
        return f"valid: wallet {key[2:]} balance {_fen(balance)} {where}"
    return f"valid: {printable(key)} = {printable(value, 2000)} {where}"


def check_ocpp_bill_proof(proof: dict, genesis) -> str:
    """The verified OCPP bill in one line, saying who vouches for its readings: the meter's own
    OCMF signature, or the bureau that served the charge point (ledger/proof.py)."""
    from .ledger import ocppbill
    from .ledger.block import Header
    from .ledger.proof import verify_ocpp_bill_proof
    ok, why, level = verify_ocpp_bill_proof(proof, genesis)
    if not ok:
        raise CommandError(f"invalid: {printable(why)}")
    b = ocppbill.decode(bytes.fromhex(proof["tx"]))
    if proof.get("bill") not in (None, b.doc):
        raise CommandError("invalid: the proof's bill differs from the signed bill transaction")
    header = Header.decode(bytes.fromhex(proof["header"]["encoded"]))
    who = "the meter's OCMF signature" if level == "ocmf" else f"attested by bureau {level.split(':', 1)[1]} " \
                                                                "(no meter signature)"
    return (f"valid: OCPP bill {b.charger_id} transaction {printable(b.transaction_id, 40)} of wallet {b.wallet_id}: "
            f"{b.energy_wh} Wh, {_fen(b.amount_fen)}, {_when(b.start_time)} to {_when(b.end_time)}, tariff "
            f"{b.tariff_id} v{b.tariff_version}; in block {header.height} of {genesis.chain_id}, certified by the "
            f"validators; readings: {who}")


def check_proof_document(doc, genesis) -> str:
    if not isinstance(doc, dict):
        raise CommandError("invalid: a proof is a JSON object")
    if "tx" in doc and "audit_path" in doc:
        return check_ocpp_bill_proof(doc, genesis)
    if "receipt" in doc and "audit_path" in doc:
        return check_receipt_proof(doc, genesis)
    if "proof" in doc and "key" in doc:
        return check_state_answer(doc, genesis)
    raise CommandError("invalid: neither a receipt proof (receipt, audit_path, ...) nor a state proof answer "
                       "(key, value, proof, header, certificate)")


# ---- the commands ------------------------------------------------------------------------------

def _keygen(args) -> int:
    from .crypto import create_key
    try:
        key = create_key(Path(args.key))
    except FileExistsError:
        raise CommandError(f"{args.key} exists; a key file is never overwritten") from None
    except OSError as e:
        raise CommandError(f"cannot write {args.key}: {e.strerror}") from None
    print(key.verify_key.encode().hex())
    return 0


def _bind(args) -> int:
    """Bind this key to the wallet with the operator's binding code: the code's binding key signs
    a bind_phone transaction (docs/ledger.md); done once the wallet answers requests signed with
    this key. The genesis is pinned beside the key file then."""
    import time

    from .crypto import load_key
    from .ledger import binding
    from .ledger.genesis import Genesis
    from .ledger.tx import ID_RE, bind_phone_tx
    if not ID_RE.match(args.wallet):
        raise CommandError(f"bad_wallet: {args.wallet!r} is not 1-32 of A-Z a-z 0-9 . _ -", 2)
    try:
        binding_signer = binding.signing_key(args.wallet, args.code)
    except binding.BindingCodeError as e:
        raise CommandError(f"bad_code: {e}", 2) from None
    key = load_key(Path(args.key))
    pinned = Pin.load(pin_path(Path(args.key)))
    if pinned is not None and pinned.wallet_id != args.wallet:
        raise CommandError(f"the key is bound to wallet {pinned.wallet_id}; make a new key for {args.wallet}")
    node = _client(args)
    if args.genesis or pinned is not None:
        genesis = chain_of(args)
    else:  # first contact: the node's genesis, checked against the hash its head names
        genesis = Genesis.from_doc(node.get("/v1/genesis"))
    node.require_chain(genesis)
    tx = bind_phone_tx(binding_signer, args.wallet, key.verify_key.encode(), genesis.hash)
    tx_hash = node.post("/v1/driver/bind", {"tx": tx.hex()}).get("tx_hash")
    deadline = time.monotonic() + args.timeout
    path = f"/v1/wallets/{args.wallet}"
    while True:
        status, body = node.send("GET", path, key=key, wallet_id=args.wallet)
        if status == 200:
            break
        if not (status == 401 and isinstance(body, dict) and body.get("error") == "bad_signature"):
            node.answer(status, body)  # any other refusal is the answer
        if time.monotonic() > deadline:
            raise CommandError(f"the wallet does not answer to this key within {args.timeout} s (tx {tx_hash}): "
                               "the block refused the binding, e.g. a code already used or expired")
        time.sleep(0.2)
    Pin(args.wallet, genesis.doc).save(pin_path(Path(args.key)))
    print(f"bound: wallet {args.wallet} answers to this key (tx {tx_hash}); "
          f"chain {genesis.chain_id} (genesis {genesis.hash.hex()[:16]}) pinned in {pin_path(Path(args.key))}")
    return 0


def _signed_reader(args):
    from .crypto import load_key
    genesis = chain_of(args)
    wallet_id = wallet_of(args)
    key = load_key(Path(args.key))
    node = _client(args)
    node.require_chain(genesis)
    return node, key, wallet_id, genesis


def _history(args) -> int:
    node, key, wallet_id, _ = _signed_reader(args)
    body = node.get(f"/v1/wallets/{wallet_id}/history?limit={args.limit}", key=key, wallet_id=wallet_id)
    try:
        lines = [_history_line(e) for e in body["entries"]]
    except (KeyError, TypeError, ValueError):
        raise CommandError(f"the node at {node.url} answered a history that is not a list of wallet entries") from None
    print(f"wallet {wallet_id}, newest first (the node's account; `bureau driver proof` verifies a bill):")
    for line in lines:
        print(line)
    return 0


def _history_line(e: dict) -> str:
    if e.get("charger_id") and e.get("seq") is None:  # an OCPP bill: its proof is asked by tx hash
        what = f"{e['charger_id']} {e['energy_wh']} Wh  tx {e['tx_hash']}"
    else:
        what = f"{e['charger_id']}#{e['seq']} {e['energy_wh']} Wh" if e.get("charger_id") else ""
    return (f"{e['time']}  {e['kind']:<14} {e['delta_fen']:>+10} fen  balance {e['balance_after']:>10} fen  "
            f"block {e['height']}  {what}").rstrip()


def _balance(args) -> int:
    """The balance the node tells, then the one its state proof proves: shown only if they agree."""
    node, key, wallet_id, genesis = _signed_reader(args)
    told = node.get(f"/v1/wallets/{wallet_id}", key=key, wallet_id=wallet_id)
    answer = node.get(f"/v1/state/proof?key=w/{wallet_id}", key=key, wallet_id=wallet_id)
    if answer.get("key") != f"w/{wallet_id}":
        raise CommandError(f"the node answered a proof of {printable(answer.get('key'), 80)!r}, not of w/{wallet_id}")
    try:
        line = check_state_answer(answer, genesis)
    except CommandError as e:
        raise CommandError(f"the node's balance proof is {e}") from None
    if answer["value"] is None:
        raise CommandError(f"the node proves that the state holds no w/{wallet_id}")
    proven = json.loads(answer["value"])["balance_fen"]
    if told.get("height") == answer["height"] and told.get("balance_fen") != proven:
        raise CommandError(f"the node says {printable(told.get('balance_fen'), 30)} fen at block {answer['height']}, "
                           f"but its proof says {proven}")
    print(line)
    return 0


def _proof(args) -> int:
    node, key, wallet_id, genesis = _signed_reader(args)
    proof = node.get(f"/v1/receipts/{args.charger}/{args.seq}/proof", key=key, wallet_id=wallet_id)
    try:
        check_receipt_proof(proof, genesis)
    except CommandError as e:
        raise CommandError(f"the node's proof is {e}") from None
    check_amount(node, key, wallet_id, proof, genesis)
    print(json.dumps(proof, indent=1))
    return 0


def _ocpp_proof(args) -> int:
    from .ledger import ocppbill
    from .ledger.tariff import Tariff
    node, key, wallet_id, genesis = _signed_reader(args)
    proof = node.get(f"/v1/ocpp/bills/{args.tx}/proof", key=key, wallet_id=wallet_id)
    try:
        line = check_ocpp_bill_proof(proof, genesis)
    except CommandError as e:
        raise CommandError(f"the node's proof is {e}") from None
    bill = ocppbill.decode(bytes.fromhex(proof["tx"]))
    check_amount(node, key, wallet_id, proof, genesis, bill)
    tariff = Tariff.from_doc(node.get(f"/v1/tariffs/{bill.tariff_id}/{bill.tariff_version}"))
    if ocppbill.periods_of(tariff, bill.doc["readings"]) != bill.doc["periods"]:
        raise CommandError("the bill's periods are not what its readings give under its tariff")
    print(line if args.summary else json.dumps(proof, indent=1))
    return 0


def check_amount(node: NodeClient, key, wallet_id: str, proof: dict, genesis, bill=None) -> None:
    """The bill's amount is its tariff version's price (ledger/proof.py verify_bill_amount), with
    that version and the next proven from the state and the document from the node. `bill`: an
    OCPP bill (it names its tariff, start and periods as a receipt does), else the proof's receipt."""
    from .ledger.proof import verify_bill_amount
    from .receipts.codec import decode
    receipt = bill if bill is not None else decode(bytes.fromhex(proof["receipt"]["envelope"]))[0]
    tid, version = receipt.tariff_id, receipt.tariff_version
    answers = [node.get(f"/v1/state/proof?key=t/{tid}/{v}", key=key, wallet_id=wallet_id)
               for v in (version, version + 1)]
    doc = node.get(f"/v1/tariffs/{tid}/{version}")
    ok, why = verify_bill_amount(receipt, answers[0], answers[1], doc, genesis)
    if not ok:
        raise CommandError(f"the bill's amount does not check: {printable(why)}")


def _read_proof(source: str):
    try:
        raw = sys.stdin.buffer.read(MAX_PROOF_BYTES + 1) if source == "-" else Path(source).read_bytes()
    except FileNotFoundError:
        raise CommandError(f"{source} does not exist") from None
    except OSError as e:
        raise CommandError(f"cannot read {source}: {e.strerror}") from None
    if len(raw) > MAX_PROOF_BYTES:
        raise CommandError(f"invalid: {source} is over {MAX_PROOF_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError as e:
        raise CommandError(f"invalid: {source} is not JSON: {e}") from None


def _verify(args) -> int:
    genesis = chain_of(args)
    print(check_proof_document(_read_proof(args.file), genesis))
    return 0


def add_parser(sub) -> None:
    """`bureau driver ...` under the `bureau` command's subparsers."""
    d = sub.add_parser("driver", help="a driver's wallet: key, history, bills verified like the phone does",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = d.add_subparsers(dest="driver_cmd", required=True)

    def node_args(p) -> None:
        p.add_argument("--key", required=True, help="the driver's key file (must exist)")
        p.add_argument("--node", required=True, help="a bureau node's API base URL")
        p.add_argument("--ca-file", "--ca", dest="ca_file",
                       help="the network's CA certificate to verify the node's HTTPS against "
                            "(default: the system's CAs)")
        p.add_argument("--wallet", help="the wallet id (default: the one bind pinned beside the key file)")
        p.add_argument("--genesis", help="the genesis file (default: the one bind pinned beside the key file)")

    k = cmds.add_parser("keygen", help="make the driver's key file (mode 0600; never overwrites); "
                                       "prints its public key")
    k.add_argument("--key", required=True)
    k.set_defaults(fn=_keygen)
    bd = cmds.add_parser("bind", help="bind the key to a wallet with the operator's binding code; pins the "
                                      "wallet and the node's genesis beside the key file")
    bd.add_argument("--key", required=True, help="the driver's key file (bureau driver keygen)")
    bd.add_argument("--node", required=True, help="a bureau node's API base URL")
    bd.add_argument("--ca-file", "--ca", dest="ca_file",
                    help="the network's CA certificate to verify the node's HTTPS against (default: the system's CAs)")
    bd.add_argument("--wallet", required=True, help="the wallet the code was issued for")
    bd.add_argument("--code", required=True, help="the binding code, XXXX-XXXX-XXXX-XXXX")
    bd.add_argument("--genesis", help="the genesis file to pin (default: the node's, checked against its head)")
    bd.add_argument("--timeout", type=int_range(1, 3600), default=60, help="seconds to wait for the block")
    bd.set_defaults(fn=_bind)
    h = cmds.add_parser("history", help="the wallet's entries, newest first, as the node tells them")
    node_args(h)
    h.add_argument("--limit", type=int_range(1, 500), default=20)
    h.set_defaults(fn=_history)
    b = cmds.add_parser("balance", help="the wallet's balance, verified with a state proof of w/<wallet> against "
                                        "a header the genesis validators certified")
    node_args(b)
    b.set_defaults(fn=_balance)
    p = cmds.add_parser("proof", help="fetch a bill's proof, check it, and print its JSON (save it for verify)")
    node_args(p)
    p.add_argument("--charger", required=True, help="the charger's id")
    p.add_argument("--seq", required=True, type=int_range(1, 2**32 - 1), help="the receipt's seq")
    p.set_defaults(fn=_proof)
    op = cmds.add_parser("ocpp-proof", help="fetch an OCPP bill's proof (its tx hash, from history), check it and "
                                            "its amount, and print its JSON; says whether the meter signed it")
    node_args(op)
    op.add_argument("--tx", required=True, help="the bill's tx hash (64 hex digits)")
    op.add_argument("--summary", action="store_true", help="print the one-line verdict instead of the JSON")
    op.set_defaults(fn=_ocpp_proof)
    v = cmds.add_parser("verify", help="check a saved receipt proof or state proof answer against the genesis "
                                       "alone (no node); prints `valid: ...` or the reason it is invalid (exit 1)")
    v.add_argument("file", metavar="FILE", help="a proof's JSON, or - for stdin")
    v.add_argument("--key", help="the driver's key file, whose pinned genesis is used")
    v.add_argument("--genesis", help="the genesis file")
    v.set_defaults(fn=_verify)
