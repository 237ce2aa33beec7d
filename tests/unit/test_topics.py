"""The bureau's topics (backend/bureau/topics.py) and the charger's (firmware/core/topics.py,
imported here under CPython) are the strings of tests/vectors/topics.json, and the broker's ACL
lets a charger use exactly its own."""

import json
from pathlib import Path

import pytest
from paho.mqtt.client import topic_matches_sub

import topics as firmware
from bureau import topics
from bureau.tools.mosquitto import CHARGER_PATTERNS, ROLE_TOPICS

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "topics.json").read_text())
CID = VECTORS["charger_id"]
LEAVES = sorted(VECTORS["charger"])


def test_the_version_is_in_every_topic():
    assert topics.VERSION == VECTORS["topic_version"]
    prefix = f"ev/v{topics.VERSION}/"
    assert all(t.startswith(prefix) for t in [*VECTORS["charger"].values(), *VECTORS["bureau"].values()])


@pytest.mark.parametrize("leaf", LEAVES)
def test_a_chargers_topics_are_the_vectors_on_both_sides(leaf):
    want = VECTORS["charger"][leaf]
    assert getattr(topics, leaf)(CID) == want == topics.charger_topic(CID, leaf)
    assert getattr(firmware, leaf)(CID) == want == firmware.charger_topic(CID, leaf)
    assert topics.charger_of(want, leaf) == CID
    assert topic_matches_sub(topics.every_charger(leaf), want)
    for other in LEAVES:
        if other != leaf:
            assert topics.charger_of(want, other) is None


def test_the_bureaus_topics_are_the_vectors_on_both_sides():
    b = VECTORS["bureau"]
    assert topics.TARIFF == firmware.TARIFF_TOPIC == b["tariff"]
    assert topics.LIST_PREFIX == firmware.LIST_PREFIX == b["authlist_prefix"]
    assert topics.LIST_ALL == firmware.LIST_TOPICS == b["authlist_all"]
    assert topics.LIST_MANIFEST == firmware.MANIFEST_TOPIC == b["authlist_manifest"]
    for i in (0, 12):
        assert topics.list_page(i) == firmware.PAGE_TOPIC_PREFIX + str(i) == b[f"authlist_page_{i}"]
        assert topic_matches_sub(topics.LIST_ALL, topics.list_page(i))


@pytest.mark.parametrize("topic", VECTORS["not_a_charger_topic"])
def test_topics_that_name_no_charger_are_refused(topic):
    assert all(topics.charger_of(topic, leaf) is None for leaf in LEAVES)


def test_the_broker_acl_lets_a_charger_use_exactly_its_own_topics():
    acl = {}
    for line in CHARGER_PATTERNS.splitlines():
        _, access, pattern = line.split()
        acl[pattern.replace("%u", CID)] = access
    assert acl == {**{VECTORS["charger"][leaf]: "write" for leaf in VECTORS["charger_publishes"]},
                   **{VECTORS["charger"][leaf]: "read" for leaf in VECTORS["charger_reads"]}}
    assert set(topics.CHARGER_PUBLISHES) == set(VECTORS["charger_publishes"])
    assert set(topics.CHARGER_READS) == set(VECTORS["charger_reads"])
    (bureau_read,) = ROLE_TOPICS["charger"]
    access, pattern = bureau_read.split()
    assert access == "read"
    for t in VECTORS["bureau"].values():
        if "#" not in t and not t.endswith("/"):
            assert topic_matches_sub(pattern, t)
