"""Run the charger's device application as a process under the real MicroPython unix port
with the firmware frozen in, booted as on the ESP32: the flash's main.py (firmware/device/main.py)
imports the frozen app and runs it. Fake `machine`/`network`/`ntptime` (tests/device/mpfakes/)
talk to a hardware bench in this process (tests/device/bench.py), real sockets to a real
mosquitto, and a temporary directory (the current directory) is the ESP32's flash.

    flash = provision_flash(tmp / "flash", "GZ-DEV-1", "127.0.0.1", broker_port, genesis)
    bench = HardwareBench(BOARD)
    dev = Device(interpreter, flash, bench, heap="96K").start()
    dev.wait_for(lambda: dev.enroll_seen, ...)    # or dev.wait_line("wifi up")
    dev.kill()                                    # a power cut: kill -9, relay falls open
    dev.start()                                   # reboot on the same flash

`ChargerRig` adds real bureau nodes (bureau.tools.stack.Stack) with the operator's set-up
(enroll the charger with the key it made at first boot, open a wallet with a card, top up), and
`ChargerRig.session()` runs one complete session (card tap, online authorization, charge, stop,
signed receipt, outbox, publish, ack): what bench/firmware_heap.py bisects the heap over.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from chargerhost import DEVICE_DIR

ROOT = Path(__file__).resolve().parents[2]
MPFAKES = ROOT / "tests" / "device" / "mpfakes"
BOARD = json.loads((ROOT / "hardware" / "board" / "esp32_devkitc.json").read_text())
REGMAP = json.loads((ROOT / "hardware" / "meters" / "eastron_sdm120.json").read_text())
HEAP_LINE = re.compile(r"heap free (\d+)")


def provision_flash(root: Path, charger_id: str, mqtt_host: str, mqtt_port: int, genesis: dict | None,
                    tariff: dict | None = None, username: str | None = None, password: str | None = None,
                    ca_der: bytes | None = None, **extra) -> Path:
    """What a technician puts on a new charger: main.py (firmware/device/main.py, the boot
    file that runs the frozen application), board.json, meter.json, config.json, and
    data/bureau.json (authz.provision from the bureau's genesis); with `ca_der`, the network's
    CA as ca.der and "tls": true in the mqtt section. `extra` goes into config.json (e.g.
    mqtt_keepalive_s)."""
    from authz import provision
    from flash import Flash

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text((DEVICE_DIR / "main.py").read_text())
    (root / "board.json").write_text(json.dumps(BOARD))
    (root / "meter.json").write_text(json.dumps(REGMAP))
    mqtt = {"host": mqtt_host, "port": mqtt_port}
    if username is not None:
        mqtt.update(username=username, password=password)
    if ca_der is not None:
        (root / "ca.der").write_bytes(ca_der)
        mqtt["tls"] = True
    mqtt.update(extra.pop("mqtt", {}))
    cfg = {"charger_id": charger_id, "meter_serial": "SDM120-0042", "meter": "meter.json",
           "wifi": {"ssid": "depot", "password": "pw"}, "mqtt": mqtt, "ntp_host": "ntp.depot",
           "max_current_ma": 16000, "tariff": tariff}
    cfg.update(extra)
    (root / "config.json").write_text(json.dumps(cfg))
    if genesis is not None:
        provision(Flash(str(root / "data")), genesis)
    return root


def device_env() -> dict:
    """The environment of a unix-port process that imports modules as the device does."""
    return dict(os.environ, MICROPYPATH=":".join([".frozen", str(MPFAKES)]))  # the firmware is frozen in


def exec_on_flash(interpreter: str, flash: Path, code: str, timeout: float = 60.0) -> str:
    """Run `code` on a charger's flash, as `mpremote exec` runs it on the device (the flash
    directory is the current one); its output."""
    proc = subprocess.run([interpreter, "-c", code], cwd=flash, env=device_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{code!r} failed on the device: {proc.stdout}{proc.stderr}")
    return proc.stdout


# The fakes of the ESP32 port's own modules (and the bench's link) that the device imports. On
# the ESP32 these are C in flash; under the unix port their class and function objects are on
# the Python heap, so a heap budget for the firmware gives the rig this much on top.
PORT_FAKES = ("machine", "network", "ntptime", "benchlink", "benchsocket")


def port_fakes_heap_bytes(interpreter: str) -> int:
    """Heap bytes the imports of PORT_FAKES take in `interpreter` (after a collection): what
    the rig costs the heap beyond the firmware."""
    script = ("import gc\ngc.collect()\na = gc.mem_alloc()\n"
              + "".join("import %s\n" % name for name in PORT_FAKES)
              + "gc.collect()\nprint(gc.mem_alloc() - a)\n")
    env = dict(device_env(), BENCH_PORT="1")  # nothing connects at import
    proc = subprocess.run([interpreter, "-X", "heapsize=512K", "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"importing the port's fakes failed: {proc.stdout}{proc.stderr}")
    return int(proc.stdout.split()[-1])


def rig_heap(interpreter: str, firmware_kb: int) -> str:
    """The -X heapsize that leaves the firmware `firmware_kb` KB beside the port's fakes."""
    return "%dK" % (firmware_kb + -(-port_fakes_heap_bytes(interpreter) // 1024))


class Device:
    """One charger process. Its output is collected line by line (`lines`)."""

    def __init__(self, interpreter: str, flash: Path, bench, heap: str = "2M", timeout: float = 30.0) -> None:
        self.interpreter = interpreter
        self.flash = Path(flash)
        self.bench = bench
        self.heap = heap
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.boots = 0
        self._reader: threading.Thread | None = None

    def start(self) -> "Device":
        env = device_env()
        env["BENCH_PORT"] = str(self.bench.port)
        self.proc = subprocess.Popen([self.interpreter, "-X", f"heapsize={self.heap}", str(MPFAKES / "run_device.py")],
                                     cwd=self.flash, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, bufsize=1)
        self.boots += 1
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self, last: int = 60) -> str:
        return "\n".join(self.lines[-last:])

    def wait_for(self, pred: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        """Wait until `pred()`; fail with the device's output if it dies or time runs out."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not pred():
            if not self.alive:
                time.sleep(0.2)  # the last lines
                raise AssertionError(f"the device exited ({self.proc.returncode}) waiting for {what}:\n"
                                     f"{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; device output:\n{self.output()}")
            time.sleep(0.05)

    def wait_line(self, text: str, timeout: float | None = None, after: int = 0) -> str:
        """The first output line from index `after` containing `text`."""
        found: list[str] = []

        def seen():
            found[:] = [ln for ln in self.lines[after:] if text in ln][:1]
            return bool(found)

        self.wait_for(seen, repr(text), timeout)
        return found[0]

    def heap_free(self) -> list[int]:
        """gc.mem_free() figures the application printed (at boot, then every collection)."""
        return [int(m.group(1)) for m in map(HEAP_LINE.search, self.lines) if m]

    def outbox(self) -> list[int]:
        d = self.flash / "data" / "outbox"
        return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if d.exists() else []

    def kill(self) -> None:
        """A power cut: SIGKILL, then the bench sees its link drop (the relay falls open)."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
            self._reader.join(5)
        deadline = time.monotonic() + 10
        while self.bench.open_links and time.monotonic() < deadline:
            time.sleep(0.02)

    stop = kill


def read_retained(port: int, topic: str, timeout: float = 30.0, username: str | None = None,
                  password: str | None = None, ca_file: Path | None = None) -> bytes:
    """The retained message on `topic` (waits for one to be there); over TLS with `ca_file`."""
    import queue

    import paho.mqtt.client as mqtt

    got: queue.Queue = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username or f"test-retained-{os.getpid()}")
    if username:
        c.username_pw_set(username, password)
    if ca_file is not None:
        c.tls_set(ca_certs=str(ca_file))
    c.on_message = lambda cl, u, m: got.put(m.payload)
    c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(topic, 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        return got.get(timeout=timeout)
    finally:
        c.loop_stop()
        c.disconnect()


class ChargerRig:
    """Bureau node processes and their mosquitto (Stack), a hardware bench and one charger's
    flash, with the operator's set-up done once the charger has published its key. With `tls`
    the broker speaks TLS only (the network's CA from init-network signed its certificate) and
    the charger is provisioned with that CA as ca.der; with `registry_logins` the charger's
    broker login works only once its enrollment commits (so `enroll`, which reads the retained
    key from the broker, does not apply)."""

    CARD = "04A1B2C3D4E5F6"

    def __init__(self, root: Path, nodes: int = 1, charger_id: str = "GZ-DEV-1", top_up_fen: int = 500_000,
                 node_env: dict | None = None, tls: bool = False, registry_logins: bool = False,
                 **flash_extra) -> None:
        from bureau.tools.network import DEFAULT_TARIFF
        from bureau.tools.stack import Stack
        from nacl.signing import SigningKey

        from tests.device.bench import HardwareBench

        self.root = Path(root)
        self.charger_id = charger_id
        self.top_up_fen = top_up_fen
        env = {"BUREAU_AUTHZ_LIST_MIN_INTERVAL_S": "0", "BUREAU_BLOCK_INTERVAL_MS": "50"}
        env.update(node_env or {})
        self.stack = Stack(self.root / "stack", nodes, mqtt_tls=tls,
                           registry_logins=registry_logins).start(extra_env=env)
        self.driver = SigningKey.generate()
        self.wallet = "W-DEV"
        self.bench = HardwareBench(BOARD)
        self.tariff = DEFAULT_TARIFF
        self.flash_extra = flash_extra
        self.flash = self.new_flash("flash")
        self.enrolled = False

    @property
    def broker(self):
        return self.stack.broker

    def broker_login(self) -> tuple[str, str]:
        return self.stack.broker_login(self.charger_id)

    def new_flash(self, name: str, host: str = "127.0.0.1", port: int | None = None) -> Path:
        user, password = self.broker_login()
        ca_der = None
        if self.broker.ca_file:
            from tests.support.tlscerts import der_of

            ca_der = der_of(self.broker.ca_file)
        return provision_flash(self.root / name, self.charger_id, host, port or self.broker.port, self.stack.genesis,
                               self.tariff, user, password, ca_der=ca_der, **dict(self.flash_extra))

    def device(self, interpreter: str, heap: str = "2M", flash: Path | None = None) -> Device:
        return Device(interpreter, flash or self.flash, self.bench, heap)

    def public_key(self) -> str:
        """The key the charger made at first boot, from its retained enroll message (read with
        a fleet login, which may read every charger's enrollment)."""
        user, password = self.stack.broker_login("device-rig", role="fleet")
        raw = read_retained(self.broker.port, f"ev/v1/charger/{self.charger_id}/enroll", username=user,
                            password=password, ca_file=self.broker.ca_file)
        return json.loads(raw)["public_key"]

    def enroll(self) -> None:
        self.stack.operator([
            ("enroll_charger", {"charger_id": self.charger_id, "public_key": self.public_key()}),
            ("open_wallet", {"wallet_id": self.wallet, "public_key": self.driver.verify_key.encode().hex(),
                             "cards": [self.CARD]}),
            ("top_up", {"wallet_id": self.wallet, "amount_fen": self.top_up_fen, "reference": "bank:dev"}),
        ])
        self.enrolled = True

    def history(self, node: int = 0) -> list[dict]:
        """The wallet's committed entries on one node (driver-signed query)."""
        from bureau.api.auth import authorization_header
        from bureau.tools.httpclient import shared_client

        path = f"/v1/wallets/{self.wallet}/history?limit=500"
        r = shared_client().get(self.stack.nodes[node].url + path, timeout=10,
                      headers={"Authorization": authorization_header(self.driver, self.wallet, "GET", path,
                                                                           node_id=self.stack.nodes[node].node_id)})
        r.raise_for_status()
        return r.json()["entries"]

    def receipts(self, node: int = 0) -> list[dict]:
        return sorted((e for e in self.history(node) if e["kind"] == "receipt"), key=lambda e: e["seq"])

    def charge(self, dev: Device, seconds: float = 3.0, stop: str = "unplug") -> None:
        """Tap the card, wait for the online decision, plug in, charge `seconds`, then stop
        (`unplug` or the `button`); the receipt is in the outbox afterwards."""
        bench = self.bench
        bench.plug("B")
        bench.tap(self.CARD)
        # accepted: the pilot's PWM offers current (neither steady +12 V nor -12 V)
        dev.wait_for(lambda: bench.duty not in (0, 65535), "the card's authorization", timeout=30)
        bench.plug("C")
        dev.wait_for(lambda: bench.relay_closed, "the contactor to close")
        start_wh = bench.meter_wh
        deadline = time.monotonic() + seconds
        dev.wait_for(lambda: time.monotonic() > deadline and bench.meter_wh > start_wh, "energy to flow",
                     timeout=seconds + 30)
        if stop == "button":
            bench.press()
        else:
            bench.plug("B")
            bench.plug("A")
        dev.wait_for(lambda: not bench.relay_closed, "the contactor to open")

    def session(self, interpreter: str, heap: str) -> dict:
        """Boot (first boot: key, enrollment), the operator's set-up, one complete session
        through ack; the device is stopped afterwards. Returns figures (memory_errors: the
        MemoryErrors a task logged and survived), raises on failure."""
        dev = self.device(interpreter, heap)
        t0 = time.monotonic()
        dev.start()
        try:
            dev.wait_line("link: up", timeout=60)
            if not self.enrolled:
                self.enroll()
            before = len(self.receipts())
            t1 = time.monotonic()
            self.charge(dev)
            dev.wait_for(lambda: len(self.receipts()) > before and not dev.outbox(), "the receipt's ack",
                         timeout=60)
            t2 = time.monotonic()
        finally:
            dev.kill()
        heap_free = dev.heap_free()
        return {"boot_s": t1 - t0, "session_s": t2 - t1, "heap_free_min": min(heap_free) if heap_free else None,
                "heap_free": heap_free, "receipt": self.receipts()[-1],
                "memory_errors": [ln for ln in dev.lines if "MemoryError" in ln]}

    def close(self) -> None:
        self.bench.close()
        self.stack.stop()
