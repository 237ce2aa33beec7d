"""`bureau driver`: the key file is made once and never overwritten; `verify` says `valid: ...`
only for a proof that passes every check against the genesis, and any other input is one line
with the reason and exit 1; a node that cannot be reached or spoken to is one line, no traceback."""

from __future__ import annotations

import copy
import json
import stat
import subprocess
import sys

import pytest

from bureau.cli import main
from bureau.crypto import load_key
from bureau.drivercli import Pin, pin_path
from bureau.tools.mosquitto import free_port
from tests.support.fleet import WALLET
from tests.support.proofchain import genesis_doc, proof_chain, receipt_proof, state_answer
from tests.unit.test_cli import ROOT, bureau, one_line


@pytest.fixture(scope="module")
def bill(tmp_path_factory):
    """A real receipt proof, and the genesis file it verifies against."""
    folder = tmp_path_factory.mktemp("bill")
    chain, doc, cid = proof_chain(folder)
    proof = receipt_proof(chain, cid, 2)
    balance = state_answer(chain, f"w/{WALLET}")
    chain.repo.close()
    (folder / "genesis.json").write_text(json.dumps(doc))
    (folder / "proof.json").write_text(json.dumps(proof))
    (folder / "balance.json").write_text(json.dumps(balance))
    return folder, proof


def test_keygen_makes_a_private_key_file_once(tmp_path):
    key = tmp_path / "keys" / "driver.key"
    p = bureau("driver", "keygen", "--key", str(key))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == load_key(key).verify_key.encode().hex()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_text()
    one_line(bureau("driver", "keygen", "--key", str(key)), 1, "exists; a key file is never overwritten")
    assert key.read_text() == before


def test_verify_says_valid_and_the_signed_figures(bill):
    folder, proof = bill
    p = bureau("driver", "verify", str(folder / "proof.json"), "--genesis", str(folder / "genesis.json"))
    assert p.returncode == 0, p.stderr
    r = proof["receipt"]
    assert p.stdout.startswith(f"valid: bill {r['charger_id']}#2 of wallet {WALLET}: {r['energy_wh']} Wh, "
                               f"{r['amount_fen']} fen"), p.stdout
    assert f"in block {proof['header']['height']} of ev-doc-test" in p.stdout and p.stdout.count("\n") == 1


def test_verify_reads_stdin_and_the_genesis_pinned_beside_the_key(bill, tmp_path):
    folder, proof = bill
    key = tmp_path / "driver.key"
    Pin(WALLET, genesis_doc()).save(pin_path(key))
    p = subprocess.run([sys.executable, "-m", "bureau.cli", "driver", "verify", "-", "--key", str(key)],
                       input=json.dumps(proof), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.startswith("valid: bill "), p.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps(genesis_doc("ev-other")))
    one_line(bureau("driver", "verify", str(folder / "proof.json"), "--key", str(key), "--genesis", str(other)), 1,
             "is another chain than the one pinned in")


