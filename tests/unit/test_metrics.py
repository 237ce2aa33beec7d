"""The node's metrics: Prometheus text with HELP and TYPE, one registry per node, and the
counter reads the tests and the dashboard use."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bureau.metrics import COUNTERS, Metrics


def _families(m: Metrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(m.exposition().decode())}


def test_every_series_has_help_and_type_and_counts_by_reason():
    m = Metrics()
    m.inc("rejected", "bad_signature")
    m.inc("rejected", "bad_signature")
    m.inc("rejected", "unknown_charger", n=3)
    m.inc("committed", n=5)
    m.gauge("height", "Height of the last committed block", lambda: 7)
    m.commit_latency.observe(0.3)
    text = m.exposition().decode()
    assert "# HELP bureau_rejected_total Receipts from the broker rejected, by reason" in text
    assert "# TYPE bureau_rejected_total counter" in text
    assert 'bureau_rejected_total{reason="bad_signature"} 2.0' in text
    assert "# TYPE bureau_height gauge" in text and "bureau_height 7.0" in text
    assert "# TYPE bureau_commit_latency_seconds histogram" in text
    assert 'bureau_commit_latency_seconds_bucket{le="0.5"} 1.0' in text
    assert "_created" not in text
    fams = _families(m)
    assert fams["bureau_receipt_publish_to_commit_seconds"].type == "histogram"
    assert all(f.documentation for f in fams.values())
    assert m.get("rejected", "bad_signature") == 2 and m.get("committed") == 5
    assert m.total("rejected") == 5
    assert m.by_reason("rejected") == {"bad_signature": 2, "unknown_charger": 3}
    assert m.snapshot()["rejected"] == {"bad_signature": 2, "unknown_charger": 3}
    assert m.snapshot()["committed"] == {"total": 5}


def test_two_nodes_in_one_process_count_apart():
    a, b = Metrics(), Metrics()
    a.inc("admitted")
    assert (a.get("admitted"), b.get("admitted")) == (1, 0)
    assert b"bureau_admitted_total 0.0" in b.exposition()


def test_a_counter_nobody_declared_is_an_error():
    with pytest.raises(KeyError):
        Metrics().inc("made_up_name")
    assert all(help_ for help_, _ in COUNTERS.values())
