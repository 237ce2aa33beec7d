"""Attacks on the peer port of real bureau node processes: a validator flooding SyncRequests,
hostile sockets announcing huge frames before login, and an idle bureau cut off from its peers
that fell behind."""

import socket
import threading
import time

import pytest

from bureau.crypto import load_or_create_key
from bureau.ledger.genesis import Genesis
from bureau.tools.httpclient import shared_client
from bureau.tools.stack import Stack
from tests.support.byzantine import ByzantineBureau
from bureau.tools.netproxy import LinkProxies
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def _wait(predicate, timeout, what):
    wait_for(predicate, f"timed out waiting for {what}", timeout, poll=0.1)


def _top_up(stack, node=0):
    return stack.submit("top_up", {"wallet_id": "W-ATT", "amount_fen": 1, "reference": f"r{time.monotonic_ns()}"}, node)


def _committed_everywhere(stack, tx, nodes):
    return all(stack.operator_get(f"/v1/operator/actions/{tx}", i).json().get("status") == "committed"
               for i in nodes)


def _links_of(node):
    health = shared_client().get(node.url + "/healthz", timeout=5).json()
    return health["peers_out"], health["peers_in"]


def _vm(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.fixture(scope="module")
def links_and_stack(tmp_path_factory):
    from nacl.signing import SigningKey
    s = Stack(tmp_path_factory.mktemp("attacks"), nodes_count=4).prepare()
    links = LinkProxies(s.genesis)  # the nodes dial each other through cuttable proxies
    try:
        s.launch(node_env=links.node_env)
        s.operator([("open_wallet", {"wallet_id": "W-ATT", "public_key": SigningKey.generate().verify_key.encode().hex()})])
        yield links, s
    finally:
        s.stop()
        links.close()


@pytest.fixture
def stack(links_and_stack):
    return links_and_stack[1]


def test_an_idle_bureau_cut_off_and_behind_catches_up_at_once(links_and_stack):
    links, stack = links_and_stack
    behind = stack.nodes[2]
    links.isolate(behind.node_id)
    _wait(lambda: _links_of(behind) == ([], []), 20, "the cut-off bureau to lose its links")
    for _ in range(9):  # nine blocks it misses, without a restart: its mempool stays empty
        stack.wait_committed([_top_up(stack)])
    target = stack.heights()[0]
    assert stack.heights()[2] < target
    links.heal()
    # the network is idle now: no consensus message tells the bureau that it is behind, and
    # nothing waits in its mempool; it must not be held at each height for the empty-block interval
    _wait(lambda: (stack.heights()[2] or 0) >= target, 20, "the idle bureau to catch up")


def test_sync_request_flood_by_a_validator_does_not_halt_the_others(stack):
    genesis = Genesis.load(stack.genesis_path)
    liar = stack.nodes[3]
    liar.kill()
    for n in stack.nodes[:3]:  # restarted: the blocks a request asks for come from the block store
        n.stop()
        n.start()
    for n in stack.nodes[:3]:
        n.wait_healthy()
    stack.wait_committed([_top_up(stack)])
    attacker = ByzantineBureau(genesis, liar.node_id, load_or_create_key(stack.root / "net" / liar.node_id / "node.key"), [])
    attacker.transport.start()
    flood = threading.Thread(target=attacker.flood, args=(60,), daemon=True)
    try:
        _wait(lambda: len(attacker.transport.connected_peers()) == 3, 20, "the attacker's links")
        flood.start()
        time.sleep(2.0)  # the flood is under way
        before = stack.heights()[:3]
        txs = [_top_up(stack, node=i % 3) for i in range(3)]
        _wait(lambda: all(_committed_everywhere(stack, tx, range(3)) for tx in txs), 30,
              "honest operator actions to commit during the flood")
        assert flood.is_alive(), "the flood ended before the honest commits"
        after = stack.heights()[:3]
        for n in stack.nodes[:3]:
            health = shared_client().get(n.url + "/healthz", timeout=5).json()
            assert health["ok"] and health["consensus"] == "ok", health
        metrics = "".join(stack.operator_get("/metrics", i).text for i in range(3))
        assert 'bureau_sync_refused_total{reason=' in metrics  # the flood met the per-peer limits
        disconnects = metrics.count('bureau_peer_disconnected_total{reason="flood"}')
        print(f"flood: heights {before} -> {after}, attacker sent {attacker.stats['flood_sent']} requests; "
              f"nodes that cut it off: {disconnects}")
    finally:
        attacker._stop.set()
        flood.join(5)
        attacker.transport.stop()
        liar.start()
        liar.wait_healthy()


def _hostile(port, announce, push, stop, sent):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(announce.to_bytes(4, "big") + b"\x00")
        chunk = bytes(65536)
        while push > 0 and not stop.is_set():
            s.sendall(chunk)
            push -= len(chunk)
            sent.append(len(chunk))
        stop.wait(10)
        s.close()
    except OSError:
        pass


def test_hostile_sockets_before_login_take_bounded_memory(stack):
    target = stack.nodes[0]
    pid = target.proc.pid
    port = int(Genesis.load(stack.genesis_path).validator(target.node_id).address.rsplit(":", 1)[1])
    rss_before = _vm(pid, "VmRSS")
    stop, sent, peak = threading.Event(), [], [rss_before]
    threads = [threading.Thread(target=_hostile, args=(port, 40 * 1024 * 1024, 3 * 1024 * 1024, stop, sent), daemon=True)
               for _ in range(100)]
    silent = []
    try:
        for t in threads:
            t.start()
        for _ in range(100):  # and as many that connect and say nothing
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        for _ in range(30):
            peak.append(_vm(pid, "VmRSS"))
            time.sleep(0.05)
        stack.nodes[1].kill()  # an honest bureau logs in again while the sockets are open
        stack.nodes[1].start()
        stack.nodes[1].wait_healthy()
        tx = _top_up(stack)
        _wait(lambda: _committed_everywhere(stack, tx, range(4)), 30, "commits during the attack")
        _wait(lambda: stack.nodes[1].node_id in _links_of(target)[1], 20,
              "the restarted bureau's link")
        peak.append(_vm(pid, "VmRSS"))
    finally:
        stop.set()
        for s in silent:
            s.close()
        for t in threads:
            t.join(5)
    growth = max(peak) - rss_before
    print(f"hostile sockets: {sum(sent) >> 20} MiB pushed, node RSS {rss_before >> 20} -> peak {max(peak) >> 20} MiB")
    assert growth < 64 * 1024 * 1024, f"RSS grew by {growth >> 20} MiB"
