"""The systemd units of deploy/systemd and the example configuration of deploy/example: the units
parse (systemd-analyze verify where the machine has it), name only paths the install layout makes
(deploy/install.sh --print-layout), restart a node that supervision stopped (exit 70), and are
hardened; every BUREAU_* variable of the example is a setting the node takes; the example is what
`just deploy-example` writes."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bureau.config import Settings

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
EXAMPLE = ROOT / "deploy" / "example"
SERVICES = ["bureau.service", "bureau-broker-sync.service"]
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
             "PrivateDevices": "yes", "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": ""}


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with every value it is given (systemd keys repeat; an
    empty assignment resets the list)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None and sep, f"{path.name}: not a unit line: {raw!r}"
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return sections


def layout() -> set[str]:
    out = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), "--print-layout"], check=True,
                         capture_output=True, text=True).stdout
    return set(out.split())


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


@pytest.mark.parametrize("name", SERVICES)
def test_a_unit_names_only_paths_the_install_layout_makes(name):
    made = layout()
    service = unit(UNITS / name)["Service"]
    for command in service["ExecStart"] + service.get("ExecStartPre", []):
        assert command.split()[0] in made, command
    for option in re.findall(r"--(?:ca-file|net|pid-file) (\S+)", " ".join(service["ExecStart"])):
        assert option in made, option
    for key in ("EnvironmentFile", "ReadWritePaths"):
        for path in service[key]:
            assert path.lstrip("-") in made, (key, path)
    assert service["User"] and service["User"] != ["root"]


def test_the_node_restarts_after_supervision_stops_it_and_is_hardened():
    u = unit(UNITS / "bureau.service")
    service = u["Service"]
    assert service["Restart"] == ["on-failure"]  # exit 70 is a failure: restarted from the WAL
    assert "70" not in " ".join(service.get("RestartPreventExitStatus", [])).split()
    assert service["ExecStart"] == ["/opt/bureau/bin/bureau run"]
    assert service["StateDirectory"] == ["bureau"] and service["ReadWritePaths"] == ["/var/lib/bureau"]
    for key, value in HARDENING.items():
        assert service.get(key, []) == ([value] if value else []), key
        assert key in (UNITS / "bureau.service").read_text()


def test_debian_mosquitto_runs_the_network_broker_config():
    service = unit(UNITS / "mosquitto.service.d" / "bureau.conf")["Service"]
    assert service["ExecStart"] == ["/usr/sbin/mosquitto -c /etc/bureau/net/broker/mosquitto.conf"]
    pid_file = re.search(r"--pid-file (\S+)", unit(UNITS / "bureau-broker-sync.service")["Service"]["ExecStart"][0])
    assert pid_file.group(1) in service["ExecStartPost"][0]
    assert (EXAMPLE / "broker" / "mosquitto.conf").read_text().count("/etc/bureau/net/broker/") == 4


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze on this machine")
def test_systemd_analyze_verifies_the_units(tmp_path):
    """The units as systemd reads them, with the install prefix moved under tmp_path, where the
    layout's programs are this checkout's."""
    (tmp_path / "opt/bureau/bin").mkdir(parents=True)
    (tmp_path / "opt/bureau/bin/bureau").symlink_to(ROOT / ".venv" / "bin" / "bureau")
    copies = []
    for name in SERVICES:
        text = (UNITS / name).read_text().replace("/opt/bureau", str(tmp_path / "opt/bureau"))
        (tmp_path / name).write_text(text)
        copies.append(str(tmp_path / name))
    done = subprocess.run(["systemd-analyze", "verify", *copies], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.parametrize("node", [1, 2, 3, 4])
def test_every_variable_of_an_example_env_file_is_a_setting(node):
    env = env_file(EXAMPLE / f"bureau-{node}" / "bureau.env")
    settings = Settings.from_env(env)  # refuses an unknown BUREAU_* name or a value it does not allow
    assert settings.node_id == f"bureau-{node}" and settings.mqtt.tls
    genesis = json.loads((EXAMPLE / "genesis.json").read_text())
    me = next(v for v in genesis["validators"] if v["id"] == settings.node_id)
    assert me["api"] == f"https://{settings.http.host}:{settings.http.port}"
    assert str(settings.genesis) == "/etc/bureau/net/genesis.json"


def test_the_example_is_what_just_deploy_example_writes(tmp_path):
    from scripts.deploy_example import write_example
    write_example(tmp_path / "example")
    for path in sorted(EXAMPLE.rglob("*")):
        if path.is_file() and path.name != "genesis.json":
            assert (tmp_path / "example" / path.relative_to(EXAMPLE)).read_text() == path.read_text(), path
    made = json.loads((tmp_path / "example" / "genesis.json").read_text())
    kept = json.loads((EXAMPLE / "genesis.json").read_text())
    shape = [(v["id"], v["address"], v["api"]) for v in kept["validators"]]
    assert shape == [(v["id"], v["address"], v["api"]) for v in made["validators"]]
    assert not any(p.name.endswith(".key") or p.name == "charger-secret" for p in EXAMPLE.rglob("*"))
