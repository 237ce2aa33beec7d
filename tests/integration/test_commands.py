"""The commands an operator runs, against real processes: `bureau operator` waits for the block
and says its height or the refusal; `bureau verify-chain` audits a running node's database;
two runs of `just up` on one data directory (the second is refused) and of `scripts/setup.sh` at
once (they take turns); an interrupted demo leaves no process and no temp folder behind."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bureau.tools.httpclient import shared_client
from bureau.tools.stack import Stack, StackInUse

ROOT = Path(__file__).resolve().parents[2]


def bureau(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bureau.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("commands"), nodes_count=1).start()
    yield s
    s.stop()


def test_operator_waits_for_the_block_and_prints_its_height(stack):
    key = str(stack.root / "net" / "operator.key")
    p = bureau("operator", "--node", stack.nodes[0].url, "--key", key, "--operator", "operator-1", "open_wallet",
               "wallet_id=W-CLI", "public_key=" + "11" * 32, "cards=04C1A0000001")
    assert p.returncode == 0, p.stderr
    height = int(p.stdout.split("committed at height ")[1].split()[0])
    assert 1 <= height <= httpx.get(stack.nodes[0].url + "/v1/chain/head", timeout=10).json()["height"]

    refused = bureau("operator", "--node", stack.nodes[0].url, "--key", key, "--operator", "operator-1", "top_up",
                     '{"wallet_id": "W-NONE", "amount_fen": 100, "reference": "bank:cli-1"}')
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == "bureau operator: refused: unknown_wallet: wallet W-NONE does not exist\n"


def test_an_action_refused_at_the_node_is_refused_with_the_nodes_reason(stack):
    """A refusal before the action reaches the mempool (an operator key the genesis does not
    know, an action sent again once committed) reaches the operator with the node's reason, not
    its status."""
    from nacl.signing import SigningKey

    from bureau.crypto import load_key
    from bureau.ledger.tx import operator_action
    from bureau.tools.actions import ActionRefused, submit_action

    url = stack.nodes[0].url
    args = {"wallet_id": "W-TWICE", "public_key": "22" * 32, "cards": []}
    with pytest.raises(ActionRefused) as stranger:
        submit_action(url, operator_action(SigningKey.generate(), "operator-1", "open_wallet", args))
    assert stranger.value.reason == "bad_signature", stranger.value

    tx = operator_action(load_key(stack.root / "net" / "operator.key"), "operator-1", "open_wallet", args)
    # (sent again while it waits, the same bytes answer 202 and go in once: docs/ledger.md)
    stack.wait_committed([submit_action(url, tx)])
    with pytest.raises(ActionRefused) as twice:
        submit_action(url, tx)
    assert twice.value.reason == "duplicate", twice.value


def test_issue_binding_code_prints_the_code_once_and_a_phone_binds_with_it(stack):
    from nacl.signing import SigningKey

    from bureau.ledger import binding
    from bureau.ledger.tx import bind_phone_tx
    from bureau.api.auth import authorization_header
    key = str(stack.root / "net" / "operator.key")
    url = stack.nodes[0].url
    stack.operator([("open_wallet", {"wallet_id": "W-BIND"})])
    p = bureau("operator", "--node", url, "--key", key, "--operator", "operator-1", "issue-binding-code",
               "--wallet", "W-BIND", "--valid-hours", "2")
    assert p.returncode == 0, p.stderr
    shown = p.stdout.split("binding code for wallet W-BIND: ")[1].split()[0]
    expires = int(p.stdout.split("valid until ")[1].split("(")[1].split(")")[0])
    assert len(shown) == 19 and shown.count("-") == 3 and 7000 < expires - time.time() <= 7200
    head = httpx.get(url + "/v1/chain/head", timeout=10).json()
    phone = SigningKey.generate()
    tx = bind_phone_tx(binding.signing_key("W-BIND", shown), "W-BIND", phone.verify_key.encode(),
                       bytes.fromhex(head["genesis_hash"]))
    resp = httpx.post(url + "/v1/driver/bind", json={"tx": tx.hex()}, timeout=10)
    assert resp.status_code == 202, resp.text
    node_id = httpx.get(url + "/healthz", timeout=10).json()["node_id"]
    deadline = time.monotonic() + 30
    while True:
        path = "/v1/wallets/W-BIND"
        hdr = authorization_header(phone, "W-BIND", "GET", path, node_id=node_id)
        if shared_client().get(url + path, headers={"Authorization": hdr}, timeout=10).status_code == 200:
            break
        assert time.monotonic() < deadline, "the bound phone's requests are not answered"
        time.sleep(0.2)
    missing = bureau("operator", "--node", url, "--key", key, "--operator", "operator-1", "issue-binding-code")
    assert missing.returncode == 2 and "needs --wallet" in missing.stderr


def test_verify_chain_audits_a_running_nodes_database(stack):
    stack.operator([("open_wallet", {"wallet_id": "W-AUDIT", "public_key": "22" * 32, "cards": []})])
    p = bureau("verify-chain", "--genesis", str(stack.genesis_path), "--db", str(stack.nodes[0].data_dir / "ledger.db"))
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["chain_valid"] and report["blocks"] >= 1
    assert report["jobs"] == 1 and p.stderr == ""  # no progress bar off a terminal
    p = bureau("verify-chain", "--genesis", str(stack.genesis_path), "--db", str(stack.nodes[0].data_dir / "ledger.db"),
               "--jobs", "2")
    assert p.returncode == 0, p.stderr
    two = json.loads(p.stdout)
    assert two["jobs"] == 2 and two["chain_valid"] and two["blocks"] >= report["blocks"]


def test_a_second_stack_on_one_data_directory_is_refused(stack):
    with pytest.raises(StackInUse, match=f"in use by pid {os.getpid()}"):
        Stack(stack.root).prepare()


def _lines(proc) -> queue.Queue:
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [q.put(x) for x in proc.stdout], daemon=True).start()
    return q


def _wait_line(proc, q: queue.Queue, text: str, timeout: float = 120) -> list[str]:
    seen, deadline = [], time.monotonic() + timeout
    while not any(text in x for x in seen):
        assert time.monotonic() < deadline, f"no {text!r} in time:\n" + "".join(seen[-20:])
        assert proc.poll() is None, "exited early:\n" + "".join(seen[-20:])
        try:
            seen.append(q.get(timeout=1))
        except queue.Empty:
            pass
    return seen


def test_two_ups_on_one_data_directory_the_second_is_refused(tmp_path):
    data = tmp_path / "up"
    cmd = [sys.executable, str(ROOT / "scripts" / "up.py"), "--nodes", "1", "--dir", str(data)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                             env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        _wait_line(first, _lines(first), "running; Ctrl-C stops")
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert second.returncode == 1
        assert second.stderr == f"up: {data} is in use by pid {first.pid}; stop it first, or use another directory\n"
        first.send_signal(signal.SIGINT)
        assert first.wait(60) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    with open(data / "stack.lock") as lock:  # released on exit
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_setup_run_twice_at_once_takes_turns_and_both_succeed():
    cmd = ["bash", str(ROOT / "scripts" / "setup.sh")]
    with open(ROOT / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for _ in range(2)]
        time.sleep(1)
        assert [r.poll() for r in runs] == [None, None]  # both wait while another setup runs
    outs = [r.communicate(timeout=300)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outs


def _descendants(pid: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_bad_node_count_for_the_demo_is_one_line():
    for nodes in ("0", "many"):
        p = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--nodes", nodes], capture_output=True,
                           text=True, timeout=120, cwd=ROOT)
        assert p.returncode == 2 and p.stdout == ""
        assert p.stderr.startswith("demo: argument --nodes: ") and p.stderr.count("\n") == 1, p.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_leaves_no_process_and_no_temp_folder(tmp_path, sig):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    demo = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "demo.py"), "--nodes", "1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1"))
    try:
        seen = _wait_line(demo, _lines(demo), "bureau network:")
        children = _descendants(demo.pid)
        assert len(children) >= 2, seen  # the broker and the node
        demo.send_signal(sig)
        assert demo.wait(60) == 128 + sig
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if _alive(p)]
    assert list(tmp.iterdir()) == []
