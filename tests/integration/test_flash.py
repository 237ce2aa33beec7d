"""scripts/flash.py, the technician's `just flash`: the dry run names every command and file, a
missing or busy port, a missing operator key and bad arguments are one-line errors (no key is
made), the staged config carries the charger's registry login, and a charger running under the
real MicroPython unix port over TLS, refused by the broker until enrolled, is enrolled by the
enroll step with the key its firmware prints, then connects and has a session acked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from bureau.crypto import load_or_create_key

ROOT = Path(__file__).resolve().parents[2]
FLASH = [sys.executable, str(ROOT / "scripts" / "flash.py")]
EXAMPLE = ROOT / "hardware" / "board" / "config.example.json"
MANIFEST = ROOT / "firmware" / "manifest.py"
READ_KEY = "import app; app.print_public_key()"


def flash(*args, env=None):
    return subprocess.run(FLASH + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, **(env or {})), timeout=120)


def flash_module():
    """scripts/flash.py as a module, by file: the firmware's own module `flash` takes the name."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("flash_script", ROOT / "scripts" / "flash.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _built() -> None:
    if not (ROOT / "build" / "firmware" / "device" / "app.mpy").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "firmware_build.py")], check=True, capture_output=True)


def test_dry_run_prints_every_command_and_file(tmp_path):
    _built()
    port = tmp_path / "ttyUSB0"
    port.write_text("")
    key = tmp_path / "operator.key"
    load_or_create_key(key)
    secret = tmp_path / "charger-secret"
    secret.write_text("ab" * 32 + "\n")
    args = (port, EXAMPLE, "--node", "http://127.0.0.1:9", "--operator-key", key, "--broker-secret", secret,
            "--broker", "10.10.0.5:8883")
    for run in (flash(*args, "--dry-run"), flash(*args, env={"DRY_RUN": "1"})):
        assert run.returncode == 0, run.stderr
        out = run.stdout
        for want in ("GET http://127.0.0.1:9/v1/genesis", "GET http://127.0.0.1:9/v1/tariffs/", ":lib/", ":main.py",
                     ":board.json", ":meter.json", ":config.json", ":data/bureau.json", f"connect {port} reset",
                     f"connect {port} exec '{READ_KEY}'", '"host": "10.10.0.5", "port": 8883',
                     f'"username": "GZ-TH-0001", "password": derived from {secret} (32 characters)',
                     "enroll_charger", "until committed: prints the height",
                     "GET http://127.0.0.1:9/v1/chargers/GZ-TH-0001"):
            assert want in out, (want, out)
        assert "chargepoint.mpy" in out and "board.mpy" in out and "uart_transport.mpy" in out and "app.mpy" in out
        assert out.index(":data/bureau.json") < out.index(READ_KEY) < out.index(" reset") < out.index("enroll_charger")
        assert "change-me" not in out and "ev/v1/charger/" not in out  # no password printed; the key is not read from the broker

    given = flash(*args, "--dry-run", "--enroll-only", "--public-key", "cd" * 32)
    assert given.returncode == 0, given.stderr
    assert f"public key {'cd' * 32} (from --public-key)" in given.stdout and "mpremote" not in given.stdout
    assert "enroll_charger" in given.stdout and ":config.json" not in given.stdout


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
    assert ":ca.der" not in flash(*args).stdout  # plain MQTT without --ca

    tls_cfg = json.loads(EXAMPLE.read_text())
    tls_cfg["mqtt"]["tls"] = True
    (tmp_path / "tls.json").write_text(json.dumps(tls_cfg))
    r = flash(port, tmp_path / "tls.json", *args[2:])
    assert r.returncode == 1 and r.stderr.startswith("error: no_ca: ") and "--ca" in r.stderr, r.stderr
    (tmp_path / "junk.pem").write_text("not a certificate")
    r = flash(*args, "--ca", tmp_path / "junk.pem")
    assert r.returncode == 1 and r.stderr == f"error: bad_ca: {tmp_path / 'junk.pem'}: not a DER or PEM certificate\n"


