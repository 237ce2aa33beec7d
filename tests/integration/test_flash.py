"""scripts/flash.py, the technician's `just flash`: the dry run names every command and file, a
missing or busy port and a missing operator key are one-line errors (no key is made), and the
enrollment step reads a freshly booted charger's retained key from a real mosquitto and enrolls
it on a real bureau node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bureau.crypto import load_or_create_key

ROOT = Path(__file__).resolve().parents[2]
FLASH = [sys.executable, str(ROOT / "scripts" / "flash.py")]
EXAMPLE = ROOT / "hardware" / "board" / "config.example.json"


def flash(*args, env=None):
    return subprocess.run(FLASH + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, **(env or {})), timeout=120)


def _built() -> None:
    if not (ROOT / "build" / "firmware" / "device" / "app.mpy").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "firmware_build.py")], check=True, capture_output=True)


def test_dry_run_prints_every_command_and_file(tmp_path):
    _built()
    port = tmp_path / "ttyUSB0"
    port.write_text("")
    key = tmp_path / "operator.key"
    load_or_create_key(key)
    args = (port, EXAMPLE, "--node", "http://127.0.0.1:9", "--operator-key", key)
    for run in (flash(*args, "--dry-run"), flash(*args, env={"DRY_RUN": "1"})):
        assert run.returncode == 0, run.stderr
        out = run.stdout
        for want in ("GET http://127.0.0.1:9/v1/genesis", "GET http://127.0.0.1:9/v1/tariffs/", ":lib/", ":main.py",
                     ":board.json", ":meter.json", ":config.json", ":data/bureau.json", f"connect {port} reset",
                     "ev/v1/charger/GZ-TH-0001/enroll", "enroll_charger", "GET http://127.0.0.1:9/v1/chargers/GZ-TH-0001"):
            assert want in out, (want, out)
        assert "chargepoint.mpy" in out and "board.mpy" in out and "uart_transport.mpy" in out and "app.mpy" in out
        assert out.index(":data/bureau.json") < out.index(" reset") < out.index("/enroll")


def test_dry_run_provisions_the_ca_and_tls(tmp_path):
    from tests.support.tlscerts import make_pki

    _built()
    port = tmp_path / "ttyUSB0"
    port.write_text("")
    key = tmp_path / "operator.key"
    load_or_create_key(key)
    pki = make_pki(tmp_path / "pki")
    args = (port, EXAMPLE, "--node", "http://127.0.0.1:9", "--operator-key", key, "--dry-run")
    der = pki.ca_der.read_bytes()
    for ca in (pki.ca_pem, pki.ca_der):  # PEM goes onto the charger as DER
        run = flash(*args, "--ca", ca)
        assert run.returncode == 0, run.stderr
        out = run.stdout
        assert '"mqtt" with "tls": true, "ca": "ca.der"' in out, out
        assert f"the network's CA certificate from {ca} as DER ({len(der)} bytes)" in out, out
        assert "cp '<staging>/ca.der' :ca.der" in out, out
        assert out.index(":ca.der") < out.index(" reset")
        assert f"over TLS verified against {ca} ev/v1/charger/GZ-TH-0001/enroll" in out, out
    assert ":ca.der" not in flash(*args).stdout  # plain MQTT without --ca

    tls_cfg = json.loads(EXAMPLE.read_text())
    tls_cfg["mqtt"]["tls"] = True
    (tmp_path / "tls.json").write_text(json.dumps(tls_cfg))
    r = flash(port, tmp_path / "tls.json", *args[2:])
    assert r.returncode == 1 and r.stderr.startswith("error: no_ca: ") and "--ca" in r.stderr, r.stderr
    (tmp_path / "junk.pem").write_text("not a certificate")
    r = flash(*args, "--ca", tmp_path / "junk.pem")
    assert r.returncode == 1 and r.stderr == f"error: bad_ca: {tmp_path / 'junk.pem'}: not a DER or PEM certificate\n"


def test_staged_files_carry_the_ca_and_the_tls_setting(tmp_path):
    """What a real run writes to the device (stage_files), without a device."""
    import importlib.util

    from tests.support.tlscerts import make_pki

    # by file: the firmware's own module `flash` takes the name
    spec = importlib.util.spec_from_file_location("flash_script", ROOT / "scripts" / "flash.py")
    flash_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flash_script)

    pki = make_pki(tmp_path / "pki")
    cfg = flash_script.load_config(EXAMPLE)
    ca = flash_script.load_ca(pki.ca_pem, cfg)
    genesis = {"chain_id": "c" * 64, "validators": [{"id": "bureau-1", "public_key": "ab" * 32}]}
    staging = tmp_path / "staging"
    staging.mkdir()
    files = dict((remote, local) for local, remote in flash_script.stage_files(cfg, "eastron_sdm120", genesis, None,
                                                                               staging, ca))
    assert files["ca.der"].read_bytes() == pki.ca_der.read_bytes()
    mqtt = json.loads(files["config.json"].read_text())["mqtt"]
    assert mqtt["tls"] is True and mqtt["ca"] == "ca.der" and mqtt["host"] == cfg["mqtt"]["host"]


def test_port_and_key_errors_are_one_line(tmp_path):
    port = tmp_path / "ttyUSB0"
    port.write_text("")
    key = tmp_path / "operator.key"
    load_or_create_key(key)
    missing = flash(tmp_path / "ttyUSB9", EXAMPLE, "--node", "http://127.0.0.1:9", "--operator-key", key, "--dry-run")
    assert missing.returncode == 1 and missing.stderr.startswith("error: no_port: ")
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr

    with open(port) as held:  # another program has the port open
        busy = flash(port, EXAMPLE, "--node", "http://127.0.0.1:9", "--operator-key", key, "--dry-run")
    assert held.closed and busy.returncode == 1 and busy.stderr.startswith("error: port_busy: ")
    assert str(os.getpid()) in busy.stderr and len(busy.stderr.strip().splitlines()) == 1

    nokey = tmp_path / "no" / "operator.key"
    r = flash(port, EXAMPLE, "--node", "http://127.0.0.1:9", "--operator-key", nokey, "--dry-run")
    assert r.returncode == 1 and r.stderr.startswith("error: no_operator_key: ") and not nokey.exists()


def test_enrollment_read_from_the_broker_reaches_the_ledger(tmp_path):
    from chargerhost.simcharger import SimulatedCharger
    from bureau.tools.stack import Stack

    stack = Stack(tmp_path / "stack", nodes_count=1).start()
    charger = None
    try:
        url = stack.nodes[0].url
        genesis = httpx.get(url + "/v1/genesis", timeout=10).json()
        cid = "GZ-FL-0007"
        # the freshly flashed charger boots: makes its key, announces it (retained) and stays on
        user, password = stack.broker_login(cid)
        charger = SimulatedCharger(cid, tmp_path / "flash", stack.broker.port, genesis=genesis,
                                   mqtt_username=user, mqtt_password=password)
        charger.connect()
        deadline = time.monotonic() + 30
        while not charger.announced:
            assert time.monotonic() < deadline, "the charger did not announce its key"
            charger.pump(wait_ms=10)
        cfg = json.loads(EXAMPLE.read_text())
        cfg.update(charger_id=cid, meter_serial=f"SDM-{cid}")
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        assert httpx.get(f"{url}/v1/chargers/{cid}", timeout=10).status_code == 404
        tech = stack.broker_login("technician", role="operator")
        args = ("/dev/null", tmp_path / "config.json", "--node", url, "--operator-key",
                stack.root / "net" / "operator.key", "--broker", f"127.0.0.1:{stack.broker.port}",
                "--mqtt-username", tech[0], "--mqtt-password", tech[1], "--enroll-only", "--enroll-timeout", "20")
        r = flash(*args)
        assert r.returncode == 0, r.stderr
        public = charger.core.public_key().hex()
        assert f"{cid}: enrolled with public key {public}" in r.stdout
        got = httpx.get(f"{url}/v1/chargers/{cid}", timeout=10).json()
        assert got == {"charger_id": cid, "public_key": public, "retired": False}
        again = flash(*args)  # a second run finds it enrolled with the same key
        assert again.returncode == 0 and "already enrolled" in again.stdout
        wrong = flash(*args[:-5], "--mqtt-password", "wrong", "--enroll-only", "--enroll-timeout", "5")
        assert wrong.returncode == 1 and wrong.stderr.startswith("error: broker_refused: "), wrong.stderr
    finally:
        if charger is not None:
            charger.close()
        stack.stop()


def test_enrollment_over_tls_with_the_pinned_ca(tmp_path):
    """With --ca the technician's tool reads the charger's key from a TLS-only broker, verified
    against the same CA the charger pins (given here as DER, as flash writes it to the charger)."""
    import paho.mqtt.client as mqtt
    from nacl.signing import SigningKey

    import status as fw_status
    from bureau.tools.stack import Stack
    from tests.support.tlscerts import der_of

    stack = Stack(tmp_path / "stack", nodes_count=1, mqtt_tls=True).start()
    charger = None
    try:
        cid = "GZ-FL-0008"
        public = SigningKey.generate().verify_key.encode()
        # what the charger publishes at first boot, over TLS with its own login
        user, password = stack.broker_login(cid)
        charger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
        charger.username_pw_set(user, password)
        charger.tls_set(ca_certs=str(stack.broker.ca_file))
        charger.connect("127.0.0.1", stack.broker.port)
        charger.loop_start()
        charger.publish(f"ev/v1/charger/{cid}/enroll", fw_status.enroll_message(cid, public, f"SDM-{cid}", "fw-test"),
                        qos=1, retain=True).wait_for_publish(10)
        cfg = json.loads(EXAMPLE.read_text())
        cfg.update(charger_id=cid, meter_serial=f"SDM-{cid}")
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        (tmp_path / "ca.der").write_bytes(der_of(stack.broker.ca_file))
        tech = stack.broker_login("technician", role="operator")
        args = ("/dev/null", tmp_path / "config.json", "--node", stack.nodes[0].url, "--operator-key",
                stack.root / "net" / "operator.key", "--broker", f"127.0.0.1:{stack.broker.port}",
                "--mqtt-username", tech[0], "--mqtt-password", tech[1], "--enroll-only", "--enroll-timeout", "20")
        r = flash(*args, "--ca", tmp_path / "ca.der")
        assert r.returncode == 0, r.stderr
        assert f"{cid}: enrolled with public key {public.hex()}" in r.stdout
        plain = flash(*args)  # without the CA the tool cannot speak to a TLS-only broker
        assert plain.returncode == 1 and plain.stderr.startswith("error: "), plain.stderr
        assert "Traceback" not in plain.stderr and len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    finally:
        if charger is not None:
            charger.loop_stop()
            charger.disconnect()
        stack.stop()
