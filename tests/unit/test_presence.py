"""Chargers online from their retained status and last will (firmware/core/status.py)."""

import pytest

import status as firmware_status  # the firmware's own status messages (chargerhost puts it on the path)
from bureau.ingest.presence import ChargerPresence, StatusRefused, parse_status


def test_online_status_then_last_will_then_a_cleared_topic():
    p = ChargerPresence()
    topic = "ev/v1/charger/CH-1/status"
    p.seen(topic, firmware_status.status_message("CH-1", "available", 1000, "1.0"))
    p.seen("ev/v1/charger/CH-2/status", firmware_status.status_message("CH-2", "charging", 5, "1.0"))
    assert (p.online(), p.known()) == (2, 2)
    p.seen(topic, firmware_status.offline_message("CH-1", "1.0"))  # the broker publishes the will
    assert (p.online(), p.known()) == (1, 2)
    p.seen(topic, b"")
    assert (p.online(), p.known()) == (1, 1)


@pytest.mark.parametrize("topic,payload,reason", [
    ("ev/v1/charger/CH 1/status", b"{}", "bad_topic"),
    ("ev/v1/charger/CH-1/receipt", b"{}", "bad_topic"),
    ("ev/v1/charger/CH-1/status", b"not json", "malformed"),
    ("ev/v1/charger/CH-1/status", b'{"v": 2, "charger_id": "CH-1", "online": true}', "unknown_version"),
    ("ev/v1/charger/CH-1/status", b'{"v": 1, "charger_id": "CH-9", "online": true}', "malformed"),
    ("ev/v1/charger/CH-1/status", b'{"v": 1, "charger_id": "CH-1", "online": "yes"}', "malformed"),
])
def test_a_status_that_says_nothing_countable_is_refused_with_a_reason(topic, payload, reason):
    with pytest.raises(StatusRefused) as e:
        parse_status(topic, payload)
    assert e.value.args[0] == reason
