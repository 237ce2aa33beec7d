"""The device's MQTT TLS settings (firmware/device/app.py broker_context): the only way to plain
MQTT is a config without "tls" and without a CA; every half-set or mistyped setting is refused
with a reason, so a charger meant to pin the network's CA never talks plain to the broker."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("mqtt, ca, reason", [
    ({"host": "b", "tls": True}, None, "no_ca"),                   # TLS, CA file not provisioned
    ({"host": "b", "ca": "ca.der"}, None, "bad_config"),           # a CA named, TLS not switched on
    ({"host": "b", "tls": False}, b"\x30\x03", "bad_config"),      # a CA handed in, TLS off
    ({"host": "b", "tls": "yes"}, b"\x30\x03", "bad_config"),      # not a boolean
])
def test_half_set_tls_is_refused(device, mqtt, ca, reason):
    app = importlib.import_module("app")
    with pytest.raises(ValueError) as err:
        app.broker_context(mqtt, ca)
    assert err.value.reason == reason, err.value


def test_plain_only_without_any_tls_setting(device):
    app = importlib.import_module("app")
    assert app.broker_context({"host": "b", "port": 1883}, None) is None
    assert app.broker_context({"host": "b", "tls": False}, None) is None
