"""Per-peer inbox and limits: a noisy peer fills only its own share."""

from bureau.peers.inbox import PeerInbox
from bureau.peers.limits import FloodMeter, SyncLimiter


def test_a_full_peer_queue_refuses_without_touching_the_others_and_turns_alternate():
    inbox = PeerInbox(max_messages=3)
    assert all(inbox.put("noisy", b"x%d" % i) for i in range(3))
    assert not inbox.put("noisy", b"more")
    assert inbox.put("honest", b"vote")
    assert [inbox.get(0) for _ in range(3)] == [("noisy", b"x0"), ("honest", b"vote"), ("noisy", b"x1")]
    assert inbox.get(0) == ("noisy", b"x2") and inbox.get(0) is None


def test_inbox_bounds_bytes_per_peer():
    inbox = PeerInbox(max_bytes=10)
    assert inbox.put("p", bytes(8)) and not inbox.put("p", bytes(3)) and inbox.put("q", bytes(10))


def test_sync_limiter_dedups_and_rate_limits_per_peer():
    lim = SyncLimiter(rate_per_s=10, burst=3, dedup_ms=500)
    assert lim.admit("a", 5, 0) == "ok"
    assert lim.admit("a", 5, 0) == "duplicate"
    assert lim.admit("b", 5, 0) == "ok"  # another peer has its own share
    assert [lim.admit("a", h, 0) for h in (6, 7, 8)] == ["ok", "ok", "rate"]
    assert lim.admit("a", 8, 100) == "ok"  # 100 ms at 10/s gave a token
    assert lim.admit("a", 5, 600) == "ok"  # the dedup window passed


def test_flood_meter_trips_once_over_the_limit_in_a_window():
    fm = FloodMeter(limit=3, window_ms=1000)
    assert [fm.note("p", t) for t in (0, 1, 2)] == [False] * 3
    assert fm.note("p", 3)
    assert not fm.note("p", 4)
    assert [fm.note("q", t) for t in (0, 1000, 2000, 3000)] == [False] * 4  # a new window each time
