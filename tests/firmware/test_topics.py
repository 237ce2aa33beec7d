"""The charger's topics (firmware/core/topics.py) and the bureau's are the same strings for the
same charger id, and the broker's ACL lets a charger use exactly its own."""

import pytest
from paho.mqtt.client import topic_matches_sub

import topics
from bureau.authz import mqtt as authz_mqtt
from bureau.authz.service import reply_topic
from bureau.ingest.admission import TOPIC_PREFIX, charger_of_topic
from bureau.tools.enroll import enroll_topic
from bureau.tools.mosquitto import CHARGER_PATTERNS, ROLE_TOPICS

IDS = ["CH-1", "GZ-TH-0001", "SIM-CP-12"]


@pytest.mark.parametrize("cid", IDS)
def test_charger_topics_are_the_bureaus(cid):
    assert topics.receipt(cid) == TOPIC_PREFIX + cid + "/receipt"
    assert charger_of_topic(topics.receipt(cid)) == cid
    assert topics.reply(cid) == reply_topic(cid)
    assert authz_mqtt.charger_of_auth_topic(topics.auth(cid)) == cid
    assert topic_matches_sub(authz_mqtt.AUTH_TOPICS, topics.auth(cid))
    assert topics.enroll(cid) == enroll_topic(cid)
    assert charger_of_topic(topics.reply(cid)) is None and authz_mqtt.charger_of_auth_topic(topics.receipt(cid)) is None


def test_bureau_topics_are_the_bureaus():
    assert topics.TARIFF_TOPIC == authz_mqtt.TARIFF_TOPIC
    assert topics.LIST_TOPICS == authz_mqtt.LIST_TOPICS
    assert topics.LIST_PREFIX == authz_mqtt.LIST_PREFIX
    assert topics.PAGE_TOPIC_PREFIX + "3" == authz_mqtt.LIST_PAGE_TOPIC % 3
    assert topics.MANIFEST_TOPIC == authz_mqtt.LIST_MANIFEST_TOPIC


@pytest.mark.parametrize("cid", IDS)
def test_the_broker_acl_lets_a_charger_use_its_own_topics(cid):
    acl = {}
    for line in CHARGER_PATTERNS.splitlines():
        _, access, pattern = line.split()
        acl[pattern.replace("%u", cid)] = access
    writes = {topics.receipt(cid), topics.auth(cid), topics.status(cid), topics.enroll(cid)}
    reads = {topics.reply(cid), topics.cmd(cid)}
    assert acl == {**{t: "write" for t in writes}, **{t: "read" for t in reads}}
    (bureau_read,) = ROLE_TOPICS["charger"]
    access, pattern = bureau_read.split()
    assert access == "read"
    for t in (topics.TARIFF_TOPIC, topics.MANIFEST_TOPIC, topics.PAGE_TOPIC_PREFIX + "0"):
        assert topic_matches_sub(pattern, t)
    assert topic_matches_sub(topics.LIST_TOPICS, topics.PAGE_TOPIC_PREFIX + "0")
