"""The fleet simulator (scripts/fleet.py) with a small fleet and a short day: 50 chargers of the
firmware's own code in two worker processes against four bureau processes and mosquitto, phones
querying meanwhile. Every receipt must be committed exactly once on every node, every wallet
consistent, the phones' queries answered and their proofs verified, and the plots written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_a_small_fleet_loses_and_doubles_nothing_and_plots_its_day(tmp_path):
    # about a minute on a quiet machine; the bound is for a machine shared with other work
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "fleet.py"), "--chargers", "50", "--day-s", "30",
                          "--workers", "2", "--wallets", "8", "--phone-rate", "10", "--proof-sample", "1",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=540)
    tail = run.stdout[-4000:] + run.stderr[-3000:]
    assert run.stdout.strip(), tail
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == json.loads((out / "report.json").read_text()), tail
    assert result["chargers"] == 50 and result["workers"] == 2, tail
    assert result["sessions"] > 50 and result["receipts_issued"] == result["sessions"], tail
    assert result["receipts_lost"] == 0 and result["receipts_doubled"] == 0, tail
    assert result["receipts_committed"] == result["receipts_issued"] == result["receipts_acked"], tail
    assert set(result["committed_by_node"].values()) == {result["receipts_issued"]}, tail
    assert result["wallets_consistent"] and result["wallets_checked"] == 8 * 4, tail
    assert result["chains_valid"] and result["state_roots_agree"], tail
    assert result["publish_to_ack_ms"]["count"] == result["receipts_issued"], tail
    assert result["publish_to_ack_ms"]["p99"] is not None, tail
    phones = result["phones"]
    assert phones["queries"] > 0 and phones["statuses"] == {"200": phones["requests"]}, tail
    assert phones["verified"]["balance"] > 0 and phones["verified"]["proof"] > 0, tail
    assert phones["verification_failures"] == 0, tail
    assert sorted(Path(p).name for p in result["plots"]) == ["backlog.png", "latency.png", "throughput.png"], tail
    for p in result["plots"]:
        data = Path(p).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, p
    assert set(result["rss_kib"]) == {"bureau-1", "bureau-2", "bureau-3", "bureau-4", "mosquitto"}, tail
    assert result["passed"] and run.returncode == 0, tail
