"""A background loop that fails takes the node down cleanly: a real node process whose commit
path hits a database failure (its blocks table renamed away from outside) stops taking
receipts, answers 503 with the reason on /healthz and /readyz, exits with code 70, and once the
database is back and it is restarted, commits the block it had decided from its WAL and goes on."""

import sqlite3
import time

import httpx

from bureau.supervisor import EXIT_FAILED
from bureau.tools.httpclient import shared_client
from bureau.tools.stack import Stack


def _status(url: str, path: str) -> tuple[int, dict] | None:
    try:
        r = shared_client().get(url + path, timeout=2)
        return r.status_code, r.json()
    except httpx.HTTPError:
        return None


def test_a_commit_path_failure_fails_the_node_which_recovers_from_its_wal(tmp_path):
    stack = Stack(tmp_path, 1).start()
    try:
        node = stack.nodes[0]
        stack.operator([("open_wallet", {"wallet_id": "W-1", "public_key": "11" * 32})])
        deadline = time.monotonic() + 60
        while _status(node.url, "/readyz") != (200, {"ok": True, "height": 1}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _status(node.url, "/readyz") == (200, {"ok": True, "height": 1})

        db = sqlite3.connect(node.data_dir / "ledger.db", timeout=30)
        db.execute("ALTER TABLE blocks RENAME TO blocks_away")       # the database fails under the node
        db.commit()
        tx = stack.submit("open_wallet", {"wallet_id": "W-2", "public_key": "22" * 32})

        seen: dict[str, tuple[int, dict]] = {}
        deadline = time.monotonic() + 60
        while node.alive and len(seen) < 2 and time.monotonic() < deadline:
            for path in ("/healthz", "/readyz"):
                got = _status(node.url, path)
                if got is not None and got[0] == 503 and got[1].get("reason"):
                    seen[path] = got
            time.sleep(0.02)
        assert set(seen) == {"/healthz", "/readyz"}, seen
        for code, body in seen.values():
            assert body["ok"] is False and body["reason"].startswith("consensus: ") and "blocks" in body["reason"]
        node.proc.wait(60)
        assert node.proc.returncode == EXIT_FAILED
        assert "background loop consensus failed" in node.log_path.read_text()

        db.execute("ALTER TABLE blocks_away RENAME TO blocks")        # repaired; the service manager restarts it
        db.commit()
        db.close()
        node.start()
        node.wait_healthy()
        stack.wait_committed([tx], timeout=60)                        # the decided block, from the WAL
        stack.operator([("open_wallet", {"wallet_id": "W-3", "public_key": "33" * 32})])
        deadline = time.monotonic() + 60
        while _status(node.url, "/readyz") != (200, {"ok": True, "height": 3}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _status(node.url, "/readyz") == (200, {"ok": True, "height": 3})
    finally:
        stack.stop()
