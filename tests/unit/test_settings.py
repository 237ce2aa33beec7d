"""Settings: every BUREAU_* variable parsed into its section, documented in docs/settings.md, and
a bad or unknown one refused at start with one line naming it (exit 2, no traceback)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bureau.config import VARIABLES, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_variables_fill_their_sections():
    s = Settings.from_env({"BUREAU_MQTT_PORT": "18830", "BUREAU_AUTHZ_HOLD_TTL_S": "60",
                           "BUREAU_MQTT_SHARED_SUBSCRIPTION": "off", "BUREAU_KEY_FILE": "/k/node.key",
                           "BUREAU_AUTHZ_ENABLED": "yes", "BUREAU_BLOCK_INTERVAL_MS": " 50 ",
                           "BUREAU_DB_URL": "sqlite:////tmp/x.db", "BUREAU_MQTT_PASSWORD": "pw"})
    assert (s.mqtt.port, s.authz.hold_ttl_s, s.mqtt.shared_subscription) == (18830, 60, False)
    assert (s.node_key_file, s.authz.enabled, s.consensus.block_interval_ms) == (Path("/k/node.key"), True, 50)
    assert s.database_url == "sqlite:////tmp/x.db" and s.mqtt_login("authz") == ("bureau-1.authz", "pw")


def test_defaults_and_derived_values():
    s = Settings.from_env({})
    assert s == Settings() and s.authz.enabled is None and s.mqtt.password is None
    assert s.database_url == f"sqlite:///{Path('var/bureau-1') / 'ledger.db'}"
    assert s.node_key_file == Path("var/bureau-1/node.key")
    assert Settings.from_env({"BUREAU_KEY_FILE": "", "BUREAU_AUTHZ_ENABLED": ""}) == s


def test_overrides_are_named_as_their_variables_and_checked():
    s = Settings.from_env({"BUREAU_MQTT_PORT": "1000"}, mqtt_port=1884, db_url="sqlite:///a.db", http_port=None,
                          authz_list_min_interval_s=0, data_dir="/d")
    assert (s.mqtt.port, s.storage.db_url, s.http.port, s.authz.list_min_interval_s) == (1884, "sqlite:///a.db", 8080, 0)
    assert s.data_dir == Path("/d")
    with pytest.raises(TypeError, match="mqtt_prot"):
        Settings.from_env({}, mqtt_prot=1)
    with pytest.raises(SettingsError, match="BUREAU_MQTT_PORT=70000"):
        Settings.from_env({}, mqtt_port=70000)
    with pytest.raises(SettingsError, match="BUREAU_MQTT_PORT=True"):
        Settings.from_env({}, mqtt_port=True)


@pytest.mark.parametrize("name,value,says", [
    ("BUREAU_MQTT_PORT", "18830x", "BUREAU_MQTT_PORT='18830x': allowed: an integer 1..65535"),
    ("BUREAU_HTTP_PORT", "0", "BUREAU_HTTP_PORT=0: allowed: an integer 1..65535"),
    ("BUREAU_AUTHZ_LIST_MAX_ENTRIES", "5000", "BUREAU_AUTHZ_LIST_MAX_ENTRIES=5000: allowed: an integer 0..1400"),
    ("BUREAU_MEMPOOL_LIMIT", "-1", "BUREAU_MEMPOOL_LIMIT=-1: allowed: an integer >= 1"),
    ("BUREAU_MQTT_SHARED_SUBSCRIPTION", "maybe", "allowed: 1/0, true/false, yes/no, on/off"),
    ("BUREAU_PEER_ADDRESSES", "bureau-2=127.0.0.1", "BUREAU_PEER_ADDRESSES: 'bureau-2=127.0.0.1' is not host:port"),
    ("BUREAU_PEER_LISTEN", "127.0.0.1:99999", "BUREAU_PEER_LISTEN='127.0.0.1:99999': has a port outside 1..65535"),
    ("BUREAU_OCPI_PARTNER_NETWORKS", "127.0.0.0/8,10.20.0.1/16",
     "BUREAU_OCPI_PARTNER_NETWORKS='127.0.0.0/8,10.20.0.1/16': 10.20.0.1/16 has host bits set"),
    ("BUREAU_OCPI_PARTNER_NETWORKS", "localhost", "BUREAU_OCPI_PARTNER_NETWORKS='localhost': 'localhost' does not "
                                                  "appear to be an IPv4 or IPv6 network"),
    ("BUREAU_MQTT_PROT", "1883", "BUREAU_MQTT_PROT is not a bureau setting (docs/settings.md lists them); "
                                 "did you mean BUREAU_MQTT_PORT?"),
])
def test_a_bad_or_unknown_variable_is_refused_naming_it(name, value, says):
    with pytest.raises(SettingsError) as e:
        Settings.from_env({name: value})
    assert says in str(e.value) and "\n" not in str(e.value)


def test_the_node_refuses_a_bad_setting_in_one_line_with_exit_2(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "BUREAU_MQTT_PORT": "abc", "BUREAU_DATA_DIR": str(tmp_path / "d")}
    p = subprocess.run([sys.executable, "-m", "bureau.cli", "run"], env=env, capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 2, p.stderr
    assert p.stderr == "bureau run: BUREAU_MQTT_PORT='abc': allowed: an integer 1..65535\n"
    assert not (tmp_path / "d").exists()  # refused before anything starts


def _documented() -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\| `(BUREAU_[A-Z0-9_]+)` \| ([^|]+) \| ([^|]+) \|", (ROOT / "docs" / "settings.md").read_text(),
                      re.M)
    return {name: (kind.strip(), default.strip()) for name, kind, default in rows}


def test_every_setting_is_documented_with_its_type_and_default():
    doc = _documented()
    assert set(doc) == set(VARIABLES)
    words = {"int": "integer", "bool": "boolean", "str": "text", "Path": "path"}
    for name, var in VARIABLES.items():
        kind, default = doc[name]
        assert kind.startswith(words[var.kind]), name
        lo, hi = var.field.metadata.get("range", (None, None))
        if lo is not None:
            assert kind == f"integer {lo}..{hi}" if hi is not None else kind == f"integer >= {lo}", name
        d = var.default
        if d is None or d == "":
            assert not default.startswith("`"), name  # a derived default says what it is
        else:
            shown = str(d).lower() if isinstance(d, bool) else str(d)
            assert default == f"`{shown}`", name


def test_the_api_certificate_and_key_are_set_together():
    with pytest.raises(SettingsError, match="BUREAU_HTTP_TLS_CERT_FILE and BUREAU_HTTP_TLS_KEY_FILE: allowed: both"):
        Settings.from_env({"BUREAU_HTTP_TLS_CERT_FILE": "/c.crt"})
    s = Settings.from_env({"BUREAU_HTTP_TLS_CERT_FILE": "/c.crt", "BUREAU_HTTP_TLS_KEY_FILE": "/c.key",
                           "BUREAU_MQTT_TLS": "true", "BUREAU_MQTT_CA_FILE": "/ca.crt"})
    assert (s.http.tls_key_file, s.mqtt.tls, s.mqtt.ca_file) == (Path("/c.key"), True, Path("/ca.crt"))


def test_the_log_format_is_text_or_json():
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"BUREAU_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match="BUREAU_LOG_FORMAT='xml': allowed: text, json"):
        Settings.from_env({"BUREAU_LOG_FORMAT": "xml"})


def test_the_ocpi_business_name_comes_with_the_tokens_file():
    ocpi = {"BUREAU_OCPI_TOKENS_FILE": "/t", "BUREAU_OCPI_PARTY_ID": "CLG"}
    with pytest.raises(SettingsError, match="BUREAU_OCPI_BUSINESS_NAME='': allowed: 1-100 printable"):
        Settings.from_env(ocpi)
    with pytest.raises(SettingsError, match="BUREAU_OCPI_BUSINESS_NAME"):
        Settings.from_env({**ocpi, "BUREAU_OCPI_BUSINESS_NAME": "x" * 101})
    assert Settings.from_env({**ocpi, "BUREAU_OCPI_BUSINESS_NAME": "Chargeledger"}).ocpi.business_name == "Chargeledger"