def _write(tmp_path, doc) -> str:
    path = tmp_path / "bad.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def run_in_process(capsys, *args: str):
    """bureau.cli.main as the command line runs it (quicker than a process per case)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_a_tampered_or_malformed_proof_is_invalid_with_its_reason(bill, tmp_path, capsys):
    folder, proof = bill
    genesis = str(folder / "genesis.json")

    def changed(f):
        p = copy.deepcopy(proof)
        f(p)
        return p

    env = proof["receipt"]["envelope"]
    flipped = env[:-150] + ("0" if env[-150] != "0" else "1") + env[-149:]  # a byte of the amount (u64)
    cert = json.loads(proof["certificate"])
    cert["signatures"] = cert["signatures"][:2]
    cases = [
        (changed(lambda p: p["receipt"].update(envelope=flipped)), "invalid: receipt signature does not verify"),
        (changed(lambda p: p.update(leaf_index=0 if p["leaf_index"] else 1)), "invalid: receipt is not in the block"),
        (changed(lambda p: p.update(certificate=json.dumps(cert, sort_keys=True, separators=(",", ":")))),
         "not more than 2/3"),
        (changed(lambda p: p["receipt"].update(amount_fen=1)), "invalid: the proof's amount_fen differ from the signed receipt"),
        (changed(lambda p: p.pop("header")), "invalid: proof is malformed"),
        ([1, 2], "invalid: a proof is a JSON object"),
        ({"key": "w/W-1"}, "invalid: neither a receipt proof"),
        (changed(lambda p: p.update(certificate=5)), "invalid: proof is malformed"),
        ("{not json", "invalid: "),
    ]
    for doc, says in cases:
        p = run_in_process(capsys, "driver", "verify", _write(tmp_path, doc), "--genesis", genesis)
        one_line(p, 1, says)
        assert p.stdout == ""
    other = tmp_path / "other.json"
    other.write_text(json.dumps(genesis_doc("ev-other")))
    one_line(run_in_process(capsys, "driver", "verify", str(folder / "proof.json"), "--genesis", str(other)), 1,
             "invalid: block of another chain")
    one_line(run_in_process(capsys, "driver", "verify", str(tmp_path / "none.json"), "--genesis", genesis), 1,
             "does not exist")
    one_line(run_in_process(capsys, "driver", "verify", str(folder / "proof.json")), 1, "no genesis: give --genesis FILE")


def test_node_mistakes_are_one_line(bill, tmp_path):
    folder, _ = bill
    key = tmp_path / "driver.key"
    assert bureau("driver", "keygen", "--key", str(key)).returncode == 0
    base = ["--key", str(key), "--wallet", WALLET, "--genesis", str(folder / "genesis.json")]
    url = f"http://127.0.0.1:{free_port()}"
    one_line(bureau("driver", "history", "--node", url, *base), 1, f"cannot reach the node at {url}")
    one_line(bureau("driver", "proof", "--node", "ftp://x", "--charger", "C", "--seq", "1", *base), 1,
             "cannot reach the node at ftp://x")
    one_line(bureau("driver", "history", "--node", url, "--ca", str(tmp_path / "ca.crt"), *base), 1,
             "CA file")
    one_line(bureau("driver", "history", "--node", url, "--key", str(tmp_path / "none.key"), "--wallet", "W",
                    "--genesis", str(folder / "genesis.json")), 1, "does not exist")
    one_line(bureau("driver", "proof", "--node", url, "--charger", "C", "--seq", "0", *base), 2, "out of range")
    assert not (tmp_path / "none.key").exists()


def test_verify_proves_a_balance_from_its_state_proof_and_refuses_a_changed_one(bill, tmp_path, capsys):
    folder, _ = bill
    genesis = str(folder / "genesis.json")
    answer = json.loads((folder / "balance.json").read_text())
    balance = json.loads(answer["value"])["balance_fen"]
    p = run_in_process(capsys, "driver", "verify", str(folder / "balance.json"), "--genesis", genesis)
    assert p.returncode == 0 and p.stdout.startswith(f"valid: wallet {WALLET} balance {balance} fen"), p
    assert f"after block {answer['height']} of ev-doc-test" in p.stdout

    richer = json.loads(answer["value"])
    richer["balance_fen"] += 10_000
    value = json.dumps(richer, sort_keys=True, separators=(",", ":"))

    def changed(f):
        a = copy.deepcopy(answer)
        f(a)
        return a

    def flip_sibling(a):
        s0 = a["proof"]["siblings"][0]
        a["proof"]["siblings"][0] = ("1" if s0[0] != "1" else "2") + s0[1:]
    cases = [
        (changed(lambda a: (a.update(value=value), a["proof"].update(value=value))), "state proof: "),
        (changed(lambda a: a.update(value=value)), "not the ones its proof proves"),
        (changed(flip_sibling), "state proof: "),
        (changed(lambda a: a.update(height=a["height"] - 1)), "height is not its header's"),
        (changed(lambda a: a["header"].update(encoded=a["header"]["encoded"][:-2])), "invalid: proof is malformed"),
    ]
    for doc, says in cases:
        one_line(run_in_process(capsys, "driver", "verify", _write(tmp_path, doc), "--genesis", genesis), 1, says)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(genesis_doc("ev-other")))
    one_line(run_in_process(capsys, "driver", "verify", str(folder / "balance.json"), "--genesis", str(other)), 1,
             "invalid: block of another chain")


class _OddNode:
    """A loopback HTTP server that answers like a node of the genesis until the wallet's own
    routes, which it answers with whatever the test sets: a broken or hostile node."""

    def __init__(self, genesis_hash: str) -> None:
        import http.server
        import threading
        odd = self
        self.answer: tuple[int, bytes] = (200, b"{}")
        self.answers: dict[str, tuple[int, bytes]] = {}  # by path, before `answer`

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/v1/node/status":
                    code, body = 200, json.dumps({"node_id": "bureau-1"}).encode()
                elif self.path == "/v1/chain/head":
                    code, body = 200, json.dumps({"genesis_hash": genesis_hash}).encode()
                else:
                    code, body = odd.answers.get(self.path, odd.answer)
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_broken_or_lying_node_is_one_line(bill, tmp_path, capsys):
    from bureau.ledger.genesis import Genesis
    folder, proof = bill
    genesis = folder / "genesis.json"
    node = _OddNode(Genesis.load(genesis).hash.hex())
    key = tmp_path / "driver.key"
    from bureau.crypto import create_key
    create_key(key)
    base = ["--key", str(key), "--node", node.url, "--wallet", WALLET, "--genesis", str(genesis)]
    try:
        for answer, says in [((502, b"<html>bad gateway</html>"), f"the node at {node.url} answered HTTP 502"),
                             ((200, b"[1]"), "answered something that is not a JSON object"),
                             ((200, b'{"entries": [{"kind": "receipt"}]}'), "a history that is not a list of wallet entries"),
                             ((403, b'{"error": "not_your_wallet", "detail": "a driver reads only their own wallet"}'),
                              "refused: not_your_wallet: a driver reads only their own wallet")]:
            node.answer = answer
            one_line(run_in_process(capsys, "driver", "history", *base), 1, says)
        lying = copy.deepcopy(proof)
        env = lying["receipt"]["envelope"]
        lying["receipt"]["envelope"] = env[:-2] + f"{int(env[-2:], 16) ^ 0x01:02x}"  # a bit of the signature
        node.answer = (200, json.dumps(lying).encode())
        p = run_in_process(capsys, "driver", "proof", *base, "--charger", "C", "--seq", "2")
        one_line(p, 1, "the node's proof is invalid: receipt signature does not verify")
        assert p.stdout == ""

        answer = json.loads((folder / "balance.json").read_text())
        proven = json.loads(answer["value"])["balance_fen"]
        node.answers = {f"/v1/state/proof?key=w/{WALLET}": (200, json.dumps(answer).encode()),
                        f"/v1/wallets/{WALLET}": (200, json.dumps({"wallet_id": WALLET, "balance_fen": proven + 500,
                                                                   "height": answer["height"]}).encode())}
        one_line(run_in_process(capsys, "driver", "balance", *base), 1,
                 f"the node says {proven + 500} fen at block {answer['height']}, but its proof says {proven}")
        richer = json.loads(answer["value"])
        richer["balance_fen"] += 500
        forged = copy.deepcopy(answer)
        forged["value"] = forged["proof"]["value"] = json.dumps(richer, sort_keys=True, separators=(",", ":"))
        node.answers[f"/v1/state/proof?key=w/{WALLET}"] = (200, json.dumps(forged).encode())
        one_line(run_in_process(capsys, "driver", "balance", *base), 1,
                 "the node's balance proof is invalid: state proof: the proof does not lead to the root")
        node.answers[f"/v1/state/proof?key=w/{WALLET}"] = (200, json.dumps(dict(answer, key="w/W-OTHER")).encode())
        one_line(run_in_process(capsys, "driver", "balance", *base), 1, "not of w/" + WALLET)
    finally:
        node.close()


def test_bind_mistakes_are_one_line(bill, tmp_path, capsys):
    folder, _ = bill
    key = tmp_path / "driver.key"
    from bureau.crypto import create_key
    create_key(key)
    url = f"http://127.0.0.1:{free_port()}"
    base = ["--key", str(key), "--node", url, "--wallet", WALLET]
    one_line(run_in_process(capsys, "driver", "bind", *base, "--code", "ABCD-EFGH"), 2, "bad_code: a binding code is 16")
    one_line(run_in_process(capsys, "driver", "bind", *base[:-1], "bad wallet!", "--code", "0" * 16), 2, "bad_wallet")
    one_line(run_in_process(capsys, "driver", "bind", *base, "--code", "0" * 16), 1, f"cannot reach the node at {url}")
    Pin("W-ELSE", genesis_doc()).save(pin_path(key))
    one_line(run_in_process(capsys, "driver", "bind", *base, "--code", "0" * 16), 1,
             f"the key is bound to wallet W-ELSE; make a new key for {WALLET}")