def test_staged_files_carry_the_ca_tls_address_and_registry_login(tmp_path):
    """What a real run writes to the device (stage_files), without a device."""
    from bureau.tools.broker_registry import charger_password
    from tests.support.tlscerts import make_pki

    flash_script = flash_module()
    pki = make_pki(tmp_path / "pki")
    cfg = flash_script.load_config(EXAMPLE)
    ca = flash_script.load_ca(pki.ca_pem, cfg)
    secret = bytes(range(32))
    genesis = {"chain_id": "c" * 64, "validators": [{"id": "bureau-1", "public_key": "ab" * 32}]}
    staging = tmp_path / "staging"
    staging.mkdir()
    files = dict((remote, local) for local, remote in flash_script.stage_files(
        cfg, "eastron_sdm120", genesis, None, staging, ca, ("broker.depot", 8883), secret))
    assert files["ca.der"].read_bytes() == pki.ca_der.read_bytes()
    mqtt = json.loads(files["config.json"].read_text())["mqtt"]
    assert mqtt == {"host": "broker.depot", "port": 8883, "tls": True, "ca": "ca.der", "username": cfg["charger_id"],
                    "password": charger_password(secret, cfg["charger_id"])}

    plain = tmp_path / "plain"
    plain.mkdir()
    files = dict((remote, local) for local, remote in flash_script.stage_files(
        cfg, "eastron_sdm120", genesis, None, plain))
    assert json.loads(files["config.json"].read_text())["mqtt"] == cfg["mqtt"]  # the config's own login and address
    assert "ca.der" not in files


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

    base = (port, EXAMPLE, "--node", "http://127.0.0.1:9", "--operator-key", key, "--dry-run")
    (tmp_path / "short-secret").write_text("ab" * 16)
    (tmp_path / "junk-secret").write_text("not hex")
    for extra, reason in ((("--public-key", "AB" * 32), "bad_public_key"), (("--public-key", "ab"), "bad_public_key"),
                          (("--broker", "10.10.0.5"), "bad_broker"), (("--broker", "h:99999"), "bad_broker"),
                          (("--broker-secret", tmp_path / "none"), "no_broker_secret"),
                          (("--broker-secret", tmp_path / "short-secret"), "bad_broker_secret"),
                          (("--broker-secret", tmp_path / "junk-secret"), "bad_broker_secret")):
        r = flash(*base, *extra)
        assert r.returncode == 1 and r.stderr.startswith(f"error: {reason}: "), (extra, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_charger_refused_until_flash_enrolls_the_key_it_prints_then_session_acked(tmp_path):
    """Registry logins, TLS-only broker, the charger under the real MicroPython unix port on
    the files flash stages: the broker refuses its login; the key the firmware prints (what
    flash reads over mpremote) is enrolled by `flash --enroll-only --public-key`, which waits
    for the commit; the charger then connects and a session's receipt is committed and acked."""
    from tests.support.device_run import ChargerRig, Device, exec_on_flash
    from tests.support.mpunix import require_frozen_interpreter

    interpreter = require_frozen_interpreter(MANIFEST)
    flash_script = flash_module()
    rig = ChargerRig(tmp_path, charger_id="GZ-FL-0009", tls=True, registry_logins=True)
    dev = None
    try:
        stack = rig.stack
        url = stack.nodes[0].url
        cfg = json.loads(EXAMPLE.read_text())
        cfg.update(charger_id=rig.charger_id, meter_serial="SDM120-0042")
        cfg["mqtt"] = {"host": "127.0.0.1", "port": 1883}  # no login: flash provisions the registry login
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        ca = flash_script.load_ca(stack.broker.ca_file, cfg)
        secret = flash_script.load_broker_secret(stack.layout.charger_secret)
        genesis, tariff = flash_script.fetch_bureau(url, None)
        staging, device_flash = tmp_path / "staging", tmp_path / "device"
        staging.mkdir()
        for local, remote in flash_script.stage_files(flash_script.load_config(tmp_path / "config.json"),
                                                      "eastron_sdm120", genesis, tariff, staging, ca,
                                                      ("127.0.0.1", stack.broker.port), secret):
            (device_flash / remote).parent.mkdir(parents=True, exist_ok=True)
            (device_flash / remote).write_bytes(local.read_bytes())  # what mpremote cp puts there

        dev = Device(interpreter, device_flash, rig.bench).start()
        dev.wait_line("mqtt: not_authorized", timeout=60)  # over TLS, the login not yet in the registry
        assert not any("link: up" in ln for ln in dev.lines)

        out = exec_on_flash(interpreter, device_flash, READ_KEY)
        [public] = flash_script.PUBLIC_KEY_LINE.findall(out)
        args = ("/dev/null", tmp_path / "config.json", "--node", url, "--operator-key",
                stack.root / "net" / "operator.key", "--enroll-only", "--public-key", public)
        r = flash(*args)
        assert r.returncode == 0, r.stderr
        m = re.search(rf"{rig.charger_id}: enrolled with public key {public}, committed at height (\d+)", r.stdout)
        assert m, r.stdout
        got = httpx.get(f"{url}/v1/chargers/{rig.charger_id}", timeout=10).json()
        assert got == {"charger_id": rig.charger_id, "public_key": public, "retired": False}
        again = flash(*args)  # a second run finds it enrolled with the same key
        assert again.returncode == 0 and "already enrolled" in again.stdout, again.stderr

        assert "TLS" in dev.wait_line("link: up", timeout=90)
        stack.operator([("open_wallet", {"wallet_id": rig.wallet, "public_key": rig.driver.verify_key.encode().hex(),
                                         "cards": [rig.CARD]}),
                        ("top_up", {"wallet_id": rig.wallet, "amount_fen": rig.top_up_fen, "reference": "bank:fl"})])
        rig.charge(dev, seconds=2)
        dev.wait_for(lambda: len(rig.receipts()) == 1 and not dev.outbox(), "the receipt's ack", timeout=60)
    finally:
        if dev is not None:
            dev.kill()
        rig.close()
